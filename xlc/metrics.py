"""Every classification metric, for the self-training loop and `xlc evaluate` alike (scikit-learn does the maths).

Accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix, per-language results,
the precision of pseudo-labels and, for ordinal labels such as 1-5 stars, the mean squared error
of the wrong predictions (the measure of Dong & de Melo 2019, Table 2): how far off the mistakes
are, in label units. A round records `evaluate(scored, classes)`; `xlc evaluate` reports
`evaluate(scored, classes, detail=True)`: the same numbers, and more of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_squared_error,
    precision_recall_fscore_support,
)

from xlc.errors import XlcError

SUMMARY = ("accuracy", "macro_f1", "n")
"""What a round records for each language (`evaluate` without `detail`)."""


def classification(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str], *,
                   detail: bool = False, ordinal: bool = False) -> dict:
    """Accuracy, macro-F1 and the confusion matrix (rows gold, columns predicted, in `classes` order).

    Macro-F1 averages over the classes present in `gold` or `predicted`, as scikit-learn does: a
    model class that the data never has and the model never predicts does not count (it would
    add an F1 of 0). `detail` adds `classes` and per-class precision, recall, F1 and support for
    every model class; `ordinal` adds `ordinal_errors`. No rows give accuracy and macro-F1 None.
    """
    if len(gold) == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    labels = list(classes)
    seen = set(gold) | set(predicted)
    present = [c for c in labels if c in seen] + sorted(seen - set(labels))
    result: dict = {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=present, average="macro", zero_division=0)),
        "n": len(gold),
    }
    if detail:
        precision, recall, f1, support = precision_recall_fscore_support(
            gold, predicted, labels=labels, zero_division=0
        )
        result["classes"] = labels
        result["per_class"] = {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(labels)
        }
    result["confusion"] = confusion_matrix(gold, predicted, labels=labels).tolist()
    if ordinal:
        result.update(ordinal_errors(gold, predicted, labels))
    return result


def evaluate(scored: pl.DataFrame, classes: Sequence[str], *, detail: bool = False,
             ordinal: bool = False) -> dict:
    """`classification` of a scored labeled frame (`gold`, predicted `label`, optional `lang`).

    With more than one language, `per_lang` holds each language's metrics: all of them with
    `detail` (what `xlc evaluate` reports), else only the `SUMMARY` keys (what a round records).
    """
    result = classification(scored["gold"].to_list(), scored["label"].to_list(), classes,
                            detail=detail, ordinal=ordinal)
    langs = scored["lang"].unique().sort().drop_nulls().to_list() if "lang" in scored.columns else []
    if len(langs) > 1:
        result["per_lang"] = {}
        for lang in langs:
            part = scored.filter(pl.col("lang") == lang)
            metrics = classification(part["gold"].to_list(), part["label"].to_list(), classes,
                                     detail=detail, ordinal=ordinal)
            result["per_lang"][lang] = metrics if detail else {k: metrics[k] for k in SUMMARY}
    return result


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


def pseudo_label_precision(selected: pl.DataFrame, gold: pl.DataFrame | None) -> float | None:
    """Share of pseudo-labels equal to the hidden gold label; None without gold."""
    if gold is None or selected.height == 0:
        return None
    joined = selected.select("id", "label").join(gold.rename({"label": "gold"}), on="id", how="inner")
    if joined.height == 0:
        return None
    return float(accuracy_score(joined["gold"].to_list(), joined["label"].to_list()))
