"""`xlc selftrain` end to end on a tiny encoder: real ONNX export, real ORT scoring."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from click.testing import CliRunner

from xlc.cli import main
from xlc.scoring import Scorer


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def selftrain_args(model, files, out, *extra):
    return ("selftrain", "--quiet", "--model", str(model), "--out", str(out),
            "--train", str(files["train"]), "--unlabeled", str(files["unlabeled"]),
            "--dev", str(files["dev"]), "--test", str(files["test"]),
            "--epochs", "1", "--batch-size", "16", "--max-length", "32", *extra)


@pytest.fixture(scope="module")
def two_rounds(tiny_model, module_files, tmp_path_factory):
    """One finished two-round run, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("run") / "run"
    hashes = {name: digest(path) for name, path in module_files.items()}
    result = run_cli(*selftrain_args(tiny_model, module_files, out, "--selector", "throttling",
                                     "--n", "7", "--max-rounds", "2", "--patience", "5"))
    assert result.exit_code == 0, result.output
    return out, result, hashes


def test_selftrain_runs_rounds_and_moves_selected_texts_out_of_the_pool(two_rounds):
    out, result, _ = two_rounds
    report = json.loads((out / "report.json").read_text())
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert report["stop_reason"] == "reached --max-rounds 2"
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert after["pool"] == before["pool"] - before["selected"]
        assert after["labeled"] == before["labeled"] + before["selected"]
    assert rounds[0]["pool"] == 60 and rounds[0]["labeled"] == 80
    assert [r["selected"] for r in rounds] == [7, 7, 0]  # the last round only evaluates
    assert "round" in result.output and "dev acc" in result.output  # the table


def test_a_run_that_reaches_max_rounds_records_the_stop_code_beside_the_sentence(two_rounds):
    out, _, _ = two_rounds
    report = json.loads((out / "report.json").read_text())
    assert report["stop_code"] == "max_rounds"
    assert [r["stop_code"] for r in report["rounds"]] == ["", "", "max_rounds"]
    assert [r["stop_reason"] for r in report["rounds"]] == ["", "", "reached --max-rounds 2"]


def test_each_round_writes_its_selection_metrics_and_onnx_model(two_rounds, module_files):
    out, _, _ = two_rounds
    pool_texts = set(pl.read_parquet(module_files["unlabeled"])["text"])
    seen = set()
    for rnd in (0, 1):
        selected = pl.read_parquet(out / f"round-{rnd:02d}" / "selected.parquet")
        assert selected.columns == ["id", "text", "lang", "label", "confidence", "round", "selector"]
        assert set(selected["round"]) == {rnd} and set(selected["selector"]) == {"throttling"}
        assert set(selected["text"]) <= pool_texts
        assert not seen & set(selected["id"])  # never selected twice
        seen |= set(selected["id"])
        metrics = json.loads((out / f"round-{rnd:02d}" / "metrics.json").read_text())
        assert set(metrics["timings"]) == {"train", "export", "evaluate", "score", "select"}
        assert 0 <= metrics["pseudo_precision"] <= 1  # gold labels of the pool exist here
    assert pl.read_parquet(out / "pseudo_labels.parquet").height == 14


def test_only_the_best_and_the_last_rounds_keep_their_models(two_rounds):
    """Their checkpoints stay (hard links of best/ and final/); their ONNX models are best/ and final/."""
    out, _, _ = two_rounds
    report = json.loads((out / "report.json").read_text())
    kept = {report["best_round"], len(report["rounds"]) - 1}
    for rnd in range(len(report["rounds"])):
        assert (out / f"round-{rnd:02d}" / "model").is_dir() == (rnd in kept)
        assert not (out / f"round-{rnd:02d}" / "onnx").exists()
        assert (out / f"round-{rnd:02d}" / "metrics.json").is_file()


def test_pseudo_labels_are_the_models_predictions(tiny_model, module_files, tmp_path):
    out = tmp_path / "run"
    result = run_cli(*selftrain_args(tiny_model, module_files, out, "--selector", "throttling", "--n", "7",
                                     "--max-rounds", "1", "--patience", "5", "--keep-round-models"))
    assert result.exit_code == 0, result.output
    selected = pl.read_parquet(out / "round-00" / "selected.parquet")
    scorer = Scorer.open(out / "round-00" / "onnx")
    rescored = scorer.score(selected.select("text"), max_length=32)
    assert rescored["label"].to_list() == selected["label"].to_list()
    assert rescored["confidence"].to_list() == pytest.approx(selected["confidence"].to_list(), abs=1e-5)


def test_best_and_final_models_are_saved_in_both_formats(two_rounds):
    out, _, _ = two_rounds
    for name in ("best", "final"):
        names = {p.name for p in (out / name).iterdir()}
        assert {"model.safetensors.index.json", "model-word-embeddings.safetensors", "model-rest.safetensors",
                "config.json", "model.onnx", "model.onnx_data", "tokenizer.json", "xlc.json"} <= names
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["best_round"] <= 2
    assert (out / "report.md").read_text().startswith("# xlc self-training report")
    assert (out / "config.toml").is_file()


def test_gold_labels_of_the_pool_never_influence_training_or_selection(tiny_model, small_files, tmp_path):
    """Two runs whose pools differ only in their (hidden) gold labels select identically."""
    pool = pl.read_parquet(small_files["unlabeled"])
    flipped = tmp_path / "flipped.parquet"
    pool.with_columns(pl.col("label").shuffle(seed=1).alias("label")).write_parquet(flipped)
    outs = []
    for name, unlabeled in (("a", small_files["unlabeled"]), ("b", flipped)):
        files = {**small_files, "unlabeled": unlabeled}
        result = run_cli(*selftrain_args(tiny_model, files, tmp_path / name, "--selector", "balanced",
                                         "--kt", "3", "--max-rounds", "1", "--patience", "5"))
        assert result.exit_code == 0, result.output
        outs.append(pl.read_parquet(tmp_path / name / "round-00" / "selected.parquet"))
    assert outs[0].select("id", "label").equals(outs[1].select("id", "label"))
    report_a = json.loads((tmp_path / "a" / "report.json").read_text())
    report_b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [r["dev"] for r in report_a["rounds"]] == [r["dev"] for r in report_b["rounds"]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--kt", "0"), "option kt must be >= 1, got 0"),
        (("--selector", "nope"), "--selector 'nope': no such selector; installed: balanced"),
        (("--text-column", "body"), "column 'body' not found (columns: text, label, lang)"),
        (("--selector-opt", "kt"), "write it as key=value"),
        (("--epochs", "0"), "--epochs must be >= 1, got 0"),
    ],
)
def test_bad_input_gives_one_line_error_and_nonzero_exit(tiny_model, small_files, tmp_path, extra, message):
    result = CliRunner().invoke(main, list(selftrain_args(tiny_model, small_files, tmp_path / "r", *extra)))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_input_file_is_named(tiny_model, small_files, tmp_path):
    files = {**small_files, "dev": tmp_path / "missing.csv"}
    result = CliRunner().invoke(main, list(selftrain_args(tiny_model, files, tmp_path / "r")))
    assert result.exit_code != 0
    assert "missing.csv: file not found" in result.output


def test_an_output_folder_holding_a_run_is_not_overwritten(two_rounds, tiny_model, module_files):
    out, _, _ = two_rounds
    before = (out / "report.json").read_bytes()
    result = CliRunner().invoke(main, list(selftrain_args(tiny_model, module_files, out)))
    assert result.exit_code != 0 and "already holds a finished run" in result.output
    assert (out / "report.json").read_bytes() == before


def test_input_files_are_left_untouched(two_rounds, module_files):
    _, _, hashes = two_rounds
    assert {name: digest(path) for name, path in module_files.items()} == hashes
