"""Selectors: which pseudo-labeled texts move from the pool into the labeled set.

`hookspecs` is the plugin contract, `registry` finds a selector by name, `validate` checks its
options and what it returns, `builtin` holds the built-in selectors. The functions below join
the registry and the checks, by selector name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from xlc.selectors.hookspecs import Option, SelectFunction, SelectionContext, Selector, hookimpl
from xlc.selectors.registry import add_plugin, available, get_selector, remove_plugin
from xlc.selectors.validate import Check, Prepared, at_least, between, one_of, resolve


def prepare(name: str, options: Mapping[str, Any]) -> Prepared:
    """Selector `name` with `options` resolved (defaults filled, strings converted, checked) once.

    The self-training loop prepares its selector before round 0 and calls it every round.
    """
    entry = get_selector(name)
    return Prepared(entry.selector, resolve(entry.selector, options), entry.who)


def resolve_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given` (strings converted), validated; unknown keys rejected."""
    return dict(prepare(name, given).options)


def labeled_counts(labels: pl.Series, classes: Sequence[str]) -> dict[str, int]:
    """Texts per class among `labels` (the labeled set's), in `classes` order: `SelectionContext.labeled_counts`."""
    counts = dict(labels.value_counts().iter_rows())
    return {c: counts.get(c, 0) for c in classes}


def dev_confusion(evaluated: Mapping[str, Any]) -> tuple[tuple[int, ...], ...] | None:
    """The dev confusion matrix of a round's evaluation (its eval.json, or the metrics.json record that
    holds it): `SelectionContext.dev_confusion`; None when it records none."""
    found = evaluated.get("dev", {}).get("confusion")
    return None if found is None else tuple(tuple(int(n) for n in row) for row in found)


def select(name: str, pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    """Run selector `name` on the scored pool and check what it returns.

    Returns the chosen pool rows with their pseudo-label in `label` and the model's
    `confidence`, in the order the selector returned them.
    """
    return prepare(name, options)(pool, context)


__all__ = [
    "Check", "Option", "Prepared", "SelectFunction", "SelectionContext", "Selector", "add_plugin", "at_least",
    "available", "between", "dev_confusion", "get_selector", "hookimpl", "labeled_counts", "one_of", "prepare",
    "remove_plugin", "resolve_options", "select",
]
