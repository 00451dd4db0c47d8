"""The `prior` and `margin` selectors, run through xlc's plugin manager as `xlc selftrain` runs them."""

from __future__ import annotations

from importlib.metadata import version

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from xlc_classprior import bbse_shares, class_counts, quotas

from xlc import SelectionContext, XlcError
from xlc.selectors import available, resolve_options, select

CLASSES = ("business", "health", "sports")


def scored_pool(rows: list[tuple[str, list[float]]]) -> pl.DataFrame:
    """Pool rows from (predicted label, class probabilities); ids start at 100."""
    n = len(rows)
    return pl.DataFrame({
        "id": list(range(100, 100 + n)),
        "text": [f"text {i}" for i in range(n)],
        "lang": ["de"] * n,
        "label": [label for label, _ in rows],
        "confidence": pl.Series([max(p) for _, p in rows], dtype=pl.Float32),
        "probs": pl.Series([p for _, p in rows], dtype=pl.Array(pl.Float32, len(CLASSES))),
    })


def confident(label: str, conf: float) -> tuple[str, list[float]]:
    rest = (1 - conf) / 2
    return label, [conf if c == label else rest for c in CLASSES]


# 6 business, 3 health, 4 sports predictions; confidence falls with the id within each class.
POOL = scored_pool(
    [confident("business", 0.99 - i / 100) for i in range(6)]
    + [confident("health", 0.89 - i / 100) for i in range(3)]
    + [confident("sports", 0.79 - i / 100) for i in range(4)]
)
UNBALANCED = SelectionContext(CLASSES, {"business": 60, "health": 10, "sports": 30}, 0)


def per_class(frame: pl.DataFrame) -> dict[str, int]:
    counts = dict(frame["label"].value_counts().iter_rows())
    return {c: counts.get(c, 0) for c in CLASSES}


def test_the_plugin_is_found_through_its_installed_entry_point():
    found = available()
    for name in ("prior", "margin"):
        assert found[name].plugin == "classprior"
        assert (found[name].package, found[name].version) == ("xlc-classprior", version("xlc-classprior"))


@pytest.mark.parametrize(
    ("total", "counts", "expected"),
    [
        (10, {"a": 6, "b": 1, "c": 3}, {"a": 6, "b": 1, "c": 3}),
        (7, {"a": 1, "b": 1, "c": 1}, {"a": 3, "b": 2, "c": 2}),  # equal remainders: first class
        (5, {"a": 6, "b": 1, "c": 3}, {"a": 3, "b": 1, "c": 1}),  # b and c tie at .5: b is first
        (4, {"a": 0, "b": 1, "c": 1}, {"a": 0, "b": 2, "c": 2}),
        (5, {"a": 0, "b": 0, "c": 0}, {"a": 2, "b": 2, "c": 1}),  # no counts: even split
        (3, {"b": 2}, {"a": 0, "b": 3, "c": 0}),  # missing classes count 0
    ],
)
def test_quotas_follow_the_counts_by_largest_remainder(total, counts, expected):
    assert quotas(total, counts, "abc") == expected


@given(
    total=st.integers(0, 10_000),
    counts=st.lists(st.integers(0, 10**6), min_size=1, max_size=12),
)
def test_quotas_sum_exactly_to_the_total_and_stay_within_one_of_the_exact_share(total, counts):
    classes = [f"c{i}" for i in range(len(counts))]
    share = quotas(total, dict(zip(classes, counts, strict=True)), classes)
    assert sum(share.values()) == total
    mass = sum(counts) or len(counts)
    for c, count in zip(classes, counts if sum(counts) else [1] * len(counts), strict=True):
        exact = total * count / mass
        assert exact - 1 < share[c] < exact + 1
        if count == 0:
            assert share[c] == 0


def test_prior_splits_n_in_proportion_to_the_labeled_classes():
    taken = select("prior", POOL, {"n": 10}, UNBALANCED)
    assert taken.height == 10
    assert per_class(taken) == {"business": 6, "health": 1, "sports": 3}


def test_prior_takes_the_most_confident_texts_of_each_class():
    # shares of 5 for 60/10/30: 3.0, 0.5, 1.5; the fifth text goes to health, first of the .5 tie
    taken = select("prior", POOL, {"n": 5}, UNBALANCED)
    assert per_class(taken) == {"business": 3, "health": 1, "sports": 1}
    assert sorted(taken["id"]) == [100, 101, 102, 106, 109]
    assert taken["confidence"].to_list() == sorted(taken["confidence"].to_list(), reverse=True)


def test_prior_does_not_move_a_short_class_quota_to_other_classes():
    """health has 3 candidates for a quota of 5; the 2 missing are not taken from business."""
    context = SelectionContext(CLASSES, {"business": 1, "health": 1, "sports": 0}, 0)
    taken = select("prior", POOL, {"n": 10}, context)
    assert per_class(taken) == {"business": 5, "health": 3, "sports": 0}


def test_prior_without_n_takes_kt_times_the_number_of_classes():
    context = SelectionContext(CLASSES, {"business": 1, "health": 1, "sports": 1}, 0)
    taken = select("prior", POOL, {"kt": 2}, context)
    assert per_class(taken) == {"business": 2, "health": 2, "sports": 2}


def test_prior_skips_texts_below_min_confidence():
    taken = select("prior", POOL, {"n": 10, "min_confidence": 0.85}, UNBALANCED)
    assert per_class(taken) == {"business": 6, "health": 1, "sports": 0}
    assert taken["confidence"].min() >= 0.85


def test_prior_breaks_confidence_ties_by_id_whatever_the_row_order():
    tied = scored_pool([confident("sports", 0.8)] * 6)
    context = SelectionContext(CLASSES, {"business": 1, "health": 1, "sports": 1}, 0)
    first = select("prior", tied, {"n": 6}, context)["id"].to_list()
    assert first == select("prior", tied.reverse(), {"n": 6}, context)["id"].to_list() == [100, 101]


def test_prior_on_an_empty_pool_takes_nothing():
    assert select("prior", POOL.clear(), {"n": 5}, UNBALANCED).height == 0


def shifted_pool(langs: list[str]) -> pl.DataFrame:
    """Two kinds of text, likelihoods 0.8/0.2 for business/health and the reverse, 38 and 62 of
    each per language: what a pool whose true prior is 30/70 gives a model trained at 50/50."""
    rows = [("business", [0.8, 0.2, 0.0])] * 38 + [("health", [0.2, 0.8, 0.0])] * 62
    frames = [scored_pool(rows).with_columns(pl.lit(lang).alias("lang")) for lang in langs]
    return pl.concat(frames).with_columns(pl.int_range(pl.len()).alias("id"))


def test_pool_proportions_are_the_mean_predicted_probabilities():
    pool = shifted_pool(["de"])  # mean probabilities 0.428 / 0.572 / 0
    assert class_counts(pool, {"proportions": "pool"}, UNBALANCED) == {"business": 428_000, "health": 572_000,
                                                                     "sports": 0}
    assert class_counts(pool, {"proportions": "labeled"}, UNBALANCED) == UNBALANCED.labeled_counts
    assert class_counts(pool.clear(), {"proportions": "pool"}, UNBALANCED) == dict.fromkeys(CLASSES, 0)


def test_prior_with_pool_proportions_splits_the_total_by_the_pool_not_the_labeled_set():
    context = SelectionContext(CLASSES, {"business": 50, "health": 50, "sports": 1}, 0)
    pool = shifted_pool(["de"])
    assert per_class(select("prior", pool, {"n": 20}, context)) == {"business": 10, "health": 10, "sports": 0}
    taken = select("prior", pool, {"n": 20, "proportions": "pool"}, context)
    assert per_class(taken) == {"business": 9, "health": 11, "sports": 0}  # 8.56 / 11.44 / 0


def test_pool_proportions_of_an_unsure_model_still_take_texts():
    """Near-uniform probabilities, every text predicted business: the quotas stay spread out,
    so business still gets its share rather than nothing."""
    unsure = scored_pool([("business", [0.34, 0.33, 0.33])] * 30)
    taken = select("prior", unsure, {"n": 9, "proportions": "pool"}, UNBALANCED)
    assert per_class(taken) == {"business": 3, "health": 0, "sports": 0}


def test_prior_per_lang_splits_the_total_across_languages_by_pool_size():
    pool = pl.concat([shifted_pool(["de", "fr"]), shifted_pool(["de"]).with_columns(pl.col("id") + 1000)])
    context = SelectionContext(CLASSES, {"business": 1, "health": 1, "sports": 0}, 0)
    taken = select("prior", pool, {"n": 30, "per_lang": True}, context)
    assert dict(taken["lang"].value_counts().sort("lang").iter_rows()) == {"de": 20, "fr": 10}
    assert per_class(taken.filter(pl.col("lang") == "de")) == {"business": 10, "health": 10, "sports": 0}
    assert per_class(taken.filter(pl.col("lang") == "fr")) == {"business": 5, "health": 5, "sports": 0}


def test_margin_ranks_by_top1_minus_top2_not_by_confidence():
    pool = scored_pool([
        ("business", [0.50, 0.49, 0.01]),  # confident-looking 0.50 but margin 0.01
        ("business", [0.45, 0.10, 0.45 - 1e-3]),  # margin ~0.001
        ("business", [0.40, 0.30, 0.30]),  # lower confidence, margin 0.10
        ("health", [0.20, 0.60, 0.20]),
    ])
    taken = select("margin", pool, {"kt": 1}, UNBALANCED)
    assert dict(zip(taken["label"], taken["id"], strict=True)) == {"business": 102, "health": 103}


def test_margin_takes_kt_per_class_and_respects_min_margin():
    taken = select("margin", POOL, {"kt": 2, "min_margin": 0.7}, UNBALANCED)
    # margin = (3c - 1) / 2: >= 0.7 needs confidence >= 0.8
    assert per_class(taken) == {"business": 2, "health": 2, "sports": 0}
    assert set(taken["id"]) == {100, 101, 106, 107}


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("prior", {"n": -1}, "option n must be >= 0, got -1"),
        ("prior", {"kt": 0}, "option kt must be >= 1, got 0"),
        ("prior", {"min_confidence": 1.5}, "option min_confidence must be in [0, 1], got 1.5"),
        ("prior", {"proportions": "gold"}, "option proportions must be labeled, pool or bbse, got 'gold'"),
        ("margin", {"min_margin": "wide"}, "option min_margin must be float, got 'wide'"),
        ("margin", {"n": 3}, "selector 'margin' has no option 'n' (its options: kt, min_margin)"),
    ],
)
def test_bad_options_are_rejected_by_name(name, options, message):
    with pytest.raises(XlcError) as info:
        resolve_options(name, options)
    assert message in str(info.value)


def test_options_have_the_documented_defaults():
    assert resolve_options("prior", {}) == {"kt": 40, "n": 0, "min_confidence": 0.0, "proportions": "labeled",
                                            "per_lang": False}
    assert resolve_options("margin", {"kt": "5"}) == {"kt": 5, "min_margin": 0.0}


def test_prior_per_lang_puts_texts_without_a_language_in_a_group_of_their_own():
    pool = shifted_pool(["de", "fr"]).with_columns(
        pl.when(pl.col("lang") == "fr").then(None).otherwise(pl.col("lang")).alias("lang"))
    context = SelectionContext(CLASSES, {"business": 1, "health": 1, "sports": 0}, 0)
    taken = select("prior", pool, {"n": 20, "per_lang": True}, context)
    assert taken["lang"].null_count() == 10 and (taken["lang"] == "de").sum() == 10


# Label shift: a model right on 95% of business texts and 70% of health texts (never sports), its
# dev set 200/200, a pool that is 31% business. Counted exactly, the pool's predicted business share
# is (0.31 * 0.95 + 0.69 * 0.30) = 0.5015: the errors on the larger class inflate the smaller one.
DEV_CONFUSION = ((190, 10, 0), (60, 140, 0), (0, 0, 0))  # rows gold, columns predicted
SHIFTED = SelectionContext(CLASSES, {"business": 50, "health": 50, "sports": 1}, 0, DEV_CONFUSION)


def label_shifted_pool(size: int = 2000, business: float = 0.31) -> pl.DataFrame:
    """`size` texts, a `business` share of them business, predicted by the model of DEV_CONFUSION:
    exactly 95% of business and 30% of health predicted business, the rest health."""
    n_business = round(size * business)
    n_health = size - n_business
    as_business = round(0.95 * n_business) + round(0.30 * n_health)
    rows = [("business", [0.8, 0.2, 0.0])] * as_business + [("health", [0.2, 0.8, 0.0])] * (size - as_business)
    return scored_pool(rows)


def test_bbse_recovers_the_pool_class_shares_that_the_predictions_overstate():
    pool = label_shifted_pool()
    predicted = per_class(pool)
    assert predicted["business"] / pool.height > 0.45
    shares = bbse_shares(DEV_CONFUSION, [predicted[c] for c in CLASSES])
    assert shares[0] == pytest.approx(0.31, abs=0.02)
    assert shares[1] == pytest.approx(0.69, abs=0.02) and shares[2] == 0  # sports: no dev texts, no share
    assert class_counts(pool, {"proportions": "bbse"}, SHIFTED) == {"business": 310_000, "health": 690_000,
                                                                   "sports": 0}


def test_bbse_without_a_shift_keeps_the_dev_shares_and_falls_back_to_even_without_data():
    assert bbse_shares([[190, 10], [60, 140]], [250, 150]) == pytest.approx([0.5, 0.5])
    assert bbse_shares([[190, 10], [60, 140]], [0, 0]).tolist() == [0.5, 0.5]  # an empty pool
    assert bbse_shares([[0, 0], [0, 0]], [5, 3]).tolist() == [0.5, 0.5]  # no dev texts


def test_prior_with_bbse_splits_the_total_by_the_estimate_not_by_the_predictions():
    pool = label_shifted_pool()
    assert per_class(select("prior", pool, {"n": 100, "proportions": "pool"}, SHIFTED)) == {
        "business": 50, "health": 50, "sports": 0}  # mean probabilities 0.5009 / 0.4991
    assert per_class(select("prior", pool, {"n": 100, "proportions": "bbse"}, SHIFTED)) == {
        "business": 31, "health": 69, "sports": 0}


def test_prior_with_bbse_per_lang_estimates_each_languages_shares():
    pool = pl.concat([label_shifted_pool(1000, 0.31).with_columns(pl.lit("zh").alias("lang")),
                      label_shifted_pool(1000, 0.5).with_columns(pl.lit("de").alias("lang"))])
    pool = pool.with_columns(pl.int_range(pl.len()).alias("id"))
    taken = select("prior", pool, {"n": 200, "proportions": "bbse", "per_lang": True}, SHIFTED)
    assert per_class(taken.filter(pl.col("lang") == "zh")) == {"business": 31, "health": 69, "sports": 0}
    assert per_class(taken.filter(pl.col("lang") == "de")) == {"business": 50, "health": 50, "sports": 0}


def test_prior_with_bbse_but_no_dev_confusion_says_what_it_needs():
    with pytest.raises(XlcError) as info:
        select("prior", label_shifted_pool(), {"proportions": "bbse"}, UNBALANCED)
    assert "proportions=bbse needs the round's dev predictions" in str(info.value)
    assert "proportions=pool" in str(info.value)
