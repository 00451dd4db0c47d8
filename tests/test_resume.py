"""Kill `xlc selftrain` (SIGKILL) at several points, resume, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from click.testing import CliRunner

from xlc.cli import main
from xlc.loop import CRASH_ENV


def args(model, files, out, *extra):
    """--threads 1: every segment of a killed and resumed run trains with one thread count (float results
    depend on it), whatever torch.set_num_threads an earlier in-process test left behind."""
    return ["selftrain", "--quiet", "--model", str(model), "--out", str(out),
            "--train", str(files["train"]), "--unlabeled", str(files["unlabeled"]),
            "--dev", str(files["dev"]), "--test", str(files["test"]), "--epochs", "1",
            "--batch-size", "16", "--max-length", "32", "--selector", "balanced", "--kt", "3",
            "--max-rounds", "2", "--patience", "5", "--threads", "1", *extra]


def in_process(*arguments):
    result = CliRunner().invoke(main, list(arguments))
    assert result.exit_code == 0, result.output
    return result


def subprocess_args(arguments):
    return [sys.executable, "-m", "xlc.cli", *arguments]


def outcome(out):
    """Everything a resumed run must reproduce exactly."""
    report = json.loads((out / "report.json").read_text())
    rounds = [{k: r[k] for k in ("labeled", "pool", "selected", "selected_per_class", "pseudo_precision",
                                 "dev", "test", "train_loss", "stop_reason")} for r in report["rounds"]]
    return rounds, report["best_round"], pl.read_parquet(out / "pseudo_labels.parquet")


@pytest.fixture(scope="module")
def reference(tiny_model, module_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    in_process(*args(tiny_model, module_files, out))
    return outcome(out)


def assert_same(out, reference):
    rounds, best, pseudo = outcome(out)
    assert rounds == reference[0]
    assert best == reference[1]
    assert pseudo.equals(reference[2])
    assert pseudo["id"].n_unique() == pseudo.height  # no pseudo-label added twice


@pytest.mark.parametrize("point", ["train:1", "score:0", "select:1", "export:2", "finish:2"])
def test_run_killed_at_a_phase_resumes_to_the_same_result(point, tiny_model, module_files, tmp_path, reference):
    out = tmp_path / "run"
    killed = subprocess.run(subprocess_args(args(tiny_model, module_files, out)),
                            env={**os.environ, CRASH_ENV: point}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "report.json").exists()
    in_process(*args(tiny_model, module_files, out))
    assert_same(out, reference)


def test_run_killed_after_a_delay_resumes_with_resume_flag(tiny_model, module_files, tmp_path, reference):
    out = tmp_path / "run"
    process = subprocess.Popen(subprocess_args(args(tiny_model, module_files, out)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (out / "round-00" / "onnx").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "finished before it could be killed"
        time.sleep(0.02)
    process.kill()
    process.wait()
    in_process("selftrain", "--quiet", "--resume", str(out))
    assert_same(out, reference)


def test_resuming_with_other_settings_is_refused_with_what_differs(tiny_model, module_files, tmp_path):
    out = tmp_path / "run"
    killed = subprocess.run(subprocess_args(args(tiny_model, module_files, out)),
                            env={**os.environ, CRASH_ENV: "train:0"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    result = CliRunner().invoke(main, args(tiny_model, module_files, out, "--seed", "9", "--kt", "4"))
    assert result.exit_code != 0
    assert f"holds an unfinished run with different settings (seed: 0 -> 9; kt: 3 -> 4); resume it with " \
           f"--resume {out} or choose another --out" in result.output
    changed = dict(module_files, dev=module_files["test"])
    result = CliRunner().invoke(main, args(tiny_model, changed, out))
    assert f"(dev: {module_files['dev']} -> {module_files['test']})" in result.output


def test_same_seed_gives_the_same_selections_and_metrics(tiny_model, module_files, tmp_path, reference):
    out = tmp_path / "again"
    in_process(*args(tiny_model, module_files, out))
    assert_same(out, reference)


def test_rerunning_a_finished_run_says_it_is_finished(tiny_model, module_files, tmp_path):
    out = tmp_path / "run"
    in_process(*args(tiny_model, module_files, out, "--max-rounds", "0"))
    report = (out / "report.json").read_bytes()
    resume = ["selftrain", "--quiet", "--resume", str(out)]
    for again in (args(tiny_model, module_files, out, "--max-rounds", "0"), resume):
        result = CliRunner().invoke(main, again)
        assert result.exit_code == 0, result.output
        assert f"--out {out}: already holds this run, finished" in result.output and "nothing to do" in result.output
    assert (out / "report.json").read_bytes() == report
    other = CliRunner().invoke(main, args(tiny_model, module_files, out, "--max-rounds", "0", "--seed", "3"))
    assert other.exit_code != 0 and "already holds a finished run" in other.output
