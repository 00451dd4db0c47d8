"""The ready-made option checks for plugin authors (`xlc.at_least`, `xlc.between`, `xlc.one_of`)
and selectors prepared once, then run many times."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import polars as pl
import pytest

import xlc
from xlc import Option, Selector, XlcError, at_least, between, hookimpl, one_of
from xlc.selectors import SelectionContext, add_plugin, prepare, remove_plugin, resolve_options
from xlc.selectors.validate import check_selector

CONTEXT = SelectionContext(("neg", "pos"), {"neg": 3, "pos": 3}, 0)
POOL = pl.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"], "lang": ["de"] * 3, "label": ["neg", "pos", "pos"],
                     "confidence": pl.Series([0.9, 0.8, 0.7], dtype=pl.Float32)})


def keep_all(pool, options, context):
    return pool


@contextmanager
def registered(*selectors: Selector) -> Iterator[None]:
    """`selectors` installed by a run-time plugin for the length of the block."""

    def hook(register):
        for selector in selectors:
            register(selector)

    add_plugin(SimpleNamespace(xlc_register_selectors=hookimpl(hook)), "test-checks")
    try:
        yield
    finally:
        remove_plugin("test-checks")


def test_at_least_accepts_the_bound_and_above_and_names_it():
    check = at_least(1)
    assert (check(0), check(1), check(7)) == (False, True, True)
    assert check.requirement == ">= 1"


@pytest.mark.parametrize(
    ("check", "requirement", "accepted", "refused"),
    [
        (between(0, 1), "in [0, 1]", [0, 0.5, 1], [-0.1, 1.1]),
        (between(0, 1, include_low=False), "in (0, 1]", [0.1, 1], [0, 1.5]),
        (between(0, 1, include_high=False), "in [0, 1)", [0, 0.9], [1, -1]),
    ],
)
def test_between_includes_both_ends_unless_told_otherwise(check, requirement, accepted, refused):
    assert check.requirement == requirement
    assert all(check(v) for v in accepted) and not any(check(v) for v in refused)


def test_one_of_accepts_only_its_choices_and_lists_them():
    assert one_of("labeled", "pool").requirement == "labeled or pool"
    assert one_of("a", "b", "c").requirement == "a, b or c"
    assert one_of("only").requirement == "only"
    assert one_of("a", "b")("b") and not one_of("a", "b")("c")
    with pytest.raises(ValueError, match="at least one choice"):
        one_of()


def test_an_option_takes_its_requirement_from_a_ready_made_check_unless_given_one():
    assert Option("k", int, 1, "", at_least(1)).requirement == ">= 1"
    assert Option("k", int, 1, "", at_least(1), "a positive count").requirement == "a positive count"
    assert Option("k", int, 1, "", lambda v: v >= 1).requirement == ""


def test_the_checks_are_public_from_the_package_root():
    assert {"at_least", "between", "one_of"} <= set(xlc.__all__)
    assert xlc.between is between


def test_a_ready_made_check_is_named_in_the_error_for_a_bad_value():
    selector = Selector("checked", keep_all, options=(Option("share", float, 0.5, "", between(0, 1)),
                                                      Option("mode", str, "a", "", one_of("a", "b"))))
    with registered(selector):
        with pytest.raises(XlcError, match=r"selector 'checked': option share must be in \[0, 1\], got 1.5"):
            resolve_options("checked", {"share": "1.5"})
        with pytest.raises(XlcError, match=r"option mode must be a or b, got 'c'"):
            resolve_options("checked", {"mode": "c"})


def test_a_default_that_fails_a_ready_made_check_is_refused_with_its_requirement():
    with pytest.raises(XlcError, match=r"option k must be >= 1, got 0 \(the option's default\)"):
        check_selector(Selector("x", keep_all, options=(Option("k", int, 0, "", at_least(1)),)))


def counting_selector() -> tuple[Selector, list[int]]:
    """Selector "first" (the n lowest ids) whose option check records every value it is given."""
    seen: list[int] = []

    def counted(value):
        seen.append(value)
        return value >= 1

    def first_n(pool, options, context):
        return pool.sort("id").head(options["n"])

    return Selector("first", first_n, options=(Option("n", int, 1, "", counted),)), seen


def test_a_prepared_selector_checks_its_options_once_and_its_output_every_call():
    selector, seen = counting_selector()
    with registered(selector):
        seen.clear()  # registration checked the default
        prepared = prepare("first", {"n": "2"})
        assert prepared.options == {"n": 2}
        assert prepared.who == "selector 'first' (plugin 'test-checks', package (registered at run time))"
        for _ in range(3):
            assert prepared(POOL, CONTEXT)["id"].to_list() == [1, 2]
        assert seen == [2]
        with pytest.raises(XlcError, match=r"selector 'first' \(plugin 'test-checks'.*label\(s\) \['pos'\] outside"):
            prepared(POOL, SelectionContext(("neg",), {"neg": 3}, 0))


def test_selftrain_resolves_the_selector_options_once_for_the_whole_run(tiny_model, small_files, tmp_path):
    selector, seen = counting_selector()
    with registered(selector):
        seen.clear()
        run = xlc.selftrain(train=small_files["train"], unlabeled=small_files["unlabeled"], dev=small_files["dev"],
                            selector="first", selector_options={"n": "3"}, model=str(tiny_model),
                            out=tmp_path / "run", epochs=1, batch_size=16, max_length=32, max_rounds=2, patience=5)
    assert run.rounds["selected"].to_list() == [3, 3, 0]  # two rounds selected ...
    assert seen == [3]  # ... with the options resolved once, before round 0
