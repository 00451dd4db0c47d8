"""Run settings: validation, TOML round trip, flags over file."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from xlc import XlcError
from xlc.config import DEFAULTS, SelfTrainConfig, resolve


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
        ({"train": "a.csv"}, "missing --unlabeled"),
        ({"test": "t.csv"}, "missing --train, --unlabeled"),
        ({"dev": "d.csv", "unlabeled": "u.csv"}, "missing --train"),
        ({"dev_share": 0.0}, "--dev-share must be in (0, 0.5]"),
    ],
)
def test_invalid_settings_name_the_option(changes, message):
    with pytest.raises(XlcError) as info:
        SelfTrainConfig.from_mapping(changes)
    assert message in str(info.value)


def test_dev_is_optional_for_own_data():
    config = SelfTrainConfig.from_mapping({"train": "a.csv", "unlabeled": "u.csv"})
    assert config.dev is None and not config.uses_demo


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


def test_resume_reads_the_run_folders_own_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    SelfTrainConfig(out=str(tmp_path / "elsewhere"), epochs=2, seed=9).write_toml(run / "config.toml")
    config = resolve({"threads": 1}, resume=run)
    assert (config.out, config.epochs, config.seed, config.threads) == (str(run), 2, 9, 1)
    assert resolve({"out": str(run)}, resume=run).out == str(run)


def test_a_run_of_an_older_xlc_resumes_with_the_behaviour_it_began_with(tmp_path):
    from xlc import rundir
    from xlc._compat import tomllib
    from xlc.config import EARLIER

    run = tmp_path / "run"
    run.mkdir()
    older = SelfTrainConfig(out=str(run), epochs=2).to_dict()
    for name in EARLIER:  # written before the setting existed, when it was off
        older.pop(name)
    (run / "config.toml").write_text(tomli_w.dumps(older))
    config = resolve({}, resume=run)
    assert {name: getattr(config, name) for name in EARLIER} == EARLIER != {n: getattr(DEFAULTS, n) for n in EARLIER}
    assert resolve({"student_noise": 0.5}, resume=run).student_noise == 0.5  # a flag still wins
    stamp = rundir.fingerprint(config)
    found = {**stamp, "settings": {k: v for k, v in stamp["settings"].items() if k not in EARLIER}}
    assert rundir.same_run(found, stamp)
    assert not rundir.same_run(found, rundir.fingerprint(config.replace(student_noise=DEFAULTS.student_noise)))
    assert tomllib.loads((run / "config.toml").read_text()) == older  # read, never rewritten


@pytest.mark.parametrize(("settings", "config", "message"), [
    ({"out": "other"}, None, "--resume DIR takes its settings from DIR/config.toml; drop --config and --out"),
    ({}, "run.toml", "--resume DIR takes its settings from DIR/config.toml; drop --config and --out"),
])
def test_resume_refuses_another_config_or_out(tmp_path, settings, config, message):
    with pytest.raises(XlcError, match=message):
        resolve(settings, config and tmp_path / config, resume=tmp_path)


def test_resume_of_a_folder_without_a_run_is_named(tmp_path):
    with pytest.raises(XlcError, match=r"--resume .*: no config.toml there; it does not hold an xlc run"):
        resolve({}, resume=tmp_path)


def test_settings_win_over_a_config_object_or_file_and_selector_options_merge(tmp_path):
    base = SelfTrainConfig(seed=3, selector_options={"kt": 5})
    path = tmp_path / "run.toml"
    base.write_toml(path)
    for config in (base, path, str(path)):
        resolved = resolve({"epochs": 2}, config, selector_options={"n": 1})
        assert (resolved.seed, resolved.epochs, resolved.selector_options) == (3, 2, {"kt": 5, "n": 1})
    assert resolve({}) == DEFAULTS


def test_unknown_setting_names_where_it_came_from():
    with pytest.raises(XlcError, match=r"xlc.selftrain\(\): unknown setting 'epocs'"):
        resolve({"epocs": 1}, source="xlc.selftrain()")


def test_relative_paths_in_a_config_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "some" / "dir"
    (folder / "enc").mkdir(parents=True)
    (folder / "run.toml").write_text('train = "data/train.csv"\nunlabeled = "/abs/pool.csv"\ndev = "dev.csv"\n'
                                     'out = "runs/x"\nmodel = "enc"\n')
    monkeypatch.chdir(tmp_path)
    config = resolve({}, Path("some/dir/run.toml"))
    assert config.train == str(Path("some/dir/data/train.csv")) and config.dev == str(Path("some/dir/dev.csv"))
    assert config.unlabeled == "/abs/pool.csv" and config.out == str(Path("some/dir/runs/x"))
    assert config.model == str(Path("some/dir/enc"))
    (folder / "named.toml").write_text('model = "multilingual-e5-small"\n')
    assert resolve({}, folder / "named.toml").model == "multilingual-e5-small"  # a name, not a path


def test_a_written_config_holds_absolute_paths_and_reads_the_same_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = SelfTrainConfig(train="data/train.csv", unlabeled="data/pool.csv", dev="data/dev.csv", out="runs/x")
    (tmp_path / "runs").mkdir()
    config.write_toml(tmp_path / "runs" / "config.toml")
    expected = config.absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = SelfTrainConfig.from_toml(tmp_path / "runs" / "config.toml")
    assert again.train == str(tmp_path / "data" / "train.csv") and again.out == str(tmp_path / "runs" / "x")
    assert again == expected
