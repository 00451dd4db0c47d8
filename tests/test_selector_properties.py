"""Property tests (hypothesis) for the built-in selectors."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from xlc.selectors import SelectionContext, select

CLASSES = ("a", "b", "c")
CONTEXT = SelectionContext(CLASSES, {c: 5 for c in CLASSES}, 0)

pools = st.lists(
    st.tuples(st.sampled_from(CLASSES), st.sampled_from([0.34, 0.5, 0.75, 0.9, 0.99, 1.0])),
    max_size=40,
).map(lambda rows: pl.DataFrame({
    "id": list(range(len(rows))),
    "text": [f"t{i}" for i in range(len(rows))],
    "lang": ["x"] * len(rows),
    "label": [r[0] for r in rows],
    "confidence": pl.Series([r[1] for r in rows], dtype=pl.Float32),
    "probs": pl.Series(np.full((len(rows), 3), 1 / 3, dtype=np.float32), dtype=pl.Array(pl.Float32, 3)),
}, schema_overrides={"label": pl.String, "id": pl.Int64}))


def check_subset(pool: pl.DataFrame, taken: pl.DataFrame) -> None:
    assert taken["id"].n_unique() == taken.height
    assert set(taken["id"]) <= set(pool["id"])
    labels = dict(zip(pool["id"], pool["label"], strict=True))
    assert all(labels[i] == label for i, label in zip(taken["id"], taken["label"], strict=True))


@settings(max_examples=60, deadline=None)
@given(pool=pools, kt=st.integers(1, 8), seed=st.integers(0, 1000))
def test_balanced_is_a_capped_order_independent_subset(pool, kt, seed):
    taken = select("balanced", pool, {"kt": kt}, CONTEXT)
    check_subset(pool, taken)
    counts = pool["label"].value_counts()
    for label, available in counts.iter_rows():
        assert (taken["label"] == label).sum() == min(kt, available)
    for label in CLASSES:  # nothing less confident was taken over something more confident
        chosen = taken.filter(pl.col("label") == label)["confidence"]
        left = pool.filter((pl.col("label") == label) & ~pl.col("id").is_in(taken["id"].implode()))
        if chosen.len() and left.height:
            assert chosen.min() >= left["confidence"].max()
    shuffled = select("balanced", pool.sample(fraction=1.0, shuffle=True, seed=seed), {"kt": kt}, CONTEXT)
    assert sorted(shuffled["id"]) == sorted(taken["id"])


@settings(max_examples=60, deadline=None)
@given(pool=pools, n=st.integers(1, 50), seed=st.integers(0, 1000))
def test_throttling_takes_exactly_the_global_top_n(pool, n, seed):
    taken = select("throttling", pool, {"n": n}, CONTEXT)
    check_subset(pool, taken)
    assert taken.height == min(n, pool.height)
    shuffled = select("throttling", pool.sample(fraction=1.0, shuffle=True, seed=seed), {"n": n}, CONTEXT)
    assert shuffled["id"].to_list() == taken["id"].to_list()


@settings(max_examples=60, deadline=None)
@given(pool=pools, threshold=st.sampled_from([0.5, 0.75, 0.9, 1.0]))
def test_thresholded_takes_exactly_the_rows_at_or_above_the_threshold(pool, threshold):
    taken = select("thresholded", pool, {"threshold": threshold}, CONTEXT)
    check_subset(pool, taken)
    expected = pool.filter(pl.col("confidence") >= threshold)["id"]
    assert sorted(taken["id"]) == sorted(expected)
