"""Label-free health of a round: what the scored pool says without any target-language label.

For runs without target labels these are the only signals of how a round went: the share of pool
texts whose predicted label changed since the last round, the predicted class shares per language
next to the labeled set's, and the mean confidence per language. They are measured on the pool as
each round scores it (a run's last round does not score the pool, so it has none).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

ALL = "all"
"""The key of the whole pool, beside one key per language."""


def signals(scored: pl.DataFrame, previous: pl.DataFrame | None, labeled: pl.Series,
            classes: Sequence[str]) -> dict:
    """Health of a round from its scored pool (id, lang, label, confidence) and the last round's.

    `changed`: the share of texts in both pools whose predicted label differs (None in round 0);
    `confidence` and `class_shares` for the whole pool (`all`) and each language;
    `labeled_shares`: the class shares of the labeled set the round trained on.
    """
    groups = {ALL: scored}
    if "lang" in scored.columns:
        groups |= {str(lang): rows for (lang,), rows in scored.drop_nulls("lang").group_by("lang")}
    return {
        "changed": None if previous is None else changed(previous, scored),
        "confidence": {k: _mean(rows["confidence"]) for k, rows in sorted(groups.items())},
        "class_shares": {k: shares(rows["label"], classes) for k, rows in sorted(groups.items())},
        "labeled_shares": shares(labeled, classes),
    }


def changed(before: pl.DataFrame, after: pl.DataFrame) -> float | None:
    """Share of the ids scored in both frames whose predicted label differs; None when none are shared."""
    both = after.select("id", "label").join(before.select("id", pl.col("label").alias("before")), on="id")
    return None if both.height == 0 else float((both["label"] != both["before"]).mean())


def shares(labels: pl.Series, classes: Sequence[str]) -> dict[str, float]:
    """The share of each class among `labels` (nulls not counted), every class listed."""
    labels = labels.drop_nulls()
    counts = dict(labels.value_counts().iter_rows())
    return {c: counts.get(c, 0) / labels.len() if labels.len() else 0.0 for c in classes}


def _mean(values: pl.Series) -> float | None:
    mean = values.mean()
    return None if mean is None else float(mean)
