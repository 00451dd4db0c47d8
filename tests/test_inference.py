"""A model is scored at the max length it was trained with, by every entry point; defaults and checks.

The model folders here are the tiny encoder exported with `max_length=16` in its xlc.json, as a
run that trained at `--max-length 16` writes them; the texts are long (17 to 92 tokens), so 16
and 128 tokens give different probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc import data, inference, model, onnx
from xlc.cli import main
from xlc.evaluate import EvaluateJob, evaluate
from xlc.scoring import ScoreJob, Scorer, score_file
from xlc.scoring.ray import BatchScorer

TRAINED = 16


@pytest.fixture(scope="module")
def texts(demo_frame) -> list[str]:
    return demo_frame.filter(pl.col("lang") == "deu_Latn").sort("text").head(40)["text"].to_list()


@pytest.fixture(scope="module")
def model_16(tiny_model, tmp_path_factory) -> Path:
    """The tiny encoder with a 7-topic head, exported as trained at max length 16."""
    classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
    clf = dataclasses.replace(model.from_base(str(tiny_model), classes), max_length=TRAINED)
    return onnx.export(clf, tmp_path_factory.mktemp("onnx16") / "model")


@pytest.fixture(scope="module")
def at(model_16, texts):
    """Probabilities of `texts` at an explicit max length."""
    scorer = Scorer.open(model_16)
    return lambda length: scorer.probabilities(texts, max_length=length)


def _without_stored_length(model_dir: Path, folder: Path) -> Path:
    """A copy of `model_dir` as exported before xlc stored the max length."""
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "xlc.json").read_text())
    del meta["max_length"]
    (folder / "xlc.json").write_text(json.dumps(meta))
    return folder


def _score_cli(model_dir: Path, texts: list[str], folder: Path, *extra: str) -> pl.DataFrame:
    source, output = folder / "texts.parquet", folder / "scores.parquet"
    pl.DataFrame({"text": texts}).write_parquet(source)
    result = CliRunner().invoke(main, ["score", "--quiet", "--model", str(model_dir), "--input", str(source),
                                       "--out", str(output), "--overwrite", *extra])
    assert result.exit_code == 0, result.output
    return pl.read_parquet(output)


def _probs(scored: pl.DataFrame) -> np.ndarray:
    return scored.select(pl.selectors.starts_with("p_")).to_numpy()


def test_the_export_records_the_training_max_length_and_text_prefix(model_16):
    meta = json.loads((model_16 / "xlc.json").read_text())
    assert meta["max_length"] == TRAINED and meta["text_prefix"] == ""


def test_long_texts_score_differently_at_16_and_128_tokens(at):
    """The premise of the tests below: the max length changes these texts' probabilities."""
    assert not np.allclose(at(TRAINED), at(128), atol=1e-4)


def test_load_scores_at_the_length_the_model_was_trained_with(model_16, texts, at):
    clf = xlc.load(model_16)
    assert clf.max_length_ == TRAINED
    assert np.allclose(clf.predict_proba(texts), at(TRAINED), atol=1e-6)
    assert np.allclose(_probs(xlc.score(model_16, texts)), at(TRAINED), atol=1e-6)


def test_score_command_scores_at_the_length_the_model_was_trained_with(model_16, texts, at, tmp_path):
    assert np.allclose(_probs(_score_cli(model_16, texts, tmp_path)), at(TRAINED), atol=1e-6)


def test_score_file_and_the_ray_actor_score_at_the_trained_length(model_16, texts, at, tmp_path):
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": texts}).write_parquet(source)
    job = ScoreJob(model_16, source, tmp_path / "scores.parquet")
    assert job.max_length is None and job.for_model(model_16).max_length == TRAINED
    score_file(job)
    assert np.allclose(_probs(pl.read_parquet(tmp_path / "scores.parquet")), at(TRAINED), atol=1e-6)
    actor = BatchScorer(str(model_16), threads=1, provider="cpu", int8=False, batch_size=inference.BATCH_SIZE,
                        max_length=None)  # what `score_frame` hands the actors when no length is given
    batch = pl.DataFrame({"id": range(len(texts)), "text": texts}).to_arrow()
    assert np.allclose(_probs(pl.from_arrow(actor(batch))), at(TRAINED), atol=1e-6)


def test_evaluate_scores_at_the_length_the_model_was_trained_with(model_16, texts, at, tmp_path):
    classes = np.asarray(Scorer.open(model_16).classes, dtype=object)
    gold = classes[at(TRAINED).argmax(1)]  # labeled as the model predicts at 16 tokens
    agree_at_128 = float(np.mean(classes[at(128).argmax(1)] == gold))
    assert agree_at_128 < 1.0, "the premise: some predictions change between 16 and 128 tokens"
    path = tmp_path / "labeled.parquet"
    pl.DataFrame({"text": texts, "label": gold}).write_parquet(path)
    assert evaluate(EvaluateJob(model_16, path))["accuracy"] == 1.0
    result = CliRunner().invoke(main, ["evaluate", "--json", "--model", str(model_16), "--data", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == 1.0
    explicit = CliRunner().invoke(main, ["evaluate", "--json", "--model", str(model_16), "--data", str(path),
                                         "--max-length", "128"])
    assert explicit.exit_code == 0, explicit.output
    assert json.loads(explicit.output)["accuracy"] == pytest.approx(agree_at_128)


def test_an_explicit_max_length_wins_over_the_stored_one(model_16, texts, at, tmp_path):
    assert xlc.load(model_16, max_length=128).max_length == 128
    assert np.allclose(xlc.load(model_16, max_length=128).predict_proba(texts), at(128), atol=1e-6)
    assert np.allclose(_probs(_score_cli(model_16, texts, tmp_path, "--max-length", "128")), at(128), atol=1e-6)
    assert ScoreJob(model_16, Path(), Path(), max_length=128).for_model(model_16).max_length == 128


def test_a_model_exported_before_the_length_was_stored_is_scored_at_the_fallback(model_16, texts, at, tmp_path):
    old = _without_stored_length(model_16, tmp_path / "old")
    clf = xlc.load(old)
    assert clf.max_length_ == inference.FALLBACK_MAX_LENGTH == 128
    assert np.allclose(clf.predict_proba(texts), at(128), atol=1e-6)
    assert np.allclose(_probs(_score_cli(old, texts, tmp_path)), at(128), atol=1e-6)
    assert np.allclose(xlc.load(old, max_length=TRAINED).predict_proba(texts), at(TRAINED), atol=1e-6)


def test_a_run_stores_its_max_length_in_every_model_folder_and_its_export(tiny_model, small_files, tmp_path):
    out = tmp_path / "run"
    xlc.selftrain(**small_files, model=str(tiny_model), out=out, epochs=1, max_length=TRAINED, max_rounds=0)
    exported = tmp_path / "exported"
    result = CliRunner().invoke(main, ["export", "--model", str(out), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    for folder in (out / "round-00" / "model", out / "best", out / "final", exported):
        assert json.loads((folder / "xlc.json").read_text())["max_length"] == TRAINED, folder
    texts = pl.read_parquet(small_files["dev"])["text"].to_list()
    explicit = Scorer.open(exported).probabilities(texts, max_length=TRAINED)
    assert np.allclose(xlc.load(out).predict_proba(texts), explicit, atol=1e-6)
    assert np.allclose(xlc.load(exported).predict_proba(texts), explicit, atol=1e-6)


def test_an_optimized_export_scores_as_the_plain_one(tiny_model, small_files, tmp_path):
    out = tmp_path / "run"
    xlc.selftrain(**small_files, model=str(tiny_model), out=out, epochs=1, max_length=TRAINED, max_rounds=0)
    texts = pl.read_parquet(small_files["dev"])["text"].to_list()
    found = {}
    for name, options in (("plain", []), ("optimized", ["--optimize", "O2"])):
        result = CliRunner().invoke(main, ["export", "--model", str(out), "--out", str(tmp_path / name), *options])
        assert result.exit_code == 0, result.output
        found[name] = Scorer.open(tmp_path / name).probabilities(texts)
    assert sorted(p.name for p in (tmp_path / "optimized").glob("model.onnx*")) == ["model.onnx"]
    assert np.allclose(found["optimized"], found["plain"], atol=1e-5)


def test_a_damaged_stored_max_length_is_a_one_line_error(model_16, tmp_path):
    folder = _without_stored_length(model_16, tmp_path / "model")
    meta = json.loads((folder / "xlc.json").read_text())
    (folder / "xlc.json").write_text(json.dumps({**meta, "max_length": "long"}))
    with pytest.raises(xlc.XlcError, match="xlc.json: 'max_length' must be a whole number >= 2, got 'long'; "
                                           "the model folder is damaged"):
        xlc.load(folder)


@pytest.mark.parametrize("options, says", [
    ({"max_length": 1}, "xlc.load: max_length must be a whole number >= 2, got 1"),
    ({"max_length": "64"}, "xlc.load: max_length must be a whole number >= 2, got '64'"),
    ({"batch_size": 2_000_000}, "xlc.load: batch_size must be <= 1000000, got 2000000"),
])
def test_load_refuses_out_of_range_scoring_options_in_one_line(model_16, options, says):
    with pytest.raises(xlc.XlcError, match=says):
        xlc.load(model_16, **options)


@pytest.mark.parametrize("command, says", [
    (["score", "--batch-size", "0"], "--batch-size must be between 1 and 1000000, got 0"),
    (["score", "--max-length", "1"], "--max-length must be >= 2, got 1"),
    (["evaluate", "--batch-size", "0"], "--batch-size must be between 1 and 1000000, got 0"),
    (["evaluate", "--max-length", "1"], "--max-length must be >= 2, got 1"),
    (["evaluate", "--threads", "100000"], "--threads must be between 1 and 1024, got 100000"),
    (["selftrain", "--max-length", "1"], "--max-length must be >= 2, got 1"),
    (["selftrain", "--score-batch-size", "0"], "--score-batch-size must be between 1 and 1000000, got 0"),
])
def test_the_commands_refuse_out_of_range_scoring_options_in_one_line(model_16, tmp_path, command, says):
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": ["ein Text"], "label": ["travel"]}).write_parquet(source)
    where = {"score": ["--model", str(model_16), "--input", str(source), "--out", str(tmp_path / "o.parquet")],
             "evaluate": ["--model", str(model_16), "--data", str(source)],
             "selftrain": ["--quiet", "--out", str(tmp_path / "run")]}[command[0]]
    result = CliRunner().invoke(main, [*command, *where])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert len(result.output.strip().splitlines()) == 1 and says in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.parquet"]


def test_the_help_states_the_real_scoring_defaults():
    for command in ("score", "evaluate"):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert "[default: the model's training length (128 for a model exported before xlc stored it)]" in text
        assert f"[default: {inference.BATCH_SIZE}]" in text
