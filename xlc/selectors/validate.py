"""Checks on selectors: their definitions, the options users give them, and what they return.

Nothing here knows about plugins or names: `registry` looks a selector up and says who provides
it; this module checks. `at_least`, `between` and `one_of` are ready-made option checks for
plugin authors (``xlc.at_least(1)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from xlc.errors import XlcError
from xlc.selectors.hookspecs import Option, SelectionContext, Selector

OPTION_TYPES = (int, float, str, bool)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""What a selector or option name may be."""


@dataclass(frozen=True)
class Check:
    """An option check that carries its requirement: give it as `Option`'s check and leave requirement out."""

    test: Callable[[Any], bool]
    requirement: str

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


def at_least(low: float) -> Check:
    """Values >= `low`."""
    return Check(lambda value: value >= low, f">= {low}")


def between(low: float, high: float, *, include_low: bool = True, include_high: bool = True) -> Check:
    """Values from `low` to `high`, each end included unless told otherwise (``in (0, 1]``)."""

    def test(value: Any) -> bool:
        above = value >= low if include_low else value > low
        below = value <= high if include_high else value < high
        return above and below

    return Check(test, f"in {'[' if include_low else '('}{low}, {high}{']' if include_high else ')'}")


def one_of(*choices: Any) -> Check:
    """One of `choices` (``labeled or pool``)."""
    if not choices:
        raise ValueError("one_of() needs at least one choice")
    listed = ", ".join(map(str, choices[:-1]))
    return Check(lambda value: value in choices, f"{listed} or {choices[-1]}" if listed else str(choices[0]))


def check_selector(selector: Any) -> Selector:
    """`selector` if it is a usable Selector with valid option defaults, else an XlcError."""
    if not isinstance(selector, Selector):
        raise XlcError(f"register() takes an xlc.Selector, got {type(selector).__name__}")
    if not isinstance(selector.name, str) or not NAME.fullmatch(selector.name):
        raise XlcError(
            f"selector name {selector.name!r} must start with a letter or digit and hold only "
            f"letters, digits, '_', '-' and '.'"
        )
    if not callable(selector.select):
        raise XlcError(f"selector {selector.name!r}: select must be a function (pool, options, context)")
    seen: set[str] = set()
    for option in selector.options:
        if not isinstance(option, Option):
            raise XlcError(f"selector {selector.name!r}: options must be xlc.Option, got {option!r}")
        if not NAME.fullmatch(option.name) or option.name in seen:
            raise XlcError(f"selector {selector.name!r}: option name {option.name!r} is invalid or repeated")
        if option.type not in OPTION_TYPES:
            raise XlcError(
                f"selector {selector.name!r}: option {option.name} has type {option.type!r}; "
                f"use int, float, str or bool"
            )
        seen.add(option.name)
        try:
            if _convert(selector, option, option.default) != option.default:  # a string for an int
                raise XlcError(
                    f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, "
                    f"got {option.default!r}"
                )
        except XlcError as exc:
            raise XlcError(f"{exc} (the option's default)") from None
    return selector


def _convert(selector: Selector, option: Option, value: Any) -> Any:
    if isinstance(value, str) and option.type is not str:
        try:
            if option.type is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            else:
                value = option.type(value)
        except ValueError:
            raise XlcError(
                f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, "
                f"got {value!r}"
            ) from None
    elif option.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        raise XlcError(
            f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, got {value!r}"
        )
    if isinstance(value, int) and not -(2**63) <= value < 2**63:  # Polars and numpy count in 64 bits
        raise XlcError(f"selector {selector.name!r}: option {option.name} is too large: {value} "
                       f"(at most {2**63 - 1})")
    try:
        valid = option.check is None or bool(option.check(value))
    except Exception as exc:  # a plugin's check that crashes is the plugin's bug: name it
        raise XlcError(f"selector {selector.name!r}: the check of option {option.name} failed on {value!r} "
                       f"({type(exc).__name__}: {exc}); fix the plugin or pass another value") from None
    if not valid:
        raise XlcError(
            f"selector {selector.name!r}: option {option.name} must be {option.requirement or 'valid'}, "
            f"got {value!r}"
        )
    return value


def resolve(selector: Selector, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given` (strings converted), validated; unknown keys rejected."""
    known = {o.name: o for o in selector.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise XlcError(f"selector {selector.name!r} has no option {unknown[0]!r} (its options: {listed})")
    return {o.name: _convert(selector, o, given.get(o.name, o.default)) for o in selector.options}


@dataclass(frozen=True)
class Prepared:
    """A selector with its options resolved once, run as ``prepared(pool, context)`` every round.

    who: how errors name it, e.g. "selector 'balanced' (plugin 'xlc.builtin', package xlc)".
    """

    selector: Selector
    options: Mapping[str, Any]
    who: str

    def __call__(self, pool: pl.DataFrame, context: SelectionContext) -> pl.DataFrame:
        """The chosen pool rows, checked, in the order the selector returned them.

        They hold the pseudo-label in `label` and the model's `confidence`; a selector that
        raises or returns bad rows is an XlcError naming `who`.
        """
        try:
            chosen = self.selector.select(pool, self.options, context)
            if isinstance(chosen, pl.LazyFrame):
                chosen = chosen.collect()
        except XlcError:
            raise
        except Exception as exc:
            raise XlcError(f"{self.who} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(chosen, pl.DataFrame) or not {"id", "label"} <= set(chosen.columns):
            got = type(chosen).__name__ if not isinstance(chosen, pl.DataFrame) else f"columns {chosen.columns}"
            raise XlcError(f"{self.who} must return a Polars frame with columns id and label, got {got}")
        return _check_choice(self.who, chosen.select("id", pl.col("label").cast(pl.String)), pool, context)


def _check_choice(
    who: str, chosen: pl.DataFrame, pool: pl.DataFrame, context: SelectionContext
) -> pl.DataFrame:
    """The chosen rows joined to the pool, or an error naming the first bad row."""
    if chosen["id"].is_duplicated().any():
        dup = chosen.filter(pl.col("id").is_duplicated())["id"][0]
        raise XlcError(f"{who} returned id {dup!r} more than once")
    if chosen["label"].null_count() or not set(chosen["label"].unique()) <= set(context.classes):
        bad = sorted(set(chosen["label"].unique().to_list()) - set(context.classes), key=str)
        raise XlcError(f"{who} returned label(s) {bad} outside the classes {list(context.classes)}")
    if chosen.height and chosen["id"].dtype != pool["id"].dtype:
        raise XlcError(f"{who} returned ids of type {chosen['id'].dtype}, the pool's are {pool['id'].dtype}")
    taken = chosen.join(pool.drop("label"), on="id", how="inner", maintain_order="left")
    if taken.height != chosen.height:
        stray = chosen.join(pool, on="id", how="anti")["id"][0]
        raise XlcError(f"{who} returned id {stray!r}, which is not in the pool")
    return taken
