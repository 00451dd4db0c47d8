"""The run folder: its layout, the fingerprint a resume must match, publishing and pruning models."""

from __future__ import annotations

import json
import os

import pytest

from xlc import files, modelcard, rundir
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.onnx import ONNX_DATA
from xlc.rundir import RoundDir, RunDir


def make_round(run: RunDir, number: int, closed: bool = True, marked: bool = True) -> RoundDir:
    """A round folder as the loop leaves it: a checkpoint with train.json, an ONNX model, metrics.json."""
    rnd = run.round(number)
    rnd.model.mkdir(parents=True)
    rnd.onnx.mkdir()
    (rnd.model / "model.safetensors").write_text(f"weights {number}")
    (rnd.model / "config.json").write_text("{}")
    rnd.onnx_file.write_text(f"onnx {number}")
    (rnd.onnx / "tokenizer.json").write_text("{}")
    if marked:
        files.mark(rnd.model, "model")
        files.mark(rnd.onnx, "model")
        rnd.train_file.write_text("{}")
    if closed:
        rnd.metrics.write_text("{}")
    return rnd


def test_a_round_folder_names_each_phase_output_in_commit_order(tmp_path):
    rnd = RunDir(tmp_path).round(3)
    assert rnd.path == tmp_path / "round-03" and rnd.number == 3
    assert [p.relative_to(rnd.path).as_posix() for p in (
        rnd.model, rnd.train_file, rnd.onnx, rnd.onnx_file, rnd.evaluation, rnd.scored, rnd.selected, rnd.metrics,
    )] == ["model", "model/train.json", "onnx", "onnx/model.onnx", "eval.json", "scored.parquet",
           "selected.parquet", "metrics.json"]
    assert RunDir(tmp_path).round(123).path.name == "round-123"


def test_the_run_folder_names_its_files_in_one_place(tmp_path):
    run = RunDir(tmp_path)
    assert {name: p.relative_to(tmp_path).as_posix() for name, p in vars(run).items() if name != "path"} == {
        "config": "config.toml", "run_file": "run.json", "lock": ".lock", "inputs": "inputs", "best": "best",
        "final": "final", "pseudo_labels": "pseudo_labels.parquet", "report": "report.json",
        "report_md": "report.md",
    }
    assert run.input("train") == tmp_path / "inputs" / "train.parquet"
    assert run.average.path == tmp_path / "average"


def test_rounds_on_disk_come_in_number_order_and_other_folders_are_ignored(tmp_path):
    for name in ("round-10", "round-02", "round-x", "roundabout", "round-"):
        (tmp_path / name).mkdir()
    assert [r.number for r in RunDir(tmp_path).rounds()] == [2, 10]
    assert RunDir(tmp_path / "missing").rounds() == []


def test_a_round_is_closed_only_once_its_metrics_file_exists(tmp_path):
    rnd = make_round(RunDir(tmp_path), 0, closed=False)
    assert not rnd.closed
    rnd.metrics.write_text("{}")
    assert rnd.closed


def test_prune_drops_the_models_of_closed_rounds_except_the_kept_ones(tmp_path):
    run = RunDir(tmp_path)
    for number in (0, 1, 2):
        make_round(run, number)
    open_round = make_round(run, 3, closed=False)
    users = make_round(run, 4, marked=False)  # a model/ folder xlc did not write: never deleted
    rundir.prune(run, keep={1, 2})
    assert [r.number for r in run.rounds() if r.model.exists()] == [1, 2, 3, 4]
    assert open_round.model.is_dir() and users.model.is_dir()
    assert [r.number for r in run.rounds() if r.onnx_file.exists()] == [1, 2, 3, 4]
    assert all(r.metrics.is_file() for r in run.rounds() if r.number != 3)  # the records stay


def test_publish_links_the_checkpoint_and_the_onnx_model_but_not_the_training_facts(tmp_path):
    run = RunDir(tmp_path)
    rnd = make_round(run, 1)
    rundir.publish(rnd, run.best)
    assert sorted(p.name for p in run.best.iterdir()) == sorted(
        ["config.json", "model.safetensors", "model.onnx", files.MARKER])
    assert files.marked_kind(run.best) == "model"
    assert os.stat(run.best / "model.onnx").st_ino == os.stat(rnd.onnx_file).st_ino  # a hard link, no copy
    rundir.publish(run.round(1), run.best)  # an earlier publication (xlc's own) is replaced
    assert (run.best / "model.safetensors").read_text() == "weights 1"


def test_publish_copies_onnx_external_data_which_the_onnx_library_refuses_to_read_through_a_link(tmp_path):
    run = RunDir(tmp_path)
    rnd = make_round(run, 1)
    (rnd.onnx / ONNX_DATA).write_text("weights of round 1")
    rundir.publish(rnd, run.best)
    published = run.best / ONNX_DATA
    assert published.read_text() == "weights of round 1"
    assert os.stat(published).st_ino != os.stat(rnd.onnx / ONNX_DATA).st_ino and os.stat(published).st_nlink == 1
    assert os.stat(run.best / "model.onnx").st_ino == os.stat(rnd.onnx_file).st_ino


def test_prune_once_finished_drops_every_rounds_onnx_model_but_keeps_the_kept_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    for number in (0, 1, 2):
        make_round(run, number)
    rundir.prune(run, keep={0, 2}, keep_onnx=set())
    assert [r.number for r in run.rounds() if r.model.exists()] == [0, 2]
    assert not any(r.onnx.exists() for r in run.rounds())


def test_a_model_published_before_its_rounds_onnx_was_pruned_is_kept_when_publishing_again(tmp_path):
    """A run killed after pruning, before its report: finishing again must not need the pruned onnx/."""
    run = RunDir(tmp_path)
    rnd = make_round(run, 1)
    rundir.publish(rnd, run.best, card=modelcard.MARK + "\ncard")
    rundir.prune(run, keep={1}, keep_onnx=set())
    rundir.publish(rnd, run.best, card=modelcard.MARK + "\ncard")
    assert (run.best / "model.onnx").read_text() == "onnx 1"


def test_publish_never_replaces_a_folder_xlc_did_not_make(tmp_path):
    run = RunDir(tmp_path)
    rnd = make_round(run, 0)
    run.final.mkdir()
    (run.final / "notes.txt").write_text("mine")
    with pytest.raises(XlcError, match="xlc did not write"):
        rundir.publish(rnd, run.final)
    assert (run.final / "notes.txt").read_text() == "mine"


def test_find_model_takes_a_model_folder_a_run_folder_or_a_round_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    rnd = make_round(run, 0)
    rundir.publish(rnd, run.best)
    assert rundir.find_model(run.path) == run.best
    assert rundir.find_model(run.best) == run.best
    assert rundir.find_model(rnd.path) == rnd.onnx
    assert rundir.find_model(rnd.onnx) == rnd.onnx


def test_find_model_names_the_folder_and_what_to_pass_instead(tmp_path):
    with pytest.raises(XlcError, match=r"no model.onnx here or in its best/ folder; pass a run folder") as err:
        rundir.find_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_find_checkpoint_prefers_a_run_folders_best_and_refuses_a_folder_without_weights(tmp_path):
    run = RunDir(tmp_path / "run")
    run.best.mkdir(parents=True)
    (run.best / "xlc.json").write_text("{}")
    (run.best / "config.json").write_text("{}")
    assert rundir.find_checkpoint(run.path) == run.best
    assert rundir.find_checkpoint(run.best) == run.best
    with pytest.raises(XlcError, match="no Hugging Face weights here or in best/"):
        rundir.find_checkpoint(tmp_path / "empty")


def test_model_folders_are_best_final_and_each_rounds_weights(tmp_path):
    run = RunDir(tmp_path)
    rnd = make_round(run, 0)
    run.final.mkdir()
    assert set(run.model_folders()) == {run.final, rnd.onnx, rnd.model}


def fake_model(folder):
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_text("w")
    return folder


def test_fingerprint_follows_settings_input_bytes_and_model_but_not_the_output_folder(small_files, tmp_path):
    base = fake_model(tmp_path / "encoder")
    config = SelfTrainConfig(train=str(small_files["train"]), unlabeled=str(small_files["unlabeled"]),
                             dev=str(small_files["dev"]), model=str(base), out=str(tmp_path / "a"))
    stamp = rundir.fingerprint(config)
    assert set(stamp) == {"settings", "inputs", "model"} and set(stamp["inputs"]) == {"train", "unlabeled", "dev"}
    assert rundir.fingerprint(config.replace(out=str(tmp_path / "b"))) == stamp
    assert rundir.fingerprint(config.replace(seed=3))["settings"]["seed"] == 3
    small_files["dev"].write_bytes(small_files["dev"].read_bytes() + b"\0")
    assert rundir.fingerprint(config)["inputs"]["dev"] != stamp["inputs"]["dev"]
    (base / "model.safetensors").write_text("other weights")
    assert rundir.fingerprint(config)["model"] != stamp["model"]


def test_a_started_run_resumes_with_its_own_fingerprint_only(small_files, tmp_path):
    config = SelfTrainConfig(train=str(small_files["train"]), unlabeled=str(small_files["unlabeled"]),
                             dev=str(small_files["dev"]), model=str(fake_model(tmp_path / "encoder")))
    out = tmp_path / "run"
    stamp = rundir.fingerprint(config)
    assert not rundir.resumes(out, stamp)  # a new folder: a new run
    rundir.start(out, config, stamp)
    run = RunDir(out)
    assert json.loads(run.run_file.read_text()) == json.loads(json.dumps(stamp))
    assert SelfTrainConfig.from_toml(run.config).seed == config.seed and files.marked_kind(out) == "run"
    assert rundir.resumes(out, stamp)
    assert not rundir.resumes(out, rundir.fingerprint(config.replace(seed=4)))  # nothing committed: restarted
    run.round(0).model.mkdir(parents=True)  # a committed phase: worth resuming, so other settings are refused
    with pytest.raises(XlcError, match=r"different settings \(seed: 0 -> 4\); resume it with --resume"):
        rundir.resumes(out, rundir.fingerprint(config.replace(seed=4)))
    run.report.write_text("{}")  # finished: neither resumed nor overwritten
    with pytest.raises(XlcError, match="already holds a finished run"):
        rundir.resumes(out, stamp)
