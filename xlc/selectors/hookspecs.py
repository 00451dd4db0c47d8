"""The selector plugin contract: what a third-party selector package implements.

A plugin is any module or object with functions marked ``@xlc.hookimpl`` whose names
match the hooks below. A package exposes its plugin through an entry point in the
``xlc`` group; the entry point's name is the plugin's name (``XLC_PLUGINS`` uses it)::

    [project.entry-points.xlc]
    my_selectors = "my_package.selectors"

A selector is a function ``select(pool, options, context) -> frame`` (``SelectFunction``):

- ``pool`` is the scored unlabeled pool, a Polars frame with columns ``id`` (the pool's
  ids: row numbers, or the values of ``--id-column``), ``text``, ``lang``, ``label``
  (predicted class name), ``confidence`` (its probability, Float32) and ``probs`` (all
  class probabilities, an Array in ``context.classes`` order);
- ``options`` maps each of the selector's ``Option`` names to its value, already converted
  to the option's type and validated (defaults filled in);
- ``context`` says what else a selector may use (classes, labeled-set counts, round, the
  round's confusion matrix on the dev set).

It returns the rows to take: a frame (or LazyFrame) with an ``id`` column (ids from the
pool, each at most once) and a ``label`` column (the pseudo-label, one of
``context.classes``). Any other columns are ignored. Returning no rows means "take
nothing" and stops the run.

xlc checks every plugin and names the plugin and its package in each error:

- a plugin that fails to import, implements no hook, misspells a hook name or registers
  something invalid (a name already taken, an option default that fails its own check) is
  left out; ``xlc selectors`` lists the others and prints the failure on stderr, and
  ``--selector NAME`` for a selector it would have provided fails with that message;
- a ``select`` that raises, returns an id not in the pool or twice, or a label outside
  ``context.classes``, stops the run with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pluggy
import polars as pl

hookspec = pluggy.HookspecMarker("xlc")
hookimpl = pluggy.HookimplMarker("xlc")


@dataclass(frozen=True)
class SelectionContext:
    """What a selector knows besides the pool.

    classes: the class names, in the order of the ``probs`` column.
    labeled_counts: texts per class in the labeled set the model was trained on (gold texts
    plus the pseudo-labels taken in earlier rounds); every class has at least one.
    round: the self-training round that produced the scores (0 = trained on gold only).
    dev_confusion: the confusion matrix of the same round's model on the dev set, as counts:
    ``dev_confusion[i][j]`` dev texts of gold class ``classes[i]`` were predicted as ``classes[j]``
    (rows gold, columns predicted; what each round's ``metrics.json`` records as
    ``dev.confusion``). The dev set is the target-language ``--dev`` when given, else the share of
    the English training set that xlc holds out (``--dev-share``). None when the caller has no dev
    predictions; a selector that needs them should raise ``XlcError`` saying so.
    """

    classes: tuple[str, ...]
    labeled_counts: Mapping[str, int]
    round: int
    dev_confusion: tuple[tuple[int, ...], ...] | None = None


class SelectFunction(Protocol):
    """What ``Selector.select`` is: ``select(pool, options, context)``, described in this module's docstring."""

    def __call__(
        self, pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext, /
    ) -> pl.DataFrame | pl.LazyFrame: ...


@dataclass(frozen=True)
class Option:
    """One selector option.

    name: the key users give (``--selector-opt name=value``, ``--selector-config`` files):
    letters, digits, ``_``, ``-`` and ``.``; unique within the selector.
    type: int, float, str or bool; command-line strings are converted to it.
    default: the value when none is given; it must pass ``check`` itself.
    help: one line for ``xlc selectors``.
    check: returns True for valid values; ``requirement`` says what valid means
    (e.g. ">= 1") and appears in the error for an invalid value. The ready-made checks
    ``xlc.at_least(1)``, ``xlc.between(0, 1)`` and ``xlc.one_of("a", "b")`` carry their
    requirement, so ``Option("kt", int, 40, "texts per class", xlc.at_least(1))`` needs none.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    check: Callable[[Any], bool] | None = None
    requirement: str = ""

    def __post_init__(self) -> None:
        carried = getattr(self.check, "requirement", "")
        if not self.requirement and isinstance(carried, str):
            object.__setattr__(self, "requirement", carried)


@dataclass(frozen=True)
class Selector:
    """A named selection strategy.

    name: what ``--selector`` takes; unique across all installed plugins.
    select: the function described in this module's docstring.
    description: one line for ``xlc selectors``.
    options: its options, in the order ``xlc selectors`` shows them.
    """

    name: str
    select: SelectFunction
    description: str = ""
    options: tuple[Option, ...] = field(default_factory=tuple)


@hookspec
def xlc_register_selectors(register: Callable[[Selector], None]) -> None:
    """Register selectors: call ``register(Selector(...))`` once for each; return nothing.

    register: checks the selector and records it under its name. It raises ``XlcError``
    for a name already taken (naming the plugin that has it) or an invalid selector.

    Called once per process, when xlc first needs the list of selectors: built-ins first,
    then plugins in the order of their entry point names (the first to take a name keeps
    it). A plugin's selectors register all or none: if the hook raises, none of them is
    used and the plugin is reported as broken.
    """
