"""`xlc evaluate`: score a labeled table with a trained model and measure it.

The metrics are those of `xlc.metrics` (the same functions a self-training round records),
with `detail=True`: accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix,
per-language results and, with --ordinal, the mean squared error of the wrong predictions.
This module reads the job's data, checks it against the model and turns results into table rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from xlc import data, inference, metrics
from xlc.errors import XlcError
from xlc.metrics import ordinal_errors as ordinal_errors  # re-exported: xlc.evaluate had it first


def classification_report(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str],
                          ordinal: bool = False) -> dict:
    """Every metric `xlc evaluate` reports on one set of predictions; classes keep the order given."""
    return metrics.classification(gold, predicted, classes, detail=True, ordinal=ordinal)


def evaluate_scored(scored: pl.DataFrame, classes: Sequence[str], ordinal: bool = False) -> dict:
    """Every metric `xlc evaluate` reports on a frame with `gold` and predicted `label` (and `lang`) columns.

    With more than one language, `per_lang` holds each language's full report too.
    """
    return metrics.evaluate(scored, classes, detail=True, ordinal=ordinal)


@dataclass(frozen=True)
class EvaluateJob:
    """`xlc evaluate`: a model, a labeled table and how to read it.

    max_length None: the length the model was trained with (`inference.resolve_max_length`).
    """

    model: Path
    data: Path
    text_column: str = "text"
    label_column: str = "label"
    lang_column: str = "lang"
    langs: tuple[str, ...] = ()
    ordinal: bool = False
    batch_size: int = inference.BATCH_SIZE
    max_length: int | None = None
    threads: int | None = None
    provider: str = "cpu"

    def __post_init__(self) -> None:
        inference.check(batch_size=self.batch_size, max_length=self.max_length, threads=self.threads)


def read_labeled(job: EvaluateJob) -> pl.DataFrame:
    """text, gold (string) and lang of the --data file, filtered to --lang; checked."""
    source = f"--data {job.data}"
    frame = data.read_table(job.data)
    if job.langs and job.lang_column not in frame.columns:
        raise XlcError(f"{source}: --lang needs a language column, and {job.lang_column!r} is not one "
                       f"(columns: {', '.join(frame.columns)}); name it with --lang-column")
    columns = data.Columns(job.text_column, job.label_column, None, job.lang_column)
    frame = data.normalise(frame, source, columns, labeled=True).select("text", gold="label", lang="lang")
    if job.langs:
        present = set(frame["lang"].drop_nulls().unique().to_list())
        missing = sorted(set(job.langs) - present)
        if missing:
            raise XlcError(f"{source}: --lang {', '.join(missing)} not found in column "
                           f"{job.lang_column!r} (languages: {', '.join(sorted(present))})")
        frame = frame.filter(pl.col("lang").is_in(list(job.langs)))
    return frame


def evaluate(job: EvaluateJob, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score `job.data` with `job.model` and measure the predictions against its labels.

    `progress(done, total)` is called as the texts are scored.
    """
    from xlc.api import load

    clf = load(job.model, threads=job.threads, provider=job.provider, batch_size=job.batch_size,
               max_length=job.max_length)
    classes = tuple(clf.scorer.classes)
    frame = read_labeled(job)
    unknown = sorted(set(frame["gold"].unique().to_list()) - set(classes))
    if unknown:
        raise XlcError(f"--data {job.data}: label(s) {unknown} are not classes of the model "
                       f"{list(classes)}; evaluate with data labeled in the model's classes")
    if job.ordinal:
        metrics.ordinal_values(classes)  # fail before scoring
    if frame.height == 0:
        raise XlcError("no rows to evaluate (an empty table, or --lang matched no rows)")
    scored = frame.with_columns(pl.Series("label", clf.predict(frame["text"].to_list(), progress), dtype=pl.String))
    result = evaluate_scored(scored, classes, job.ordinal)
    result["model"] = str(clf.model_dir)
    result["data"] = str(job.data)
    return result


def summary_rows(result: dict) -> list[list[str]]:
    """[scope, n, accuracy, macro-F1(, MSE wrong)] for all rows and each language."""
    scopes = [("all", result)] + list(result.get("per_lang", {}).items())
    rows = []
    for name, r in scopes:
        row = [name, str(r["n"]), f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"]
        if "mse" in r:
            row += [f"{r['mse']:.4f}", "-" if r["mse_wrong"] is None else f"{r['mse_wrong']:.4f}"]
        rows.append(row)
    return rows


def class_rows(result: dict) -> list[list[str]]:
    """[class, precision, recall, F1, support] per class."""
    return [[c, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])]
            for c, m in result["per_class"].items()]
