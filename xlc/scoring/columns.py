"""The columns of scored texts, as `xlc score` writes them and `xlc.score` returns them.

One row per input row, in input order: the input columns carried along (all of them in
`xlc.score`, those of `--keep-columns` in `xlc score`, which writes `id` first), then

    label       String   the predicted class
    confidence  Float32  its probability
    p_<class>   Float32  one per class, in the model's class order

A null, empty or whitespace-only text keeps its row with all three null: one bad text never
stops a job. A carried input column named `label` is written as `gold`; any other name that
clashes with these is an error naming the column.

(The self-training loop's pool frames keep the probabilities as one `probs` array column, which
selectors receive: see `Scorer.score` and `xlc.selectors.hookspecs`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE
from xlc.scoring.scorer import ProgressFn, Scorer

LABEL = "label"
CONFIDENCE = "confidence"
PROB_PREFIX = "p_"
GOLD = "gold"
"""The name a carried input `label` column gets, beside the predicted one."""
ALL = "all"
"""`--keep-columns all`: carry every input column."""


def prob_column(name: str) -> str:
    """The probability column of class `name`."""
    return f"{PROB_PREFIX}{name}"


def prediction_schema(classes: Sequence[str]) -> dict[str, pl.DataType]:
    """The prediction columns with their types, in output order."""
    return {LABEL: pl.String(), CONFIDENCE: pl.Float32(), **{prob_column(c): pl.Float32() for c in classes}}


def scorable(texts: pl.Series) -> np.ndarray:
    """Which texts are scored: not null, empty or whitespace only."""
    return (texts.cast(pl.String).str.strip_chars().str.len_chars() > 0).fill_null(False).to_numpy()


def predict(scorer: Scorer, texts: pl.Series, batch_size: int = BATCH_SIZE, max_length: int | None = None,
            progress: ProgressFn | None = None) -> list[pl.Series]:
    """The prediction columns for `texts`; null in every column for a text that is not `scorable`.

    `progress(done, total)` counts the texts scored (the scorable ones).
    """
    valid = scorable(texts)
    classes = scorer.classes
    probs = np.full((len(texts), len(classes)), np.nan, dtype=np.float32)
    probs[valid] = scorer.probabilities(texts.filter(pl.Series(valid)).to_list(), batch_size, max_length, progress)
    labels = np.full(len(texts), None, dtype=object)
    labels[valid] = np.asarray(classes, dtype=object)[probs[valid].argmax(axis=1)]
    confidence = np.full(len(texts), np.nan, dtype=np.float32)
    confidence[valid] = probs[valid].max(axis=1)
    return [
        pl.Series(LABEL, labels.tolist(), dtype=pl.String),
        pl.Series(CONFIDENCE, confidence).fill_nan(None),
        *(pl.Series(prob_column(name), probs[:, i]).fill_nan(None) for i, name in enumerate(classes)),
    ]


def probabilities(frame: pl.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """The `p_<class>` columns of scored rows as one matrix, columns in `classes` order."""
    return frame.select(prob_column(c) for c in classes).to_numpy().astype(np.float32)


def carried(available: Sequence[str], keep: Sequence[str], classes: Sequence[str], where: str, fix: str,
            reserved: Mapping[str, str] | None = None, skip: Sequence[str] = ()) -> dict[str, str]:
    """The input columns to carry into the output, each with its output name (`label` becomes `gold`).

    `keep`: column names, or `(ALL,)` for every column in `available`; columns in `skip` are
    never carried. `reserved`: the caller's other output names, each described for the error
    ("the id column 'id' (...)"). A clash is an error that names the column, then `fix`.
    """
    names = list(available) if tuple(keep) == (ALL,) else list(dict.fromkeys(keep))
    missing = [c for c in names if c not in available]
    if missing:
        raise XlcError(f"{where}: column {missing[0]!r} not found (columns: {', '.join(available)}); "
                       f"name columns of the input, or all")
    out = {name: GOLD if name == LABEL else name for name in names if name not in skip}
    if LABEL in out and GOLD in out:
        raise XlcError(f"{where}: has both {LABEL!r} and {GOLD!r} columns, and an input {LABEL!r} is kept as "
                       f"{GOLD!r} beside the predicted one; {fix}")
    taken = {**{name: f"the prediction column {name!r}" for name in prediction_schema(classes)}, **(reserved or {})}
    for source, name in out.items():
        if name in taken:
            raise XlcError(f"{where}: input column {source!r} clashes with {taken[name]}; {fix}")
    return out
