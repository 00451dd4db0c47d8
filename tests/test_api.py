"""The Python API on the tiny model: frames, lists and paths in; reproducible runs from config.toml."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc.cli import main
from xlc.config import SelfTrainConfig

FAST = {"epochs": 1, "batch_size": 16, "max_length": 32, "max_rounds": 1, "patience": 5}


@pytest.fixture
def frames(small_files):
    return {role: pl.read_parquet(path) for role, path in small_files.items()}


@pytest.fixture
def api_run(tiny_model, frames, tmp_path):
    return xlc.selftrain(
        train=frames["train"], unlabeled=frames["unlabeled"]["text"].to_list(), dev=frames["dev"],
        test=frames["test"], selector="throttling", selector_options={"n": 5},
        model=str(tiny_model), out=tmp_path / "api", **FAST,
    )


def test_selftrain_takes_frames_and_a_list_of_texts(api_run):
    assert isinstance(api_run.rounds, pl.DataFrame)
    assert api_run.rounds["round"].to_list() == [0, 1]
    assert api_run.rounds["selected"].to_list() == [5, 0]
    assert api_run.pseudo_labels.columns == ["id", "text", "lang", "label", "confidence", "round", "selector"]
    assert api_run.pseudo_labels.height == 5
    assert api_run.rounds["pseudo_precision"].to_list() == [None, None]  # a list of texts has no gold
    assert (api_run.best_model / "model.onnx").is_file()


def test_the_same_call_again_returns_the_finished_run_and_other_data_is_refused(api_run, tiny_model, frames):
    again = xlc.selftrain(
        train=frames["train"], unlabeled=frames["unlabeled"]["text"].to_list(), dev=frames["dev"],
        test=frames["test"], selector="throttling", selector_options={"n": 5},
        model=str(tiny_model), out=api_run.out, **FAST,
    )
    assert again.rounds.equals(api_run.rounds) and again.pseudo_labels.equals(api_run.pseudo_labels)
    assert (again.best_round, again.best_model, again.stop_code) == (
        api_run.best_round, api_run.best_model, api_run.stop_code)
    with pytest.raises(xlc.XlcError, match="already holds a finished run"):
        xlc.selftrain(train=frames["train"].head(70), unlabeled=frames["unlabeled"]["text"].to_list(),
                      dev=frames["dev"], test=frames["test"], selector="throttling", selector_options={"n": 5},
                      model=str(tiny_model), out=api_run.out, **FAST)


def test_rerunning_the_written_config_reproduces_the_selections(api_run, tmp_path):
    saved = SelfTrainConfig.from_toml(api_run.out / "config.toml")
    assert saved.train == str(api_run.out / "inputs" / "train.parquet")
    again = xlc.selftrain(config=api_run.out / "config.toml", out=tmp_path / "again")
    assert again.pseudo_labels.drop("confidence").equals(api_run.pseudo_labels.drop("confidence"))
    assert again.pseudo_labels["confidence"].to_list() == pytest.approx(
        api_run.pseudo_labels["confidence"].to_list(), abs=1e-6)
    assert again.rounds["dev_accuracy"].to_list() == api_run.rounds["dev_accuracy"].to_list()


def test_cli_flags_override_the_config_file(api_run, tmp_path):
    out = tmp_path / "override"
    result = CliRunner().invoke(main, ["selftrain", "--quiet", "--config", str(api_run.out / "config.toml"),
                                       "--out", str(out), "--max-rounds", "0", "--seed", "5"])
    assert result.exit_code == 0, result.output
    written = SelfTrainConfig.from_toml(out / "config.toml")
    assert (written.max_rounds, written.seed, written.selector) == (0, 5, "throttling")
    assert written.selector_options == {"n": 5}


def test_unknown_keyword_is_rejected_with_its_name(tiny_model, frames, tmp_path):
    with pytest.raises(xlc.XlcError, match="unknown setting 'epoch'"):
        xlc.selftrain(train=frames["train"], unlabeled=frames["unlabeled"], dev=frames["dev"],
                      out=tmp_path / "x", epoch=3)


def test_loaded_classifier_predicts_like_scikit_learn(api_run):
    clf = xlc.load(api_run.out)
    texts = ["Der Bundestag hat das Gesetz beschlossen.", "Das Spiel endete unentschieden."]
    proba = clf.predict_proba(texts)
    assert proba.shape == (2, len(clf.classes_))
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(clf.predict(texts)) == list(clf.classes_[proba.argmax(axis=1)])


def test_score_accepts_lists_frames_and_files(api_run, frames, tmp_path):
    texts = frames["test"]["text"].head(8).to_list()
    from_list = xlc.score(api_run.best_model, texts)
    from_frame = xlc.score(api_run.best_model, frames["test"].head(8))
    path = tmp_path / "t.csv"
    frames["test"].head(8).write_csv(path)
    from_file = xlc.score(api_run.best_model, path)
    assert from_list["label"].to_list() == from_frame["label"].to_list() == from_file["label"].to_list()
    assert from_frame["gold"].to_list() == frames["test"]["label"].head(8).to_list()  # gold kept


def test_pandas_frames_are_accepted(api_run, frames):
    pd = pytest.importorskip("pandas", reason="pandas is in the dev extra; the test needs it installed")
    scored = xlc.score(api_run.best_model, pd.DataFrame({"text": frames["test"]["text"].head(3).to_list()}))
    assert scored.height == 3


def test_a_missing_model_folder_says_what_to_pass(tmp_path):
    with pytest.raises(xlc.XlcError, match="no model.onnx here or in its best/ folder"):
        xlc.load(tmp_path)


def test_progress_callback_sees_every_stage(tiny_model, frames, tmp_path):
    seen = {}
    xlc.selftrain(train=frames["train"], unlabeled=frames["unlabeled"], dev=frames["dev"],
                  model=str(tiny_model), out=tmp_path / "p", progress=lambda s, d, t: seen.update({s: (d, t)}),
                  **{**FAST, "max_rounds": 0})
    assert seen["round 0: train"][0] == seen["round 0: train"][1] > 0
    assert seen["round 0: dev"] == (30, 30)


def test_load_score_and_evaluate_do_not_import_torch(tiny_onnx, tmp_path):
    import subprocess
    import sys

    labeled = tmp_path / "de.csv"
    pl.DataFrame({"text": ["ein Satz", "noch einer"], "label": ["sports", "health"]}).write_csv(labeled)
    code = ("import sys, xlc; from xlc.evaluate import EvaluateJob, evaluate; "
            f"clf = xlc.load({str(tiny_onnx)!r}); clf.predict(['ein Satz']); xlc.score(clf, ['ein Satz']); "
            f"from pathlib import Path; evaluate(EvaluateJob(Path({str(tiny_onnx)!r}), Path({str(labeled)!r}))); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False False", result.stderr
