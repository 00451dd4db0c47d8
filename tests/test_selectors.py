"""The built-in selectors, exercised through the plugin manager as any caller would."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from xlc import Selector, XlcError, hookimpl
from xlc.selectors import SelectionContext, add_plugin, available, remove_plugin, resolve_options, select

CLASSES = ("neg", "neu", "pos")
CONTEXT = SelectionContext(CLASSES, {"neg": 10, "neu": 10, "pos": 10}, 0)


def scored_pool(labels: list[str], confidences: list[float]) -> pl.DataFrame:
    n = len(labels)
    probs = np.full((n, len(CLASSES)), 0.0, dtype=np.float32)
    for i, (label, conf) in enumerate(zip(labels, confidences, strict=True)):
        probs[i] = (1 - conf) / 2
        probs[i, CLASSES.index(label)] = conf
    return pl.DataFrame({
        "id": list(range(100, 100 + n)),
        "text": [f"text {i}" for i in range(n)],
        "lang": ["de"] * n,
        "label": labels,
        "confidence": pl.Series(confidences, dtype=pl.Float32),
        "probs": pl.Series(probs, dtype=pl.Array(pl.Float32, len(CLASSES))),
    })


POOL = scored_pool(
    ["neg", "neg", "neg", "pos", "pos", "neu", "pos", "neg"],
    [0.90, 0.95, 0.50, 0.99, 0.60, 0.70, 0.80, 0.97],
)


def test_builtins_are_registered_through_the_plugin_manager():
    names = available()
    assert {"balanced", "throttling", "thresholded"} <= set(names)
    assert all(names[n].plugin == "xlc.builtin" for n in ("balanced", "throttling", "thresholded"))


def test_balanced_takes_kt_most_confident_per_class():
    taken = select("balanced", POOL, {"kt": 2}, CONTEXT)
    per_class = dict(taken["label"].value_counts().iter_rows())
    assert per_class == {"neg": 2, "pos": 2, "neu": 1}
    assert set(taken.filter(pl.col("label") == "neg")["id"]) == {107, 101}  # 0.97 and 0.95
    assert set(taken.filter(pl.col("label") == "pos")["id"]) == {103, 106}  # 0.99 and 0.80


def test_balanced_with_kt_larger_than_a_class_takes_the_whole_class():
    taken = select("balanced", POOL, {"kt": 100}, CONTEXT)
    assert taken.height == POOL.height
    assert sorted(taken["id"]) == sorted(POOL["id"])


def test_throttling_takes_global_top_n_whatever_the_class():
    taken = select("throttling", POOL, {"n": 3}, CONTEXT)
    assert taken["id"].to_list() == [103, 107, 101]


def test_thresholded_takes_everything_at_or_above_threshold():
    taken = select("thresholded", POOL, {"threshold": 0.9}, CONTEXT)
    assert sorted(taken["id"]) == [100, 101, 103, 107]


def test_pool_takes_every_text_by_default():
    taken = select("pool", POOL, {}, CONTEXT)
    assert sorted(taken["id"]) == sorted(POOL["id"])


def test_pool_with_n_takes_a_sample_that_is_the_same_whatever_the_row_order():
    big = scored_pool(["neg", "pos", "neu", "pos"] * 50, [0.5 + (i % 40) / 100 for i in range(200)])
    taken = select("pool", big, {"n": 30}, CONTEXT)
    assert taken.height == 30 and taken["id"].n_unique() == 30
    assert sorted(taken["id"]) == sorted(select("pool", big.reverse(), {"n": 30}, CONTEXT)["id"])
    # uniform, not the most confident: the sample's confidences span the pool's range
    assert taken["confidence"].min() < 0.6 < 0.8 < taken["confidence"].max()
    later = select("pool", big, {"n": 30}, SelectionContext(CLASSES, CONTEXT.labeled_counts, 1))
    assert sorted(later["id"]) != sorted(taken["id"])  # each round draws its own sample


def test_ties_are_broken_by_id_whatever_the_row_order():
    tied = scored_pool(["pos"] * 5, [0.8] * 5)
    first = select("balanced", tied, {"kt": 2}, CONTEXT)["id"].to_list()
    reversed_first = select("balanced", tied.reverse(), {"kt": 2}, CONTEXT)["id"].to_list()
    assert first == reversed_first == [100, 101]


def test_empty_pool_selects_nothing():
    empty = POOL.clear()
    for name, options in (("balanced", {"kt": 3}), ("throttling", {"n": 3}), ("thresholded", {})):
        assert select(name, empty, options, CONTEXT).height == 0


def test_selected_rows_carry_text_and_confidence_from_the_pool():
    taken = select("throttling", POOL, {"n": 1}, CONTEXT)
    assert taken.row(0, named=True) | {"probs": None} == {
        "id": 103, "label": "pos", "text": "text 3", "lang": "de",
        "confidence": pytest.approx(0.99), "probs": None,
    }


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("balanced", {"kt": 0}, "option kt must be >= 1, got 0"),
        ("throttling", {"n": -5}, "option n must be >= 1"),
        ("thresholded", {"threshold": 0.0}, "option threshold must be in (0, 1], got 0.0"),
        ("thresholded", {"threshold": 1.5}, "must be in (0, 1]"),
        ("balanced", {"kt": "many"}, "option kt must be int, got 'many'"),
        ("balanced", {"kt": "99999999999999999999"}, "option kt is too large: 99999999999999999999"),
        ("throttling", {"n": 2**63}, "option n is too large"),
        ("pool", {"n": -1}, "option n must be >= 0, got -1"),
        ("balanced", {"n": 3}, "selector 'balanced' has no option 'n' (its options: kt)"),
    ],
)
def test_bad_options_are_rejected_with_a_clear_message(name, options, message):
    with pytest.raises(XlcError, match=None) as info:
        resolve_options(name, options)
    assert message in str(info.value)


def test_options_from_the_command_line_are_converted():
    assert resolve_options("balanced", {"kt": "7"}) == {"kt": 7}
    assert resolve_options("thresholded", {"threshold": "0.5"}) == {"threshold": 0.5}
    assert resolve_options("thresholded", {"threshold": 1}) == {"threshold": 1.0}


def test_unknown_selector_lists_the_installed_ones():
    with pytest.raises(XlcError) as info:
        select("nope", POOL, {}, CONTEXT)
    assert "no such selector" in str(info.value)
    installed = str(info.value).partition("installed: ")[2].split(", ")
    assert {"balanced", "thresholded", "throttling"} <= set(installed) and installed == sorted(installed)


class Misbehaving:
    """A plugin whose selector returns whatever `result` produces."""

    def __init__(self, result):
        self.result = result

    @hookimpl
    def xlc_register_selectors(self, register):
        register(Selector("bad", lambda pool, options, context: self.result(pool)))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (lambda pool: pl.DataFrame({"id": [999], "label": ["pos"]}), "returned id 999, which is not in the pool"),
        (lambda pool: pl.DataFrame({"id": [100, 100], "label": ["pos", "pos"]}), "returned id 100 more than once"),
        (lambda pool: pl.DataFrame({"id": [100], "label": ["spam"]}), "label(s) ['spam'] outside the classes"),
        (lambda pool: pl.DataFrame({"id": [100], "label": [None]}, schema={"id": pl.Int64, "label": pl.String}),
         "label(s) [None] outside the classes"),
        (lambda pool: pl.DataFrame({"id": ["100"], "label": ["pos"]}),
         "returned ids of type String, the pool's are Int64"),
        (lambda pool: pool.select("id"), "must return a Polars frame with columns id and label, got columns ['id']"),
        (lambda pool: pool["id"].to_list(), "must return a Polars frame with columns id and label, got list"),
        (lambda pool: 1 / 0, "failed: ZeroDivisionError"),
    ],
)
def test_misbehaving_selector_gets_an_error_naming_its_plugin(result, message):
    assert add_plugin(Misbehaving(result), "test-bad-plugin", package="test-package") == ["bad"]
    try:
        with pytest.raises(XlcError) as info:
            select("bad", POOL, {}, CONTEXT)
        assert message in str(info.value)
        assert "plugin 'test-bad-plugin', package test-package" in str(info.value)
    finally:
        remove_plugin("test-bad-plugin")
    assert "bad" not in available()


def test_a_selector_may_return_a_lazy_frame():
    assert add_plugin(Misbehaving(lambda pool: pool.lazy().head(2)), "test-lazy-plugin") == ["bad"]
    try:
        assert select("bad", POOL, {}, CONTEXT)["id"].to_list() == [100, 101]
    finally:
        remove_plugin("test-lazy-plugin")


def test_a_plugin_cannot_take_a_builtin_name():
    class Squatter:
        @hookimpl
        def xlc_register_selectors(self, register):
            register(Selector("balanced", lambda pool, options, context: pool))

    with pytest.raises(XlcError, match="'balanced' is already registered by plugin 'xlc.builtin'"):
        add_plugin(Squatter(), "squatter")
    assert available()["balanced"].plugin == "xlc.builtin"
