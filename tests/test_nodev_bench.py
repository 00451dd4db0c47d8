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
