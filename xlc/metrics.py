"""Classification metrics (scikit-learn does the maths)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 over `classes` and the confusion matrix (rows = gold)."""
    if len(gold) == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(classes), average="macro", zero_division=0)),
        "n": len(gold),
        "confusion": confusion_matrix(gold, predicted, labels=list(classes)).tolist(),
    }


def evaluate(scored: pl.DataFrame, classes: Sequence[str]) -> dict:
    """Metrics of a scored labelled frame (`gold`, predicted `label`), overall and per `lang`."""
    result = classification(scored["gold"].to_list(), scored["label"].to_list(), classes)
    langs = [lang for lang in scored["lang"].unique().sort().to_list() if lang is not None]
    if len(langs) > 1:
        result["per_lang"] = {
            lang: {k: v for k, v in evaluate(scored.filter(pl.col("lang") == lang), classes).items()
                   if k in ("accuracy", "macro_f1", "n")}
            for lang in langs
        }
    return result


def pseudo_label_precision(selected: pl.DataFrame, gold: pl.DataFrame | None) -> float | None:
    """Share of pseudo-labels equal to the hidden gold label; None without gold."""
    if gold is None or selected.height == 0:
        return None
    joined = selected.select("id", "label").join(gold.rename({"label": "gold"}), on="id", how="inner")
    if joined.height == 0:
        return None
    return float(accuracy_score(joined["gold"].to_list(), joined["label"].to_list()))
