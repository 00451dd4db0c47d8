"""Run settings: validation, TOML round trip, flags over file."""

from __future__ import annotations

import pytest

from xlc import XlcError
from xlc.config import SelfTrainConfig


def test_defaults_run_the_demo():
    config = SelfTrainConfig()
    assert config.uses_demo
    assert config.selector == "balanced"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs must be >= 1, got 0"),
        ({"max_rounds": -1}, "--max-rounds must be >= 0"),
        ({"lr": 0.0}, "--lr must be in (0, 1)"),
        ({"train": "a.csv"}, "missing --unlabeled, --dev"),
        ({"test": "t.csv"}, "missing --train, --unlabeled, --dev"),
    ],
)
def test_invalid_settings_name_the_option(changes, message):
    with pytest.raises(XlcError) as info:
        SelfTrainConfig.from_mapping(changes)
    assert message in str(info.value)


def test_toml_round_trip_keeps_every_setting(tmp_path):
    config = SelfTrainConfig(out=str(tmp_path / "run"), selector="thresholded",
                             selector_options={"threshold": 0.8}, demo_langs=("fra_Latn",), seed=7)
    path = tmp_path / "config.toml"
    config.write_toml(path)
    assert SelfTrainConfig.from_toml(path) == config


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 5\nseed = 3\n')
    config = SelfTrainConfig.from_toml(path, {"seed": 11})
    assert (config.epochs, config.seed) == (5, 11)


def test_unknown_key_in_config_file_is_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epocs = 5\n')
    with pytest.raises(XlcError, match=r"run.toml: unknown setting 'epocs'"):
        SelfTrainConfig.from_toml(path)


def test_wrong_type_in_config_file_is_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = "five"\n')
    with pytest.raises(XlcError, match=r"setting 'epochs' must be int, got 'five'"):
        SelfTrainConfig.from_toml(path)
