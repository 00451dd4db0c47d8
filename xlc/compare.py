"""`xlc report RUN_A RUN_B ...`: runs side by side, and whether a difference is more than noise.

Every run is compared with the first: accuracy per round and language from the reports, and for
the delivered models, where the runs scored the same test set, a paired bootstrap interval of the
accuracy difference over the test texts (`xlc.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from xlc import report, stats
from xlc.rundir import RunDir


def compare(run_dirs: Sequence[Path]) -> dict:
    """The runs' facts and each run's difference to the first (in accuracy points)."""
    summaries = [report.read(Path(d)) for d in run_dirs]
    runs = [_facts(Path(d), summary) for d, summary in zip(run_dirs, summaries, strict=True)]
    predictions = [_predictions(Path(d), summary) for d, summary in zip(run_dirs, summaries, strict=True)]
    comparisons = [_difference(runs[0]["run"], run["run"], predictions[0], found)
                   for run, found in zip(runs[1:], predictions[1:], strict=True)]
    return {"runs": runs, "comparisons": comparisons}


def _facts(run_dir: Path, summary: dict) -> dict:
    rounds = summary["rounds"]
    best = summary["best_round"]
    delivered = report.delivered_record(summary)
    per_lang = (delivered.get("test") or {}).get("per_lang") or {}
    per_class: dict[str, int] = {}
    for r in rounds:
        for c, n in (r.get("selected_per_class") or {}).items():
            per_class[c] = per_class.get(c, 0) + n
    return {
        "run": str(run_dir), "selector": summary["config"].get("selector"),
        "options": summary["config"].get("selector_options") or {}, "best_round": best,
        "delivered": report.average_label(mean) if (mean := report.averaged(summary)) else str(best),
        "round_rule": summary.get("round_rule", "dev"), "classes": summary["classes"],
        "test_accuracy": _accuracy(delivered, "test"),
        "test_per_lang": {k: v["accuracy"] for k, v in per_lang.items()},
        "pseudo_labels_per_class": per_class,
        "rounds": [{"round": r["round"], "dev_accuracy": _accuracy(r, "dev"), "test_accuracy": _accuracy(r, "test")}
                   for r in rounds],
    }


def _accuracy(record: dict, split: str) -> float | None:
    return (record.get(split) or {}).get("accuracy")


def _predictions(run_dir: Path, summary: dict) -> pl.DataFrame | None:
    """The delivered model's test predictions: the average's (--select-round average) or the best round's."""
    run = RunDir(run_dir)
    path = (run.average if report.averaged(summary) else run.round(summary["best_round"])).test_predictions
    return pl.read_parquet(path) if path.is_file() else None


def _difference(a: str, b: str, first: pl.DataFrame | None, other: pl.DataFrame | None) -> dict:
    """B − A on the delivered models' test predictions, or why it cannot be computed."""
    head = {"a": a, "b": b}
    if first is None or other is None:
        missing = a if first is None else b
        return {**head, "skipped": f"{missing} has no per-text test predictions (no --test, or a run of an "
                                   f"older xlc)"}
    if first.height != other.height or not (first["text"].equals(other["text"])
                                            and first["gold"].equals(other["gold"])):
        return {**head, "skipped": "the runs scored different test sets (texts or labels differ)"}
    diff = (other["label"] == other["gold"]).cast(pl.Float64).to_numpy() - (
        first["label"] == first["gold"]).cast(pl.Float64).to_numpy()  # per test text: B right minus A right
    found = stats.paired_bootstrap(diff)
    langs = first["lang"].to_numpy()
    per_lang = {lang: 100 * float(np.mean(diff[langs == lang]))  # B − A accuracy per language, no interval
                for lang in sorted({x for x in langs.tolist() if x is not None})}
    return {**head, **{k: 100 * found[k] for k in ("diff", "low", "high")}, "items": found["items"],
            "share_not_above_zero": found["share_not_above_zero"], "per_lang": per_lang}


def run_rows(result: dict) -> list[list[str]]:
    """One row per run: selector, delivered round (rule), test accuracy, pseudo-labels per class."""
    return [[r["run"], f"{r['selector']} {_options(r['options'])}".strip(), f"{r['delivered']} ({r['round_rule']})",
             _pct(r["test_accuracy"]), " ".join(str(r["pseudo_labels_per_class"].get(c, 0)) for c in r["classes"])]
            for r in result["runs"]]


def round_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Accuracy per round, dev/test, one column pair per run."""
    runs = result["runs"]
    columns = ["round"] + [f"{name} {i + 1}" for i in range(len(runs)) for name in ("dev", "test")]
    most = max(len(r["rounds"]) for r in runs)
    rows = []
    for n in range(most):
        row = [str(n)]
        for r in runs:
            rec = r["rounds"][n] if n < len(r["rounds"]) else {}
            row += [_pct(rec.get("dev_accuracy")), _pct(rec.get("test_accuracy"))]
        rows.append(row)
    return columns, rows


def difference_rows(result: dict) -> list[list[str]]:
    rows = []
    for c in result["comparisons"]:
        if "skipped" in c:
            rows.append([c["b"], "-", c["skipped"], "-"])
        else:
            rows.append([c["b"], f"{c['diff']:+.1f}", f"[{c['low']:+.1f}, {c['high']:+.1f}]", str(c["items"])])
    return rows


def _options(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
