"""The xlc plugin: registers the `prior` and `margin` selectors (entry point `classprior`)."""

from __future__ import annotations

from collections.abc import Callable

from xlc import Option, Selector, at_least, between, hookimpl, one_of
from xlc_classprior.selectors import margin, prior

PRIOR = Selector(
    "prior", prior,
    "most confident texts per predicted class, in proportion to the labeled set's or the pool's classes",
    (
        Option("kt", int, 40, "texts per class on average when n is 0 (total = kt x classes)", at_least(1)),
        Option("n", int, 0, "texts per round in total; 0 = kt x classes", at_least(0)),
        Option("min_confidence", float, 0.0, "take no text below this confidence", between(0, 1)),
        Option("proportions", str, "labeled",
               "class split: the labeled set's, the pool's (mean probabilities) or the pool's by black-box "
               "shift estimation on the round's dev predictions (bbse)",
               one_of("labeled", "pool", "bbse")),
        Option("per_lang", bool, False, "split the total across languages by pool size, then by class"),
    ),
)

MARGIN = Selector(
    "margin", margin,
    "up to kt texts per predicted class with the largest top-1 minus top-2 probability",
    (
        Option("kt", int, 40, "texts to take per class each round", at_least(1)),
        Option("min_margin", float, 0.0, "take no text whose margin is below this", between(0, 1)),
    ),
)


@hookimpl
def xlc_register_selectors(register: Callable[[Selector], None]) -> None:
    register(PRIOR)
    register(MARGIN)
