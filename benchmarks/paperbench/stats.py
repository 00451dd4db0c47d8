"""The numbers of one data set: accuracy and macro-F1 summaries, precision, paired bootstrap, gap closed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import polars as pl

from xlc import stats
from xlc.errors import XlcError

from .profiles import BOOTSTRAP_RESAMPLES, COMPARISONS, METHODS, SELECTORS, Bench, DataSpec
from .splits import Splits


def collect(bench: Bench, spec: DataSpec, splits: Splits) -> dict:
    """Every number of one data set: per-item predictions, summaries and pseudo-labels of all runs."""
    preds, summaries, pseudo = [], [], []
    root = bench.work / spec.name
    for seed in bench.profile.seeds:
        for folder in sorted((root / f"seed-{seed}").glob("*/*")):
            if not (folder / "summary.json").is_file():
                continue
            summary = json.loads((folder / "summary.json").read_text())
            summaries.append(summary)
            frame = pl.read_parquet(folder / "test_predictions.parquet").with_columns(
                pl.lit(seed).alias("seed"), pl.lit(summary["group"]).alias("group"))
            preds.append(frame)
            if summary["method"] in SELECTORS:
                pseudo.append(pl.read_parquet(folder / "pseudo_labels.parquet").with_columns(
                    pl.lit(seed).alias("seed"), pl.lit(summary["method"]).alias("method")))
    logreg = root / "logreg" / "test_predictions.parquet"
    if "logreg" in bench.methods and logreg.is_file():
        frame = pl.read_parquet(logreg)
        preds += [frame.with_columns(pl.lit(seed).alias("seed"), pl.lit("all").alias("group"))
                  for seed in bench.profile.seeds]
    if not preds:
        raise XlcError(f"{root}: no finished runs to report")
    english = [float((frame["gold"] == frame["predicted"]).mean()) for frame in
               (pl.read_parquet(f) for f in sorted(root.glob("seed-*/*/*/english_predictions.parquet")))]
    predictions = pl.concat(preds, how="diagonal_relaxed").with_columns(
        (pl.col("gold") == pl.col("predicted")).alias("correct"))
    pseudo_labels = pl.concat(pseudo, how="diagonal_relaxed") if pseudo else None
    methods = [m for m in METHODS if m in set(predictions["method"].to_list())]
    return {
        "spec": asdict(spec), "classes": list(splits.classes), "langs": splits.langs,
        "sizes": {k: getattr(splits, k).height for k in ("train", "pool", "dev", "test")},
        "max_length": bench.max_lengths.get(spec.name),
        "methods": methods,
        "accuracy": accuracy_table(predictions, methods, splits.langs),
        "macro_f1": macro_f1_table(predictions, methods, splits.classes),
        "precision": precision_table(pseudo_labels, splits.langs) if pseudo_labels is not None else {},
        "class_shares": class_shares(pseudo_labels, splits),
        "bootstrap": {f"{a} - {b}": paired_bootstrap(predictions, a, b) for a, b in COMPARISONS
                      if {a, b} <= set(methods)},
        "gap": transfer_gap(english, predictions, methods),
        "runs": summaries,
        "rounds": rounds_table(summaries),
    }


def transfer_gap(english: list[float], predictions: pl.DataFrame, methods: Sequence[str]) -> dict | None:
    """English test accuracy minus target test accuracy of round 0, and the share of it each method closes."""
    if not english or "zero-shot" not in methods:
        return None
    acc = {m: float(predictions.filter(pl.col("method") == m)["correct"].mean()) for m in methods}
    gap = float(np.mean(english)) - acc["zero-shot"]
    return {"english": float(np.mean(english)), "gap": gap,
            "closed": {m: (acc[m] - acc["zero-shot"]) / gap if gap > 0 else None
                       for m in methods if m not in ("zero-shot", "logreg")}}


def mean_sd(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": len(arr)}


def accuracy_table(predictions: pl.DataFrame, methods: Sequence[str], langs: Sequence[str]) -> dict:
    """{lang or "all": {method: mean/sd over seeds of test accuracy}}."""
    table: dict[str, dict] = {}
    for scope in [*langs, "all"]:
        rows = predictions if scope == "all" else predictions.filter(pl.col("lang") == scope)
        per_seed = rows.group_by("method", "seed").agg(pl.col("correct").mean().alias("acc"))
        table[scope] = {m: mean_sd(per_seed.filter(pl.col("method") == m)["acc"].to_list())
                        for m in methods if per_seed.filter(pl.col("method") == m).height}
    return table


def macro_f1_table(predictions: pl.DataFrame, methods: Sequence[str], classes: Sequence[str]) -> dict:
    from sklearn.metrics import f1_score

    table = {}
    for m in methods:
        scores = []
        for (_seed,), rows in predictions.filter(pl.col("method") == m).group_by(["seed"]):
            scores.append(f1_score(rows["gold"].to_list(), rows["predicted"].to_list(), labels=list(classes),
                                   average="macro", zero_division=0))
        table[m] = mean_sd(scores)
    return table


def precision_table(pseudo: pl.DataFrame, langs: Sequence[str]) -> dict:
    """{lang or "all": {selector: mean/sd over seeds of pseudo-label precision, all rounds}}."""
    pseudo = pseudo.with_columns((pl.col("label") == pl.col("gold")).alias("right"))
    table: dict[str, dict] = {}
    for scope in [*langs, "all"]:
        rows = pseudo if scope == "all" else pseudo.filter(pl.col("lang") == scope)
        per_seed = rows.group_by("method", "seed").agg(pl.col("right").mean().alias("p"), pl.len().alias("n"))
        table[scope] = {}
        for m in SELECTORS:
            mine = per_seed.filter(pl.col("method") == m)
            if mine.height:
                table[scope][m] = {**mean_sd(mine["p"].to_list()), "labels": int(mine["n"].sum())}
    return table


def class_shares(pseudo: pl.DataFrame | None, splits: Splits) -> dict:
    """Share of each class among the pseudo-labels per selector (all seeds), and in the pool's truth."""
    truth = splits.pool["label"].value_counts()
    total = splits.pool.height
    shares = {"pool (truth)": {c: _count(truth, c) / total for c in splits.classes}}
    if pseudo is not None:
        for m in SELECTORS:
            rows = pseudo.filter(pl.col("method") == m)
            if rows.height:
                counts = rows["label"].value_counts()
                shares[m] = {c: _count(counts, c) / rows.height for c in splits.classes}
    return shares


def _count(counts: pl.DataFrame, value: str) -> int:
    hit = counts.filter(pl.col(counts.columns[0]) == value)
    return int(hit["count"][0]) if hit.height else 0


def paired_bootstrap(predictions: pl.DataFrame, a: str, b: str, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict:
    """Accuracy of `a` minus `b` on the same test items, with a 95% paired bootstrap interval.

    Each item's correctness is averaged over the seeds both methods ran; the items are then
    resampled with replacement (`resamples` times, fixed `seed`) and the difference of the mean
    recomputed. The interval covers test-set sampling; the seed spread is reported beside it.
    """
    def per_item(method: str) -> pl.DataFrame:
        return (predictions.filter(pl.col("method") == method)
                .group_by("item").agg(pl.col("correct").cast(pl.Float64).mean().alias(method)))

    seeds = (set(predictions.filter(pl.col("method") == a)["seed"].to_list())
             & set(predictions.filter(pl.col("method") == b)["seed"].to_list()))
    predictions = predictions.filter(pl.col("seed").is_in(sorted(seeds)))
    joined = per_item(a).join(per_item(b), on="item", how="inner").sort("item")
    return {**stats.paired_bootstrap((joined[a] - joined[b]).to_numpy(), resamples, seed), "seeds": len(seeds)}


def rounds_table(summaries: list[dict]) -> dict:
    """Per method: mean over seeds (and language groups) of dev accuracy and precision per round."""
    out: dict[str, dict] = {}
    for method in SELECTORS:
        mine = [s for s in summaries if s["method"] == method]
        if not mine:
            continue
        longest = max(len(s["dev_accuracy"]) for s in mine)
        out[method] = {
            key: [_mean([s[key][r] for s in mine if r < len(s[key]) and s[key][r] is not None])
                  for r in range(longest)]
            for key in ("dev_accuracy", "pseudo_precision")
        }
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
