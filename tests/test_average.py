"""--select-round average: best/ holds the uniform average of the weights of rounds 1..R, exported,
evaluated, reported and compared like a round, and a run killed while averaging resumes to the same model.

One run is trained for the module, killed (SIGKILL) right after it committed its average: its round
models are then still there to check the average against. Copies of it are finished twice: once
averaging again from the round models without interruption (`run`), once resuming the killed average.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import xlc
from xlc import model
from xlc.cli import main
from xlc.config import SelfTrainConfig
from xlc.loop import CRASH_ENV, RunState, _stop_before_selection
from xlc.model import TABLE_FILE

TEXTS = ["Der Bundestag hat das Gesetz beschlossen.", "Le match s'est terminé sur un score nul."]


def args(tiny_model, files, out, *extra):
    """Two rounds after round 0, patience 1: the average rule must still run them all. --threads 1: a
    killed and resumed run trains every segment with one thread count."""
    return ["selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out),
            "--train", str(files["train"]), "--unlabeled", str(files["unlabeled"]),
            "--dev", str(files["dev"]), "--test", str(files["test"]), "--epochs", "1",
            "--batch-size", "16", "--max-length", "32", "--selector", "balanced", "--kt", "3",
            "--max-rounds", "2", "--patience", "1", "--threads", "1", "--select-round", "average", *extra]


def invoke(*arguments):
    result = CliRunner().invoke(main, list(arguments))
    assert result.exit_code == 0, result.output
    return result


def weights(folder) -> dict[str, torch.Tensor]:
    return model.load(folder).model.state_dict()


def mean_of(*folders) -> dict[str, torch.Tensor]:
    """The plain mean of the checkpoints' floating-point tensors, computed here as a reference."""
    states = [weights(f) for f in folders]
    return {k: torch.stack([s[k] for s in states]).mean(0) for k, v in states[0].items() if v.is_floating_point()}


def assert_averaged(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert expected.keys() <= found.keys()
    for name, value in expected.items():
        torch.testing.assert_close(found[name], value, rtol=0, atol=1e-6, msg=name)


def copy_run(source, target):
    """A copy of a run folder, its files hard links (xlc replaces files, never writes into them)."""
    shutil.copytree(source, target, copy_function=os.link, ignore=shutil.ignore_patterns(".lock"))
    return target


@pytest.fixture(scope="module")
def killed(tiny_model, module_files, tmp_path_factory):
    """A run killed right after committing average/model/; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("killed") / "run"
    process = subprocess.run([sys.executable, "-m", "xlc.cli", *args(tiny_model, module_files, out)],
                             env={**os.environ, CRASH_ENV: "average:2"}, capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    return out


@pytest.fixture(scope="module")
def run(killed, tiny_model, module_files, tmp_path_factory):
    """The killed run without its average, finished: the rounds averaged in one go, never interrupted."""
    out = copy_run(killed, tmp_path_factory.mktemp("average") / "run")
    shutil.rmtree(out / "average")
    printed = invoke(*args(tiny_model, module_files, out)).output
    assert f"the average of the weights of rounds 1-2: {out / 'best'}" in printed and "avg 1-2" in printed
    return out


def test_average_weights_is_the_running_mean_of_float_tensors_and_keeps_equal_ones_bit_for_bit():
    first = {"w": torch.tensor([1.0, -2.0]), "frozen": torch.tensor([-0.0, 0.1]), "ids": torch.tensor([0, 1])}
    second = {"w": torch.tensor([3.0, 4.0]), "frozen": torch.tensor([-0.0, 0.1]), "ids": torch.tensor([5, 6])}
    third = {"w": torch.tensor([5.0, 7.0]), "frozen": torch.tensor([-0.0, 0.1]), "ids": torch.tensor([7, 8])}
    mean = model.average_weights(iter([first, second, third]))
    assert torch.equal(mean["w"], torch.tensor([3.0, 3.0]))
    assert torch.equal(mean["frozen"], first["frozen"]) and torch.signbit(mean["frozen"][0])  # -0.0 kept
    assert torch.equal(mean["ids"], third["ids"])  # not averaged: the last one's
    assert first["w"].tolist() == [1.0, -2.0]  # the inputs are left as they were


def test_the_average_rule_never_stops_on_patience_and_takes_every_round():
    config = SelfTrainConfig.from_mapping({"select_round": "average", "patience": 1, "max_rounds": 3})
    state = RunState(pl.DataFrame({"text": ["a"], "label": ["x"]}), pl.DataFrame({"id": [1], "text": ["t"]}))
    for rnd, accuracy in enumerate([0.6, 0.5, 0.4]):
        state.observe(rnd, accuracy, config.round_rule)
        assert _stop_before_selection(config, state, rnd) is None
    assert state.best_round == 2  # best_round: the last round, as with "last"


def test_the_round_models_stay_until_the_run_has_averaged_them(killed):
    assert not (killed / "round-00" / "model").exists()  # not averaged: pruned as usual
    assert all((killed / f"round-0{n}" / "model" / "train.json").is_file() for n in (1, 2))
    assert not (killed / "round-01" / "onnx").exists()  # only the checkpoints are kept for it
    assert not (killed / "report.json").exists() and not (killed / "average" / "onnx").exists()


def test_best_holds_the_mean_of_the_weights_of_rounds_1_to_the_last(killed, run):
    best = weights(run / "best")
    assert_averaged(best, mean_of(killed / "round-01" / "model", killed / "round-02" / "model"))
    last = weights(run / "final")
    assert any(not torch.equal(best[k], last[k]) for k in best)  # not the last round's model
    assert json.loads((run / "average" / "model" / "train.json").read_text())["rounds"] == [1, 2]
    assert not (run / "round-01" / "model").exists() and not (run / "average" / "onnx").exists()  # pruned


def test_the_frozen_word_embedding_table_stays_bit_identical(killed, run):
    name = model.table_name(model.load(run / "best").model)
    table = weights(run / "best")[name]
    assert all(torch.equal(weights(killed / f"round-0{n}" / "model")[name], table) for n in (1, 2))
    assert (run / "best" / TABLE_FILE).read_bytes() == (killed / "round-01" / "model" / TABLE_FILE).read_bytes()


def test_best_onnx_scores_as_the_averaged_checkpoint(run):
    onnx_probs = xlc.load(run / "best", max_length=32).predict_proba(TEXTS)
    torch_probs = model.predict(model.load(run / "best"), TEXTS, 32)
    assert np.allclose(onnx_probs, torch_probs, atol=1e-5)


def test_the_report_says_the_average_of_rounds_was_delivered_with_its_accuracy(run):
    summary = json.loads((run / "report.json").read_text())
    assert summary["round_rule"] == "average" and summary["stop_code"] == "max_rounds"
    assert summary["best_round"] == 2 == len(summary["rounds"]) - 1  # patience 1 did not stop it
    delivered = summary["delivered"]
    assert delivered["rule"] == "average" and delivered["rounds"] == [1, 2]
    evaluated = json.loads((run / "average" / "eval.json").read_text())
    assert delivered["dev"] == evaluated["dev"] and delivered["test"] == evaluated["test"]
    predictions = pl.read_parquet(run / "average" / "test_predictions.parquet")
    assert float((predictions["label"] == predictions["gold"]).mean()) == pytest.approx(delivered["test"]["accuracy"])
    markdown = (run / "report.md").read_text()
    test = delivered["test"]["accuracy"]
    assert f"- delivered model (in `best/`): the average of the weights of rounds 1-2; dev accuracy " \
           f"{delivered['dev']['accuracy']:.3f}, test accuracy {test:.3f}" in markdown
    assert "- delivered round chosen by: the average of the weights of rounds 1-2 (every round" in markdown
    assert f"| avg 1-2 | - | - | - | - | - | {delivered['dev']['accuracy']:.3f} |" in markdown
    assert "![accuracy per round](accuracy.png)" in markdown  # drawn with the average's level line
    card = (run / "best" / "README.md").read_text()
    assert "- Weights: the average of the weights of rounds 1-2 of rounds 0-2 (`--select-round average`)" in card
    assert f"| test | all | 30 | {test:.3f} |" in card
    assert "- Round: 2 of rounds 0-2" in (run / "final" / "README.md").read_text()


def test_comparing_runs_uses_the_averaged_models_test_predictions(run):
    result = invoke("report", "--json", str(run), str(run))
    found = json.loads(result.output)
    delivered = json.loads((run / "report.json").read_text())["delivered"]
    assert found["runs"][0]["test_accuracy"] == delivered["test"]["accuracy"]
    assert found["runs"][0]["delivered"] == "avg 1-2"
    assert found["comparisons"][0]["items"] == 30 and found["comparisons"][0]["diff"] == 0
    assert "avg 1-2 (average)" in invoke("report", str(run), str(run)).output


def test_a_run_killed_while_averaging_resumes_to_the_same_model(killed, tiny_model, module_files, tmp_path, run):
    out = copy_run(killed, tmp_path / "run")
    invoke(*args(tiny_model, module_files, out))
    expected, expected_weights = json.loads((run / "report.json").read_text()), weights(run / "best")
    for again in range(2):  # the second time as if killed after pruning, before the report
        summary, found = json.loads((out / "report.json").read_text()), weights(out / "best")
        assert summary["delivered"] == expected["delivered"]
        assert all(torch.equal(found[name], value) for name, value in expected_weights.items())
        assert pl.read_parquet(out / "average" / "test_predictions.parquet").equals(
            pl.read_parquet(run / "average" / "test_predictions.parquet"))
        assert not (out / "round-01" / "model").exists() and not (out / "average" / "onnx").exists()  # pruned
        if not again:
            for name in ("report.json", "report.md", "pseudo_labels.parquet"):
                (out / name).unlink()
            invoke(*args(tiny_model, module_files, out))


def test_with_no_round_after_round_0_the_average_is_round_0(tiny_model, module_files, tmp_path):
    out = tmp_path / "run"  # through the Python API this time
    result = xlc.selftrain(**{k: module_files[k] for k in ("train", "unlabeled", "dev", "test")}, out=out,
                           model=str(tiny_model), selector_options={"kt": 3}, epochs=1, batch_size=16, max_length=32,
                           max_rounds=0, threads=1, select_round="average")
    summary = json.loads((out / "report.json").read_text())
    assert result.report["delivered"] == summary["delivered"] and result.best_model == out / "best"
    assert summary["delivered"]["rounds"] == [0] and summary["delivered"]["test"] == summary["rounds"][0]["test"]
    round_0 = weights(out / "final")
    assert all(torch.equal(value, round_0[name]) for name, value in weights(out / "best").items())
    assert "the average of the weights of round 0" in (out / "report.md").read_text()
