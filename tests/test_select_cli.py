"""`xlc select`: a selector replayed on a real run's saved scored pool (tiny encoder, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from xlc import selectors
from xlc.cli import main
from xlc.selectors import SelectionContext


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def run(tiny_model, module_files, tmp_path_factory) -> Path:
    """A finished run of three rounds (throttling, n=7): round-00 and round-01 keep a scored pool."""
    out = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out),
        "--train", str(module_files["train"]), "--unlabeled", str(module_files["unlabeled"]),
        "--dev", str(module_files["dev"]), "--epochs", "1", "--batch-size", "16", "--max-length", "32",
        "--selector", "throttling", "--n", "7", "--max-rounds", "2", "--patience", "5",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def select_json(*args: str) -> dict:
    result = run_cli("select", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def expected_context(run: Path, files: dict[str, Path], rnd: int) -> SelectionContext:
    """The loop's context for round `rnd`, counted here by hand: gold train labels + earlier pseudo-labels."""
    classes = tuple(sorted(pl.read_parquet(files["train"])["label"].unique()))
    labels = pl.concat([pl.read_parquet(files["train"])["label"],
                        *(pl.read_parquet(run / f"round-{r:02d}" / "selected.parquet")["label"] for r in range(rnd))])
    counts = dict(labels.value_counts().iter_rows())
    return SelectionContext(classes, counts, rnd)


def scored(run: Path, rnd: int) -> Path:
    return run / f"round-{rnd:02d}" / "scored.parquet"


def test_counts_per_class_and_language_match_a_direct_select_call(run, module_files):
    result = select_json("--scored", str(scored(run, 1)), "--selector", "balanced", "--kt", "2")
    context = expected_context(run, module_files, 1)
    direct = selectors.select("balanced", pl.read_parquet(scored(run, 1)), {"kt": 2}, context)
    assert result["round"] == 1 and result["options"] == {"kt": 2}
    assert result["labeled_counts"] == {c: context.labeled_counts[c] for c in context.classes}
    assert sum(result["labeled_counts"].values()) == json.loads((run / "round-01/metrics.json").read_text())["labeled"]
    assert result["taken"] == direct.height and result["pool"] == 60 - 7
    counts = dict(direct["label"].value_counts().iter_rows())
    assert {c: v["taken"] for c, v in result["per_class"].items()} == {c: counts.get(c, 0) for c in context.classes}
    assert result["langs"] == ["deu_Latn"]
    assert all(v["per_lang"] == {"deu_Latn": v["taken"]} for v in result["per_class"].values())
    for c, facts in result["per_class"].items():
        conf = direct.filter(pl.col("label") == c)["confidence"]
        if conf.len():
            assert facts["confidence"] == pytest.approx(
                {"min": conf.min(), "median": conf.median(), "max": conf.max()}, abs=1e-4)


@pytest.mark.parametrize("rnd", [0, 1])
def test_the_runs_own_selector_replayed_takes_exactly_what_the_run_took(run, rnd):
    result = select_json("--scored", str(scored(run, rnd)), "--selector", "throttling", "--n", "7")
    assert result["run_selection"] == {"selector": "throttling", "options": {"n": 7}, "taken": 7, "overlap": 7}
    assert result["taken"] == 7


def test_a_plugin_selector_replays_with_its_own_options(run, module_files):
    assert "prior" in selectors.available()
    result = select_json("--scored", str(scored(run, 1)), "--selector", "prior", "--n", "12",
                         "--selector-opt", "min_confidence=0")
    context = expected_context(run, module_files, 1)
    direct = selectors.select("prior", pl.read_parquet(scored(run, 1)), {"n": 12}, context)
    assert result["options"]["n"] == 12 and result["taken"] == direct.height
    counts = dict(direct["label"].value_counts().iter_rows())
    assert {c: v["taken"] for c, v in result["per_class"].items()} == {c: counts.get(c, 0) for c in context.classes}


def test_gold_gives_pseudo_label_precision_per_class_language_and_overall(run, tmp_path):
    out = tmp_path / "chosen.parquet"
    first = select_json("--scored", str(scored(run, 0)), "--selector", "throttling", "--n", "4", "--out", str(out))
    chosen = pl.read_parquet(out)
    wrong_id = chosen["id"][0]
    wrong_class = chosen["label"][0]
    classes = first["classes"]
    other = next(c for c in classes if c != wrong_class)
    # one gold row per pool row, in order (the run had no --id-column): right for 3 taken texts, wrong for 1
    truth = dict(zip(chosen["id"].to_list(), chosen["label"].to_list(), strict=True))
    truth[wrong_id] = other
    gold = tmp_path / "gold.csv"
    pl.DataFrame({"label": [truth.get(i, classes[0]) for i in range(60)]}).write_csv(gold)
    result = select_json("--scored", str(scored(run, 0)), "--selector", "throttling", "--n", "4", "--gold", str(gold))
    assert result["precision"] == 0.75 and result["per_lang"]["deu_Latn"]["precision"] == 0.75
    taken = result["per_class"][wrong_class]["taken"]
    assert result["per_class"][wrong_class]["precision"] == round((taken - 1) / taken, 4)
    for c, facts in result["per_class"].items():
        if c != wrong_class:
            assert facts["precision"] == (1.0 if facts["taken"] else None)


def test_the_pool_file_as_gold_gives_the_precision_the_run_recorded(run, module_files):
    result = select_json("--scored", str(scored(run, 0)), "--selector", "throttling", "--n", "7",
                         "--gold", str(module_files["unlabeled"]))
    recorded = json.loads((run / "round-00/metrics.json").read_text())["pseudo_precision"]
    assert result["precision"] == pytest.approx(recorded, abs=1e-4)


def test_text_output_shows_the_class_by_language_table_and_the_total(run, module_files):
    result = run_cli("select", "--scored", str(scored(run, 1)), "--selector", "balanced", "--kt", "1",
                     "--gold", str(module_files["unlabeled"]))
    assert result.exit_code == 0, result.output
    assert "deu_Latn" in result.output and "conf median" in result.output and "precision" in result.output
    assert "of 53 texts" in result.output and "the run's selector throttling took 7 here" in result.output


def test_out_writes_exactly_the_selected_rows(run, module_files, tmp_path):
    out = tmp_path / "chosen.parquet"
    result = select_json("--scored", str(scored(run, 1)), "--selector", "balanced", "--kt", "2", "--out", str(out))
    direct = selectors.select("balanced", pl.read_parquet(scored(run, 1)), {"kt": 2},
                              expected_context(run, module_files, 1))
    written = pl.read_parquet(out)
    assert written.columns == ["id", "text", "lang", "label", "confidence", "probs", "round", "selector"]
    assert written["id"].to_list() == direct["id"].to_list() and written.height == result["taken"]
    assert written["label"].to_list() == direct["label"].to_list()
    assert set(written["round"]) == {1} and set(written["selector"]) == {"balanced"}


def test_out_refuses_an_existing_file_and_replaces_its_own_only_with_overwrite(run, tmp_path):
    foreign = tmp_path / "mine.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(foreign)
    before = foreign.read_bytes()
    args = ("select", "--scored", str(scored(run, 1)), "--selector", "balanced", "--kt", "1")
    for extra in ((), ("--overwrite",)):
        result = run_cli(*args, "--out", str(foreign), *extra)
        assert result.exit_code != 0 and "was not written by `xlc select`" in result.output
        assert foreign.read_bytes() == before
    own = tmp_path / "own.parquet"
    assert run_cli(*args, "--out", str(own)).exit_code == 0
    again = run_cli(*args, "--out", str(own))
    assert again.exit_code != 0 and "pass --overwrite" in again.output
    assert run_cli(*args, "--kt", "2", "--out", str(own), "--overwrite").exit_code == 0
    assert pl.read_parquet(own).height > 0


@pytest.mark.parametrize(("args", "message"), [
    (("--selector", "nosuch"), "nosuch"),
    (("--selector", "balanced", "--kt", "0"), "option kt must be >= 1"),
    (("--selector", "balanced", "--selector-opt", "size=3"), "has no option 'size'"),
    (("--selector", "balanced", "--selector-opt", "kt"), "write it as key=value"),
])
def test_bad_selector_or_option_is_a_one_line_error(run, args, message):
    result = run_cli("select", "--scored", str(scored(run, 0)), *args)
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_file_or_a_file_outside_a_run_is_a_one_line_error(run, tmp_path):
    missing = run_cli("select", "--scored", str(tmp_path / "nope.parquet"), "--selector", "balanced")
    assert missing.exit_code != 0 and "file not found" in missing.output
    loose = tmp_path / "scored.parquet"
    shutil.copy(scored(run, 0), loose)
    outside = run_cli("select", "--scored", str(loose), "--selector", "balanced")
    assert outside.exit_code != 0 and "RUN/round-NN/scored.parquet" in outside.output
    gold = run_cli("select", "--scored", str(scored(run, 0)), "--selector", "balanced", "--gold",
                   str(tmp_path / "gold.csv"))
    assert gold.exit_code != 0 and "gold.csv" in gold.output
    for result in (missing, outside, gold):
        assert len(result.output.strip().splitlines()) == 1


def copy_run_from_before_labeled_per_class(run: Path, target: Path) -> Path:
    """A copy of `run` (models left out) whose metrics.json files lack `labeled_per_class`, as older runs."""
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("*.onnx", "*.safetensors", "best", "final"))
    for metrics in target.glob("round-*/metrics.json"):
        record = json.loads(metrics.read_text())
        del record["labeled_per_class"]
        metrics.write_text(json.dumps(record))
    return target


def test_a_run_without_recorded_labeled_counts_counts_its_training_file(run, module_files, tmp_path):
    old = copy_run_from_before_labeled_per_class(run, tmp_path / "old")
    result = select_json("--scored", str(scored(old, 1)), "--selector", "balanced", "--kt", "2")
    context = expected_context(run, module_files, 1)
    assert result["labeled_counts"] == {c: context.labeled_counts[c] for c in context.classes}


def test_a_changed_training_file_is_named_when_the_counts_need_it(run, module_files, tmp_path):
    old = copy_run_from_before_labeled_per_class(run, tmp_path / "old")
    config = (old / "config.toml").read_text()
    changed = tmp_path / "train.parquet"
    pl.read_parquet(module_files["train"]).head(50).write_parquet(changed)
    (old / "config.toml").write_text(config.replace(str(module_files["train"]), str(changed)))
    result = run_cli("select", "--scored", str(scored(old, 1)), "--selector", "balanced")
    assert result.exit_code != 0 and str(changed) in result.output and "changed since the run" in result.output
