"""Running xlc for each method, seed and language group, the control and the logistic regression; resume."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import xlc
from xlc import plots
from xlc.errors import XlcError
from xlc.rundir import RunDir

from .profiles import PLUGIN_SELECTORS, POOL_PRIOR_OPTIONS, SELECTORS, Bench, DataSpec, Profile, seeds_for
from .splits import Splits

log = logging.getLogger("xlc.bench")


def selector_options(method: str, spec: DataSpec, profile: Profile, classes: Sequence[str]) -> dict:
    if method == "balanced":
        return {"kt": spec.kt}
    if method == "pool-prior":  # as many texts as balanced, split by language, then by the pool's prior
        return {"kt": spec.kt, **POOL_PRIOR_OPTIONS}
    if method == "throttling":  # as many texts per round as balanced takes when every class has kt
        return {"n": spec.kt * len(classes)}
    return {"threshold": profile.threshold}


def train_steps(rounds: list[dict], epochs: int, batch_size: int) -> int:
    """Optimiser steps a run took: the report's count, else `epochs` epochs on each round's labeled set."""
    return sum(r["train"]["steps"] if r.get("train") else epochs * math.ceil(r["labeled"] / batch_size)
               for r in rounds)


def control_epochs(steps: int, labeled: int, batch_size: int) -> int:
    """Epochs on the labeled set alone that give at least `steps` optimiser steps."""
    return max(1, math.ceil(steps / math.ceil(labeled / batch_size)))


def run_unit(bench: Bench, spec: DataSpec, splits: Splits, seed: int, group: str) -> None:
    """All self-training methods (and the control) for one data set, seed and language group."""
    part = splits if group == "all" else splits.only(group)
    base = bench.work / spec.name / f"seed-{seed}" / group
    balanced_summary = None
    reference = "default" if "default" in bench.methods else "balanced"  # zero-shot and control come from it
    for method in (*SELECTORS, "control"):
        wanted = method in bench.methods or (method == reference and {"zero-shot", "control"} & set(bench.methods))
        if not wanted or seed not in seeds_for(bench.profile, method):
            continue
        folder = base / method
        done = folder / "summary.json"
        if done.is_file():
            log.info("%s seed %d %s %s: done before, kept", spec.name, seed, group, method)
            summary = json.loads(done.read_text())
        else:
            if method == "control" and balanced_summary is None:
                raise XlcError(f"the control needs the {reference} run of the same seed")
            summary = run_method(bench, spec, part, seed, method, folder, balanced_summary)
        if method == reference:
            balanced_summary = summary


def run_method(bench: Bench, spec: DataSpec, part: Splits, seed: int, method: str, folder: Path,
               balanced: dict | None) -> dict:
    """One xlc.selftrain run; writes summary.json and per-item test predictions in `folder`."""
    p = bench.profile
    run_dir = folder / "run"
    layout = RunDir(run_dir)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished attempt
    folder.mkdir(parents=True)
    max_length = bench.max_lengths[spec.name]
    settings: dict[str, Any] = dict(
        model=bench.model, seed=seed, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, head_lr=p.head_lr,
        max_length=max_length, max_rounds=p.max_rounds, patience=p.patience,
        freeze_embeddings=p.freeze_embeddings, id_column="id", threads=bench.threads,
        select_epoch=p.select_epoch, train_layers=p.train_layers, student_noise=0.0,  # the paper's methods
    )
    matched = balanced and balanced["method"] == "default"
    if method == "default" or (method == "control" and matched):  # xlc selftrain's own settings
        settings = dict(model=bench.model, seed=seed, max_length=max_length, id_column="id",
                        threads=bench.threads)
    if method == "default":
        selector, options = None, None
    elif method == "control":
        assert balanced is not None
        if matched or p.select_epoch:  # the same optimiser steps, exactly (no early end), best epoch on dev
            settings.update(max_rounds=0, max_steps=balanced["train_steps"], epoch_patience=0)
        else:
            settings.update(max_rounds=0, epochs=control_epochs(balanced["train_steps"], part.train.height,
                                                               p.batch_size))
        selector, options = "balanced", {"kt": spec.kt}  # never used: round 0 is the only round
    else:
        selector = PLUGIN_SELECTORS.get(method, method)
        options = selector_options(method, spec, p, part.classes)
    shown = ({"steps to match": balanced["train_steps"]} if balanced and method == "control"
             else {**(options or {"settings": "xlc selftrain defaults"}),
                   "epochs per round": settings.get("epochs", "default")})
    log.info("%s seed %d %s: %s (%s) starts", spec.name, seed, folder.parent.name, method,
             ", ".join(f"{k} {v}" for k, v in shown.items()))
    start = time.perf_counter()
    run = xlc.selftrain(
        train=part.train, unlabeled=part.pool.select("id", "text", "lang", "label"), dev=part.dev,
        test=part.test.drop("item") if p.test_every_round else None, selector=selector,
        selector_options=options,
        out=run_dir, keep_round_models=True, **settings,  # round 0 is read below; the models go at the end
    )
    run_seconds = time.perf_counter() - start
    clock = time.perf_counter()
    predictions = [_predict(run.best_model, part.test, max_length, p.batch_size, method, bench.threads)]
    if method == ("default" if "default" in bench.methods else "balanced"):  # round 0 = English only = zero-shot
        zero_shot = layout.round(0).onnx
        predictions.append(_predict(zero_shot, part.test, max_length, p.batch_size, "zero-shot", bench.threads))
        if part.english is not None and part.english.height:  # the source side of the transfer gap
            _predict(zero_shot, part.english, max_length, p.batch_size, "english",
                     bench.threads).write_parquet(folder / "english_predictions.parquet")
    pl.concat(predictions).write_parquet(folder / "test_predictions.parquet")
    gold = part.pool.select("id", pl.col("label").alias("gold"))
    pseudo = run.pseudo_labels.select("id", "lang", "label", "round").join(gold, on="id", how="left")
    pseudo.write_parquet(folder / "pseudo_labels.parquet")
    rounds = run.report["rounds"]
    summary = {
        "data": spec.name, "seed": seed, "group": folder.parent.name, "method": method,
        "selector": None if method == "control" else run.report["config"]["selector"],
        "selector_options": options if options is not None else run.report["config"].get("selector_options"),
        "settings": {k: v for k, v in settings.items() if k != "threads"},
        "rounds": len(rounds), "best_round": run.best_round, "stop_reason": run.stop_reason,
        "stop_code": run.stop_code,
        "train_steps": train_steps(rounds, settings.get("epochs", 0), p.batch_size),
        "labeled_start": part.train.height, "pseudo_labels": pseudo.height,
        "dev_accuracy": [r["dev"]["accuracy"] for r in rounds],
        "pseudo_precision": [r.get("pseudo_precision") for r in rounds],
        "seconds": {"selftrain": round(run_seconds, 1), "test": round(time.perf_counter() - clock, 1),
                    **{k: round(sum(r.get("timings", {}).get(k, 0) for r in rounds), 1)
                       for k in ("train", "export", "evaluate", "score")}},
    }
    if method == "control" and balanced is not None:
        summary["matched_to"] = {"balanced_train_steps": balanced["train_steps"],
                                 "balanced_rounds": balanced["rounds"]}
    for path in (layout.report_md, layout.report, *(run_dir / name for name in plots.PLOTS)):
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    if not bench.keep_models:
        for path in layout.model_folders():
            shutil.rmtree(path, ignore_errors=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("%s seed %d %s: %s done in %.0f s: %d rounds, best %d, %d pseudo-labels, %d steps",
             spec.name, seed, folder.parent.name, method, run_seconds, len(rounds), run.best_round,
             pseudo.height, summary["train_steps"])
    return summary


def _predict(model_dir: Path, test: pl.DataFrame, max_length: int, batch_size: int, method: str,
             threads: int | None) -> pl.DataFrame:
    clf = xlc.load(model_dir, max_length=max_length, batch_size=max(64, batch_size), threads=threads)
    scored = xlc.score(clf, test)
    return scored.select("item", "lang", "gold", pl.col("label").alias("predicted"),
                         pl.lit(method).alias("method"))


def run_logreg(bench: Bench, spec: DataSpec, splits: Splits) -> None:
    """Frozen encoder + scikit-learn logistic regression on mean-pooled embeddings (no seeds)."""
    folder = bench.work / spec.name / "logreg"
    if (folder / "test_predictions.parquet").is_file():
        return
    from sklearn.linear_model import LogisticRegression

    from xlc import model as xmodel

    start = time.perf_counter()
    clf = xmodel.from_base(bench.model, splits.classes)
    length = bench.max_lengths[spec.name]
    x_train = embed(clf, splits.train["text"].to_list(), length)
    x_test = embed(clf, splits.test["text"].to_list(), length)
    fit = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, splits.train["label"].to_list())
    folder.mkdir(parents=True, exist_ok=True)
    splits.test.select("item", "lang", pl.col("label").alias("gold"),
                pl.Series("predicted", fit.predict(x_test), dtype=pl.String),
                pl.lit("logreg").alias("method")).write_parquet(folder / "test_predictions.parquet")
    (folder / "summary.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))


def embed(clf: Any, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled final hidden states of the classifier's encoder (no gradient)."""
    import torch

    from xlc.model import pad_batch

    ids = clf.tokenizer([clf.text_prefix + t for t in texts], truncation=True,
                        max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), clf.model.config.hidden_size), dtype=np.float32)
    encoder = clf.model.encoder.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch, mask = pad_batch([ids[i] for i in rows], clf.tokenizer.pad_token_id)
            hidden = encoder(input_ids=batch, attention_mask=mask)[0]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)).numpy()
    return out


def check_work(bench: Bench, all_splits: dict[str, Splits]) -> None:
    """Refuse a --work folder whose finished runs were made with other settings (no silent reuse).

    Seeds, data sets and the throttling/thresholded seed count may differ between invocations
    (more seeds or another data set later); everything that changes a run's result may not.
    """
    free = ("data", "seeds", "note", "selector_seeds", "threads", "logreg")
    plan = json.loads(json.dumps({
        "settings": {k: v for k, v in asdict(bench.profile).items() if k not in free},
        "model": bench.model,
        "datasets": {name: {"spec": asdict(next(d for d in bench.profile.data if d.name == name)),
                            "max_length": bench.max_lengths[name],
                            "sizes": {x: getattr(s, x).height for x in ("train", "pool", "dev", "test")}}
                     for name, s in all_splits.items()},
    }, default=str))
    path = bench.work / "plan.json"
    if path.is_file():
        found = json.loads(path.read_text())
        differs = [k for k in ("settings", "model") if found.get(k) != plan[k]]
        differs += [name for name, value in plan["datasets"].items()
                    if name in found.get("datasets", {}) and found["datasets"][name] != value]
        if differs:
            raise XlcError(f"--work {bench.work} holds runs made with different {', '.join(differs)}; "
                           f"pass another --work folder or delete this one")
        plan["datasets"] = {**found.get("datasets", {}), **plan["datasets"]}
    path.write_text(json.dumps(plan, indent=2))


def check_plugin_selectors(methods: Sequence[str]) -> None:
    """Fail before any run when a method's plugin selector is missing or too old for its options."""
    from xlc.selectors import resolve_options

    for method, selector in PLUGIN_SELECTORS.items():
        if method in methods:
            try:
                resolve_options(selector, POOL_PRIOR_OPTIONS)
            except XlcError as exc:
                raise XlcError(f"method {method} needs the xlc-classprior plugin ({exc}); install it with "
                               f"`pip install -e plugins/xlc-classprior` (`make install` does), or leave "
                               f"{method} out of --methods") from None
