"""`xlc report` and the report written at the end of a run: Markdown and valid PNG plots."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import xlc
from xlc import plots, report
from xlc.cli import main

CLASSES = ["entertainment", "geography", "health", "politics", "science/technology", "sports", "travel"]


def _split(acc: float, de: float, zh: float) -> dict:
    return {"accuracy": acc, "macro_f1": acc - 0.04, "n": 60, "confusion": [[0] * 7] * 7,
            "per_lang": {"deu_Latn": {"accuracy": de, "macro_f1": de - 0.04, "n": 30},
                         "zho_Hans": {"accuracy": zh, "macro_f1": zh - 0.04, "n": 30}}}


def _health(changed: float | None, de: float, zh: float) -> dict:
    even = {c: 1 / 7 for c in CLASSES}
    return {"changed": changed, "confidence": {"all": (de + zh) / 2, "deu_Latn": de, "zho_Hans": zh},
            "class_shares": {"all": even, "deu_Latn": even, "zho_Hans": even}, "labeled_shares": even}


# report.json of a small balanced run (2 target languages, 3 rounds), as the loop writes it.
RECORDED = {
    "created": "2026-11-25T19:00:00+00:00",
    "config": {"selector": "balanced", "selector_options": {"kt": 5}, "model": "tiny", "epochs": 1},
    "classes": CLASSES,
    "rounds": [
        {"round": 0, "labeled": 80, "pool": 120, "train_loss": 1.9, "dev": _split(0.50, 0.55, 0.45),
         "test": _split(0.48, 0.52, 0.44), "selected": 30,
         "selected_per_class": dict(zip(CLASSES, [5, 0, 5, 5, 5, 5, 5], strict=True)), "pseudo_precision": 0.8,
         "health": _health(None, 0.4, 0.3),
         "timings": {"train": 1.0, "export": 2.0, "evaluate": 0.1, "score": 0.2, "select": 0.01}},
        {"round": 1, "labeled": 110, "pool": 90, "train_loss": 1.5, "dev": _split(0.60, 0.62, 0.58),
         "test": _split(0.57, 0.60, 0.54), "selected": 25,
         "selected_per_class": dict(zip(CLASSES, [5, 0, 5, 0, 5, 5, 5], strict=True)),
         "pseudo_precision": 0.72, "health": _health(0.25, 0.6, 0.5),
         "timings": {"train": 1.2, "export": 2.0, "evaluate": 0.1, "score": 0.2, "select": 0.01}},
        {"round": 2, "labeled": 135, "pool": 65, "train_loss": 1.3, "dev": _split(0.58, 0.6, 0.56),
         "test": _split(0.56, 0.58, 0.54), "selected": 0, "selected_per_class": {}, "pseudo_precision": None,
         "timings": {"train": 1.4, "export": 2.0, "evaluate": 0.1}},
    ],
    "best_round": 1,
    "stop_reason": "reached --max-rounds 2",
    "versions": {"xlc": "0.1.0"},
    "machine": {"python": "3.11"},
}
PLOTS = ("accuracy.png", "pseudo_precision.png", "pseudo_classes.png", "health.png")


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps(RECORDED))
    return run


def assert_png(path: Path, min_width: int = 400) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= 250
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something is drawn, not a blank canvas


def test_report_command_draws_the_plots_and_links_them_from_the_markdown(recorded_run):
    result = CliRunner().invoke(main, ["report", str(recorded_run)])
    assert result.exit_code == 0, result.output
    for name in PLOTS:
        assert_png(recorded_run / name)
        assert f"wrote {recorded_run / name}" in result.output
    markdown = (recorded_run / "report.md").read_text()
    assert markdown.startswith("# xlc self-training report")
    assert ("| 1 | 110 | 90 | 25 | entertainment 5 · geography 0 · health 5 · politics 0 · science/technology 5 · "
            "sports 5 · travel 5 | 0.720 | 0.600 |") in markdown
    assert "| 0 | 0.520 | 0.440 |" in markdown  # test accuracy per language
    assert "| 1 | all | 0.250 | 0.550 | 14 14 14 14 14 14 14 | 14 14 14 14 14 14 14 |" in markdown  # health
    assert "| 1 | zho_Hans |  | 0.500 | 14 14 14 14 14 14 14 |  |" in markdown
    for name in PLOTS:
        assert f"]({name})" in markdown
    as_json = CliRunner().invoke(main, ["report", "--json", str(recorded_run)])
    assert json.loads(as_json.output)["written"] == [str(recorded_run / n) for n in PLOTS] + [
        str(recorded_run / "report.md")]


def test_the_round_table_names_each_class_beside_its_count(capsys):
    from xlc.cli import print_rounds

    print_rounds(RECORDED)
    printed = capsys.readouterr().out
    # in the terminal: lines of whole "class count" pairs, at most 32 characters, never a pair split
    for line in ("entertainment 5 · geography 0", "health 5 · politics 0", "science/technology 5 · sports 5",
                 "travel 5"):
        assert f"│ {line} " in printed
    assert report.per_class({"World": 40, "Sports": 40}) == "World 40 · Sports 40"
    assert report.per_class({}) == "-"
    cell = report.per_class({"a-long-class-name-of-forty-characters-xx": 1, "b": 2, "c": 3}, width=32)
    assert cell.split("\n") == ["a-long-class-name-of-forty-characters-xx 1", "b 2 · c 3"]


def test_the_round_table_fits_an_80_column_terminal_by_leaving_out_timings_first(capsys):
    from xlc.cli import print_rounds

    print_rounds(RECORDED, width=80)
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80
    header = next(line for line in printed.splitlines() if "round" in line and "test acc" in line)
    for kept in ("per class", "dev acc", "test acc"):
        assert kept in header
    assert "score s" not in header
    assert "score s, export s, train s" in printed and "all in report.md" in printed
    print_rounds(RECORDED, width=200)
    wide = capsys.readouterr().out
    assert "score s" in wide and "left out" not in wide


def test_render_is_repeatable_and_leaves_no_temp_files(recorded_run):
    report.render(recorded_run)
    first = (recorded_run / "report.md").read_text()
    report.render(recorded_run)
    assert (recorded_run / "report.md").read_text() == first
    assert sorted(p.name for p in recorded_run.iterdir()) == sorted(["report.json", "report.md", *PLOTS])


def test_the_accuracy_series_follow_rounds_and_languages():
    series = plots.accuracy_series(RECORDED["rounds"], "test")
    assert series == {"all": [0.48, 0.57, 0.56], "deu_Latn": [0.52, 0.60, 0.58], "zho_Hans": [0.44, 0.54, 0.54]}


def test_a_run_without_gold_or_test_set_gets_only_the_plots_it_has_data_for(tmp_path):
    summary = copy.deepcopy(RECORDED)
    for r in summary["rounds"]:
        r["pseudo_precision"] = None
        r["test"] = None
        r.pop("health", None)  # as in a report of an older xlc
        del r["dev"]["per_lang"]
    paths = report.write(tmp_path, summary)
    assert [p.name for p in paths] == ["accuracy.png", "pseudo_classes.png"]
    assert_png(tmp_path / "accuracy.png", min_width=300)
    markdown = (tmp_path / "report.md").read_text()
    assert "pseudo_precision.png" not in markdown and "](accuracy.png)" in markdown


def test_a_failing_plot_never_costs_the_run_its_report(tmp_path, monkeypatch, caplog):
    def broken(out, summary):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(report, "write_plots", broken)
    assert report.write(tmp_path, copy.deepcopy(RECORDED)) == []
    assert json.loads((tmp_path / "report.json").read_text())["best_round"] == 1
    assert "## Plots" not in (tmp_path / "report.md").read_text()
    assert "report plots not written: RuntimeError: no fonts" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no report.json here"), ("{not json", "not valid JSON"), ('{"rounds": 3}', "no rounds in it")],
)
def test_report_command_explains_a_folder_that_is_not_a_run(tmp_path, content, message):
    if content is not None:
        (tmp_path / "report.json").write_text(content)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def _tampered(change) -> dict:
    summary = copy.deepcopy(RECORDED)
    change(summary)
    return summary


@pytest.mark.parametrize(
    "summary",
    [
        _tampered(lambda s: s["rounds"][1].pop("round")),
        _tampered(lambda s: s["rounds"][0].update(labeled="many", dev={"accuracy": "high"})),
        _tampered(lambda s: s.update(classes=None)),
        _tampered(lambda s: s["rounds"].append("round three")),
        _tampered(lambda s: s.pop("config")),
    ],
    ids=["round without its number", "text where numbers belong", "no classes", "a round that is text", "no config"],
)
def test_report_command_explains_a_tampered_report_and_writes_nothing(tmp_path, summary):
    (tmp_path / "report.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{tmp_path / 'report.json'}: not a report as `xlc selftrain` writes it" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_selftrain_writes_the_plots_at_the_end_of_a_run(tiny_model, small_files, tmp_path):
    run = xlc.selftrain(
        train=small_files["train"], unlabeled=small_files["unlabeled"], dev=small_files["dev"],
        test=small_files["test"], selector="balanced", selector_options={"kt": 2}, model=str(tiny_model),
        out=tmp_path / "run", epochs=1, batch_size=16, max_length=32, max_rounds=1, patience=5,
    )
    for name in PLOTS:
        assert_png(run.out / name)
    assert "![accuracy per round](accuracy.png)" in (run.out / "report.md").read_text()


def test_the_report_says_when_the_delivered_model_is_round_0():
    kept_nothing = copy.deepcopy(RECORDED) | {"best_round": 0}
    assert "best round: 0 (its model is in `best/`); round 0, trained on the labeled data only: " \
           "no self-learning round did better on dev" in report.markdown(kept_nothing)
    assert report.best_round_note(RECORDED) == ""  # round 1 was kept
    only_round_0 = copy.deepcopy(RECORDED) | {"best_round": 0, "rounds": RECORDED["rounds"][:1]}
    assert report.best_round_note(only_round_0) == ""  # no self-learning round was tried
