"""Label-free health signals of a round's scored pool."""

from __future__ import annotations

import polars as pl
import pytest

from xlc import health

CLASSES = ("neg", "pos")


def scored(labels: dict[int, str], confidence: float = 0.8) -> pl.DataFrame:
    ids = sorted(labels)
    return pl.DataFrame({"id": ids, "lang": ["de" if i % 2 else "zh" for i in ids],
                         "label": [labels[i] for i in ids], "confidence": [confidence] * len(ids)})


def test_changed_counts_only_texts_scored_in_both_rounds():
    before = scored({0: "neg", 1: "neg", 2: "pos", 3: "pos"})
    after = scored({1: "pos", 2: "pos", 3: "pos", 9: "neg"})  # 0 was taken into L, 9 is new
    assert health.changed(before, after) == pytest.approx(1 / 3)
    assert health.changed(before, scored({7: "neg"})) is None


def test_signals_give_shares_and_confidence_overall_and_per_language():
    now = scored({0: "neg", 1: "pos", 2: "neg", 3: "pos", 4: "neg"}, confidence=0.9)
    found = health.signals(now, None, pl.Series(["pos", "pos", "pos", "neg"]), CLASSES)
    assert found["changed"] is None  # round 0: nothing to compare with
    assert found["confidence"] == pytest.approx({"all": 0.9, "de": 0.9, "zh": 0.9})
    assert found["class_shares"] == {"all": {"neg": 0.6, "pos": 0.4}, "de": {"neg": 0.0, "pos": 1.0},
                                     "zh": {"neg": 1.0, "pos": 0.0}}
    assert found["labeled_shares"] == {"neg": 0.25, "pos": 0.75}
