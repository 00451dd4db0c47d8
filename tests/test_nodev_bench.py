"""benchmarks/nodev.py: the rules that choose a round without target labels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "nodev.py"


@pytest.fixture(scope="module")
def nodev():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("xlc_nodev_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    sys.path.remove(str(SCRIPT.parent))


GOLD = np.array([0, 1, 1, 0])
ROUNDS = [  # test accuracy by round: 0.5, 1.0, 0.75, 0.25
    {"test_pred": [0, 0, 1, 1], "endev_accuracy": 0.9, "dev_accuracy": 0.6, "changed": None},
    {"test_pred": [0, 1, 1, 0], "endev_accuracy": 0.8, "dev_accuracy": 0.7, "changed": 0.20},
    {"test_pred": [0, 1, 1, 1], "endev_accuracy": 0.9, "dev_accuracy": 0.8, "changed": 0.02},
    {"test_pred": [1, 0, 1, 1], "endev_accuracy": 0.7, "dev_accuracy": 0.5, "changed": 0.01},
]


@pytest.mark.parametrize(("rule", "expected"), [
    ("round0", 0), ("fixed-1", 1), ("fixed-3", 3), ("english-dev", 0), ("target-dev", 2), ("oracle", 1),
    ("stable", 2),
])
def test_each_rule_picks_its_round(nodev, rule, expected):
    assert nodev.choose(rule, ROUNDS, GOLD, stable=0.03) == expected


def test_the_rules_include_one_fixed_rule_per_round(nodev):
    assert nodev.rules(2) == ["round0", "fixed-1", "fixed-2", "english-dev", "stable", "target-dev", "oracle"]


def test_bbse_recovers_the_pool_class_shares_under_label_shift(nodev):
    rng = np.random.default_rng(0)

    def predicted(y):  # a classifier biased to class 0: right on 95% of class 0, 70% of class 1
        flip = rng.random(len(y)) < np.where(y == 0, 0.05, 0.3)
        return np.eye(2)[np.where(flip, 1 - y, y)]

    dev_y = rng.integers(0, 2, 4000)  # held-out labeled data, about half and half
    pool_y = (rng.random(20000) < 0.69).astype(int)  # the pool: 31% class 0
    shares = nodev.bbse_shares(predicted(dev_y), dev_y, predicted(pool_y))
    naive = np.bincount(predicted(pool_y).argmax(1)) / len(pool_y)
    assert abs(shares[0] - 0.31) < 0.02
    assert naive[0] > 0.45  # the predicted shares alone carry its bias


def test_by_shares_takes_the_most_confident_texts_per_class_in_proportion(nodev):
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.2, 0.8], [0.45, 0.55]])
    remaining = np.array([True, True, False, True, True, True, True])
    chosen = nodev.by_shares(probs, remaining, total=4, shares=np.array([0.25, 0.75]))
    assert chosen.tolist() == [0, 3, 4, 5]  # class 0: text 0 (text 2 is no longer in the pool); class 1: top 3


def test_merge_refuses_runs_of_other_settings(nodev, tmp_path):
    import argparse
    import json

    paths = []
    for i, epochs in enumerate(("5", "4")):
        paths.append(tmp_path / f"run{i}.json")
        settings = {"epochs": epochs, "rounds": "3", "pool": "800", "dev_share": "0.1", "stable": "0.03"}
        paths[-1].write_text(json.dumps({"settings": settings, "datasets": {}}))
    with pytest.raises(SystemExit, match="differ in epochs"):
        nodev.merge(paths, argparse.Namespace())


def test_merge_never_overwrites_a_file_it_merges(nodev, tmp_path):
    import argparse
    import json

    settings = {"epochs": "5", "rounds": "3", "pool": "800", "dev_share": "0.1", "stable": "0.03"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"settings": settings, "datasets": {}}))
    with pytest.raises(SystemExit, match="would overwrite"):
        nodev.merge([path], argparse.Namespace(out=tmp_path / "run"))
    assert json.loads(path.read_text())["settings"] == settings


def test_the_default_is_the_noisy_student_at_xlcs_noise_else_balanced_each_averaged_where_run(nodev):
    from xlc.config import DEFAULTS

    noise = DEFAULTS.student_noise
    every = {"balanced", "noisy", "control", "balanced-avg", "noisy-avg", "control-avg"}
    assert nodev.default_methods(every, noise) == ("noisy-avg", "control-avg")
    assert nodev.default_methods(every, noise / 2) == ("balanced-avg", "control-avg")  # not xlc's default
    assert nodev.default_methods({"balanced", "noisy", "control"}, noise) == ("noisy", "control")
    assert nodev.default_methods({"balanced", "control", "balanced-avg", "control-avg"}, noise) == (
        "balanced-avg", "control-avg")


def test_merge_refuses_noisy_runs_of_another_noise(nodev, tmp_path):
    import argparse
    import json

    settings = {"epochs": "5", "rounds": "3", "pool": "800", "dev_share": "0.1", "stable": "0.03"}
    paths = []
    for noise in ("0.3", "0.5"):
        paths.append(tmp_path / f"noise-{noise}.json")
        paths[-1].write_text(json.dumps({"settings": settings | {"noise": noise},
                                         "datasets": {"tweets": {"methods": {"noisy": {}}}}}))
    with pytest.raises(SystemExit, match=r"the noisy runs differ in --noise \(0.3, 0.5\)"):
        nodev.merge(paths, argparse.Namespace(out=tmp_path / "merged"))
