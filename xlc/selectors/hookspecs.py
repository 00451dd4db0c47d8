"""The selector plugin contract.

A plugin is any module or object with functions marked ``@xlc.hookimpl`` whose names
match the hooks below. Third-party packages expose it through an entry point in the
``xlc`` group::

    [project.entry-points.xlc]
    my_selectors = "my_package.selectors"

A selector is a function ``select(pool, options, context) -> frame``:

- ``pool`` is the scored unlabelled pool, a Polars frame with columns ``id``, ``text``,
  ``lang``, ``label`` (predicted class name), ``confidence`` (its probability, Float32)
  and ``probs`` (all class probabilities, an Array in ``context.classes`` order);
- ``options`` holds the selector's options, already converted and validated;
- ``context`` says what else a selector may use (classes, labelled-set counts, round).

It returns the rows to take: a frame with an ``id`` column (ids from the pool, each at
most once) and a ``label`` column (the pseudo-label, one of ``context.classes``). Any
other columns are ignored. Returning no rows means "take nothing" and stops the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import polars as pl

hookspec = pluggy.HookspecMarker("xlc")
hookimpl = pluggy.HookimplMarker("xlc")


@dataclass(frozen=True)
class SelectionContext:
    """What a selector knows besides the pool.

    classes: the class names, in the order of the ``probs`` column.
    labeled_counts: texts per class in the labelled set the model was trained on.
    round: the self-training round that produced the scores (0 = trained on gold only).
    """

    classes: tuple[str, ...]
    labeled_counts: Mapping[str, int]
    round: int


@dataclass(frozen=True)
class Option:
    """One selector option.

    type: int, float, str or bool; command-line strings are converted to it.
    check: returns True for valid values; ``requirement`` says what valid means
    (e.g. ">= 1") and appears in the error for an invalid value.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    check: Callable[[Any], bool] | None = None
    requirement: str = ""


@dataclass(frozen=True)
class Selector:
    """A named selection strategy."""

    name: str
    select: Callable[[pl.DataFrame, Mapping[str, Any], SelectionContext], pl.DataFrame]
    description: str = ""
    options: tuple[Option, ...] = field(default_factory=tuple)


@hookspec
def xlc_register_selectors(register: Callable[[Selector], None]) -> None:
    """Register selectors: call ``register(Selector(...))`` once for each.

    Called once, when xlc first needs the list of selectors. Names must be unique
    across all installed plugins; a name already taken is an error naming both plugins.
    """
