"""`xlc selftrain`'s options are made from `SelfTrainConfig`: names, types, help and defaults written once."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import xlc.loop
from xlc import XlcError
from xlc.cli import main, selftrain
from xlc.config import DEFAULTS, ENGINES, TARGETS, SelfTrainConfig, cli_fields

CONTEXT = click.Context(selftrain)


def param(name: str) -> click.Option:
    return next(p for p in selftrain.params if isinstance(p, click.Option) and p.name == name)


def help_of(name: str) -> str:
    record = param(name).get_help_record(CONTEXT)
    assert record is not None
    return record[1]


def shown_default(name: str) -> str | None:
    text = help_of(name)
    return text.split("[default: ")[1].rstrip("]") if "[default: " in text else None


def help_page() -> str:
    result = CliRunner().invoke(main, ["selftrain", "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_every_setting_but_selector_options_is_an_option_under_its_flag():
    names = {f.name for f in cli_fields()}
    assert names == {f.name for f in SelfTrainConfig.__dataclass_fields__.values()} - {"selector_options"}
    page = help_page()
    for name in names:
        assert param(name).opts == ["--" + name.replace("_", "-")]
        assert "--" + name.replace("_", "-") in page


@pytest.mark.parametrize("option", cli_fields(), ids=lambda f: f.name)
def test_help_shows_the_real_default_of_every_setting(option):
    default, shown = getattr(DEFAULTS, option.name), shown_default(option.name)
    if isinstance(default, bool):
        on, off = param(option.name).opts[0], param(option.name).secondary_opts[0]
        assert "--" + shown == (on if default else off)
    elif isinstance(default, tuple):
        assert tuple(shown.split(",")) == default
    elif default is None:
        assert shown == option.metadata["cli"]["none"]  # what None means, in words, or nothing
    else:
        assert type(default)(shown) == default
    if shown is not None:
        assert f"[default: {shown}]" in help_page()


@pytest.mark.parametrize(("name", "text"), [
    ("out", "Output folder for the run (re-running on an unfinished run resumes it).  [default: runs/xlc]"),
    ("lr", "Encoder learning rate (3e-5 suits base-size encoders).  [default: 2e-4]"),
    ("head_lr", "Classification head learning rate.  [default: 1e-3]"),
    ("warmup", "Share of steps for linear warm-up.  [default: 0.1]"),
    ("id_column", "Pool column with unique ids.  [default: row number]"),
    ("demo_langs", "Demo only: comma-separated target languages.  [default: deu_Latn,zho_Hans]"),
    ("workers", "--engine ray: actors.  [default: cluster CPUs / 2]"),
    ("max_steps", "Optimiser steps per round, overriding --epochs (e.g. the same-compute control)."),
    ("kt", "balanced: texts per class per round.  [default: 40]"),
    ("n", "throttling: texts per round (selector pool: a sample of at most n texts, default all).  [default: 280]"),
    ("threshold", "thresholded: minimum confidence.  [default: 0.9]"),
    ("selector_config", "TOML file of selector options (key = value); the option flags override it."),
])
def test_help_text_of_options_is_unchanged(name, text):
    assert help_of(name) == text


def test_choices_are_the_configs_own():
    assert tuple(param("engine").type.choices) == ENGINES
    assert tuple(param("targets").type.choices) == TARGETS


def test_flag_pairs_and_selector_shortcuts_keep_their_names():
    pairs = {name: (param(name).opts, param(name).secondary_opts)
             for name in ("select_epoch", "warm_start", "freeze_embeddings")}
    assert pairs == {"select_epoch": (["--select-epoch"], ["--fixed-epochs"]),
                     "warm_start": (["--warm-start"], ["--from-base"]),
                     "freeze_embeddings": (["--freeze-embeddings"], ["--train-embeddings"])}
    assert [param(n).opts for n in ("kt", "n", "threshold")] == [["--kt"], ["--n"], ["--threshold"]]
    assert (param("kt").type, param("threshold").type) == (click.INT, click.FLOAT)


@pytest.fixture()
def parsed(monkeypatch, tmp_path):
    """Run `xlc selftrain ARGS` up to the loop and return the config it would have run."""
    seen: list[SelfTrainConfig] = []

    def fake_run(config, progress=None):
        seen.append(config)
        raise XlcError("stopped by the test")

    monkeypatch.setattr(xlc.loop, "run", fake_run)

    def parse(*args: str) -> SelfTrainConfig:
        result = CliRunner().invoke(main, ["selftrain", "--quiet", "--out", str(tmp_path / "run"), *args])
        assert "stopped by the test" in result.output, result.output
        return seen[-1]

    return parse


def test_options_not_given_keep_the_defaults(parsed, tmp_path):
    assert parsed() == DEFAULTS.replace(out=str(tmp_path / "run"))


def test_flags_reach_the_config_as_typed_values(parsed):
    config = parsed("--fixed-epochs", "--from-base", "--train-embeddings", "--lr", "3e-5", "--epochs", "2",
                    "--targets", "soft", "--demo-langs", "fra_Latn, deu_Latn", "--kt", "7", "--selector-opt",
                    "kt=9", "--threads", "1")
    assert (config.select_epoch, config.warm_start, config.freeze_embeddings) == (False, False, False)
    assert (config.lr, config.epochs, config.targets, config.threads) == (3e-5, 2, "soft", 1)
    assert config.demo_langs == ("fra_Latn", "deu_Latn")
    assert config.selector_options == {"kt": "9"}  # --selector-opt wins over the shortcut


def test_flags_win_over_the_config_file_and_selector_options_merge(parsed, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 3\nseed = 4\nselector = "thresholded"\n[selector_options]\nthreshold = 0.7\n')
    config = parsed("--config", str(path), "--seed", "5", "--kt", "3")
    assert (config.epochs, config.seed, config.selector) == (3, 5, "thresholded")
    assert config.selector_options == {"threshold": 0.7, "kt": 3}


def test_top_level_help_lists_every_environment_variable_xlc_reads():
    source = "".join(path.read_text() for path in Path(xlc.__file__).parent.rglob("*.py"))
    read = set(re.findall(r"XLC_[A-Z_]+", source)) - {"XLC_CRASH_AT"}  # the crash hook is for tests only
    shown = CliRunner().invoke(main, ["--help"]).output
    assert {"XLC_DEVICE", "XLC_CACHE", "XLC_PLUGINS"} <= read
    assert [name for name in sorted(read) if name not in shown] == []


def test_tables_take_the_terminal_width_and_keep_whole_rows_when_piped(monkeypatch):
    import io
    import sys

    from xlc.cli import stdout_console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert stdout_console().width == 80
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert stdout_console().width == 200
