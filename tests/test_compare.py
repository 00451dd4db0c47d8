"""`xlc report RUN_A RUN_B`: runs side by side, with paired bootstrap intervals on a shared test set."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc import stats
from xlc.cli import main

FAST = {"epochs": 1, "batch_size": 16, "max_length": 32, "max_rounds": 1, "patience": 5}


@pytest.fixture(scope="module")
def runs(tiny_model, module_files, tmp_path_factory):
    """Two runs on the same test set (balanced, throttling) and one without a test set."""
    folder = tmp_path_factory.mktemp("runs")
    files = {k: module_files[k] for k in ("train", "unlabeled", "dev")}
    xlc.selftrain(**files, test=module_files["test"], selector="balanced", selector_options={"kt": 2},
                  model=str(tiny_model), out=folder / "a", **FAST)
    xlc.selftrain(**files, test=module_files["test"], selector="throttling", selector_options={"n": 20},
                  model=str(tiny_model), out=folder / "b", **FAST)
    xlc.selftrain(**files, selector="balanced", selector_options={"kt": 2}, model=str(tiny_model),
                  out=folder / "c", **FAST)
    return folder


def test_paired_bootstrap_centres_on_the_mean_difference():
    diff = np.array([1.0] * 30 + [0.0] * 60 + [-1.0] * 10)
    found = stats.paired_bootstrap(diff)
    assert found["diff"] == pytest.approx(0.2) and found["items"] == 100
    assert 0.05 < found["low"] < 0.2 < found["high"] < 0.35
    assert stats.paired_bootstrap(np.zeros(50))["high"] == 0.0  # no difference: no interval


def test_comparing_runs_gives_the_difference_on_the_shared_test_set(runs):
    result = CliRunner().invoke(main, ["report", "--json", str(runs / "a"), str(runs / "b"), str(runs / "c")])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    a, b = (found["runs"][i] for i in (0, 1))
    assert [r["selector"] for r in found["runs"]] == ["balanced", "throttling", "balanced"]
    versus_b, versus_c = found["comparisons"]
    predictions = {name: pl.read_parquet(runs / name / f"round-{r['best_round']:02d}" / "test_predictions.parquet")
                   for name, r in (("a", a), ("b", b))}
    accuracy = {k: float((p["label"] == p["gold"]).mean()) for k, p in predictions.items()}
    assert accuracy["a"] == pytest.approx(a["test_accuracy"]) and accuracy["b"] == pytest.approx(b["test_accuracy"])
    assert versus_b["diff"] == pytest.approx(100 * (accuracy["b"] - accuracy["a"]))
    assert versus_b["low"] <= versus_b["diff"] <= versus_b["high"] and versus_b["items"] == 30
    assert "no per-text test predictions" in versus_c["skipped"]  # run c had no --test


def test_the_comparison_table_names_every_run(runs):
    result = CliRunner().invoke(main, ["report", str(runs / "a"), str(runs / "b")])
    assert result.exit_code == 0, result.output
    assert "paired bootstrap" in result.output and "throttling" in result.output
    assert "delivered round" in result.output
