"""The three selectors of Dong & de Melo (2019), and `pool`, registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl

from xlc.selectors.hookspecs import Option, SelectionContext, Selector, hookimpl
from xlc.selectors.validate import at_least, between


def by_confidence(pool: pl.DataFrame) -> pl.DataFrame:
    """Most confident first; ties broken by id so the result does not depend on row order."""
    return pool.sort(["confidence", "id"], descending=[True, False])


def balanced(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    return by_confidence(pool).group_by("label", maintain_order=True).head(options["kt"])


def throttling(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    return by_confidence(pool).head(options["n"])


def thresholded(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    return by_confidence(pool).filter(pl.col("confidence") >= options["threshold"])


def take_all(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    n = options["n"]
    if n and pool.height > n:  # a uniform sample keeps the model's class shares, unlike the most confident
        rows = np.random.default_rng(context.round).choice(pool.height, size=n, replace=False)
        pool = pool.sort("id")[np.sort(rows)]
    return by_confidence(pool)


BUILTINS = (
    Selector(
        "balanced", balanced,
        "up to kt most confident texts per predicted class (the paper's method)",
        (Option("kt", int, 40, "texts to take per class each round", at_least(1)),),
    ),
    Selector(
        "throttling", throttling,
        "the n most confident texts overall, whatever their class",
        (Option("n", int, 280, "texts to take each round", at_least(1)),),
    ),
    Selector(
        "thresholded", thresholded,
        "every text whose confidence is at least threshold",
        (Option("threshold", float, 0.9, "minimum confidence", between(0, 1, include_low=False)),),
    ),
    Selector(
        "pool", take_all,
        "the whole pool, each text with its predicted class (with --targets soft: self-distillation)",
        (Option("n", int, 0, "at most this many texts, a seeded uniform sample of the pool (0: all)",
                at_least(0)),),
    ),
)


@hookimpl
def xlc_register_selectors(register: Callable[[Selector], None]) -> None:
    for selector in BUILTINS:
        register(selector)
