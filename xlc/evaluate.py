"""`xlc evaluate`: score a labelled table with a trained model and measure it (scikit-learn maths).

Accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix and, for ordinal
labels such as 1-5 stars, the mean squared error of the wrong predictions (the measure of
Dong & de Melo 2019, Table 2): how far off the mistakes are, in label units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_squared_error,
    precision_recall_fscore_support,
)

from xlc import data, inference
from xlc.errors import XlcError


def ordinal_values(classes: Sequence[str]) -> dict[str, float]:
    """Class name -> number, for ordinal labels; names must read as numbers ("1", "2.5")."""
    values = {}
    for name in classes:
        try:
            values[name] = float(name)
        except ValueError:
            raise XlcError(
                f"--ordinal: class {name!r} is not a number; ordinal labels must be numbers "
                f"such as 1-5 stars (classes: {list(classes)})"
            ) from None
    return values


def ordinal_errors(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict:
    """Mean squared error in label units: over all texts and over the wrong predictions only.

    `mse_wrong` is None when no prediction is wrong (the mean of nothing).
    """
    values = ordinal_values(classes)
    g = np.array([values[x] for x in gold], dtype=float)
    p = np.array([values[x] for x in predicted], dtype=float)
    wrong = g != p
    return {
        "mse": float(mean_squared_error(g, p)),
        "mse_wrong": float(mean_squared_error(g[wrong], p[wrong])) if wrong.any() else None,
        "wrong": int(wrong.sum()),
    }


def classification_report(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str],
                          ordinal: bool = False) -> dict:
    """Every metric of one set of predictions; classes keep the order given."""
    labels = list(classes)
    if len(gold) == 0:
        raise XlcError("no rows to evaluate (an empty table, or --lang matched no rows)")
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=labels, zero_division=0
    )
    result = {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "classes": labels,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(labels)
        },
        "confusion": confusion_matrix(gold, predicted, labels=labels).tolist(),
    }
    if ordinal:
        result.update(ordinal_errors(gold, predicted, labels))
    return result


def evaluate_scored(scored: pl.DataFrame, classes: Sequence[str], ordinal: bool = False) -> dict:
    """Metrics of a frame with `gold` and predicted `label` (and optionally `lang`) columns.

    With more than one language, `per_lang` holds each language's full report too.
    """
    result = classification_report(scored["gold"].to_list(), scored["label"].to_list(), classes, ordinal)
    if "lang" in scored.columns:
        langs = [x for x in scored["lang"].unique().sort().to_list() if x is not None]
        if len(langs) > 1:
            result["per_lang"] = {}
            for lang in langs:
                part = scored.filter(pl.col("lang") == lang)
                result["per_lang"][lang] = classification_report(
                    part["gold"].to_list(), part["label"].to_list(), classes, ordinal)
    return result


@dataclass(frozen=True)
class EvaluateJob:
    """`xlc evaluate`: a model, a labelled table and how to read it.

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


def read_labelled(job: EvaluateJob) -> pl.DataFrame:
    """text, gold (string) and lang of the --data file, filtered to --lang; checked."""
    source = f"--data {job.data}"
    frame = data.read_table(job.data)
    if job.langs and job.lang_column not in frame.columns:
        raise XlcError(f"{source}: --lang needs a language column, and {job.lang_column!r} is not one "
                       f"(columns: {', '.join(frame.columns)}); name it with --lang-column")
    columns = data.Columns(job.text_column, job.label_column, None, job.lang_column)
    frame = data.normalise(frame, source, columns, labelled=True).select("text", gold="label", lang="lang")
    if job.langs:
        present = set(frame["lang"].drop_nulls().unique().to_list())
        missing = sorted(set(job.langs) - present)
        if missing:
            raise XlcError(f"{source}: --lang {', '.join(missing)} not found in column "
                           f"{job.lang_column!r} (languages: {', '.join(sorted(present))})")
        frame = frame.filter(pl.col("lang").is_in(list(job.langs)))
    return frame


def evaluate(job: EvaluateJob) -> dict:
    """Score `job.data` with `job.model` and measure the predictions against its labels."""
    from xlc.api import load

    clf = load(job.model, threads=job.threads, provider=job.provider, batch_size=job.batch_size,
               max_length=job.max_length)
    classes = tuple(clf.scorer.classes)
    frame = read_labelled(job)
    unknown = sorted(set(frame["gold"].unique().to_list()) - set(classes))
    if unknown:
        raise XlcError(f"--data {job.data}: label(s) {unknown} are not classes of the model "
                       f"{list(classes)}; evaluate with data labelled in the model's classes")
    if job.ordinal:
        ordinal_values(classes)  # fail before scoring
    scored = frame.with_columns(pl.Series("label", clf.predict(frame["text"].to_list()), dtype=pl.String))
    result = evaluate_scored(scored, classes, job.ordinal)
    result["model"] = str(clf.path)
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
