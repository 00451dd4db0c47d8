"""Why a run stops: a code for programs (RunResult, report.json, metrics.json) beside the sentence for people."""

from __future__ import annotations

import json

import polars as pl
import pytest

import xlc
from xlc.config import SelfTrainConfig
from xlc.loop import STOP_CODES, RunState, _stop_before_selection


def state(pool_size: int) -> RunState:
    return RunState(pl.DataFrame({"text": ["a"], "label": ["x"]}),
                    pl.DataFrame({"id": list(range(pool_size)), "text": ["t"] * pool_size}))


def test_patience_stops_the_run_once_dev_accuracy_has_not_improved_for_that_many_rounds():
    config, run = SelfTrainConfig(patience=2, max_rounds=9), state(5)
    for rnd, accuracy in enumerate([0.5, 0.6, 0.6]):
        run.observe(rnd, accuracy)
        assert _stop_before_selection(config, run, rnd) is None
    run.observe(3, 0.55)
    stop = _stop_before_selection(config, run, 3)
    assert stop is not None
    assert (stop.code, stop.reason) == ("patience", "dev accuracy did not improve for 2 round(s) (patience 2)")


def test_spent_patience_comes_before_max_rounds_and_max_rounds_before_an_empty_pool():
    run = state(0)
    run.observe(0, 0.5)
    run.observe(1, 0.4)
    assert _stop_before_selection(SelfTrainConfig(patience=1, max_rounds=1), run, 1).code == "patience"
    assert _stop_before_selection(SelfTrainConfig(patience=5, max_rounds=1), run, 1).code == "max_rounds"
    assert _stop_before_selection(SelfTrainConfig(patience=5, max_rounds=3), run, 1).code == "pool_empty"
    assert {"patience", "max_rounds", "pool_empty", "nothing_selected"} == set(STOP_CODES)


@pytest.mark.parametrize(("selector", "options", "code", "reason", "rounds"), [
    ("pool", {}, "pool_empty", "the unlabeled pool is empty", 2),  # round 0 takes the whole pool
    ("thresholded", {"threshold": 1.0}, "nothing_selected", "selector 'thresholded' took no texts", 1),
])
def test_a_run_records_why_it_stopped_as_a_code_and_a_sentence(tiny_model, small_files, tmp_path, selector,
                                                               options, code, reason, rounds):
    run = xlc.selftrain(train=small_files["train"], unlabeled=small_files["unlabeled"], dev=small_files["dev"],
                        selector=selector, selector_options=options, model=str(tiny_model), out=tmp_path / "run",
                        epochs=1, batch_size=16, max_length=32, max_rounds=3, patience=5)
    assert (run.stop_code, run.stop_reason) == (code, reason)
    report = json.loads((run.out / "report.json").read_text())
    assert (report["stop_code"], report["stop_reason"]) == (code, reason)
    assert [r["stop_code"] for r in report["rounds"]] == [""] * (rounds - 1) + [code]
    last = json.loads((run.out / f"round-{rounds - 1:02d}" / "metrics.json").read_text())
    assert (last["stop_code"], last["stop_reason"]) == (code, reason)
