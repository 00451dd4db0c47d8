"""Hostile input and hostile environments: each gets a clear error or a documented rule."""

from __future__ import annotations

import subprocess

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from xlc import XlcError, model, onnx
from xlc.cli import main
from xlc.data import read_table
from xlc.scoring import Scorer


def test_invalid_utf8_is_named_with_its_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b'text,label\n"caf\xe9",a\nok,b\n')
    with pytest.raises(XlcError, match=r"latin1.csv: cannot be read as csv: invalid utf-8"):
        read_table(path)


def test_texts_longer_than_max_length_are_truncated(tiny_onnx):
    scorer = Scorer.open(tiny_onnx)
    head = "Die Regierung hat heute ein neues Gesetz beschlossen."
    long_text = head + " und noch mehr Worte" * 5000
    probs = scorer.probabilities([long_text, head + " und noch mehr Worte" * 20], max_length=32)
    assert np.allclose(probs[0], probs[1], atol=1e-6)  # both are cut at 32 tokens


def test_a_model_that_outputs_nan_is_reported_not_used(tiny_model, tmp_path):
    clf = model.from_base(str(tiny_model), ("a", "b"))
    with torch.no_grad():
        clf.model.classifier.weight.fill_(float("nan"))
    broken = onnx.export(clf, tmp_path / "broken")
    with pytest.raises(XlcError, match="NaN or infinite scores"):
        Scorer.open(broken).probabilities(["ein Text"])


def test_an_output_path_that_is_a_file_is_refused(tiny_model, small_files, tmp_path):
    target = tmp_path / "occupied"
    target.write_text("mine")
    result = CliRunner().invoke(main, ["selftrain", "--quiet", "--model", str(tiny_model), "--out", str(target),
                                       "--train", str(small_files["train"]), "--unlabeled",
                                       str(small_files["unlabeled"]), "--dev", str(small_files["dev"])])
    assert result.exit_code != 0 and "exists and is not a folder" in result.output
    assert target.read_text() == "mine"


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: a real 'No space left on device'. Mounting needs root."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_scoring_is_a_one_line_error_and_resumable(tiny_onnx, demo_frame, tmp_path, full_disk):
    source = tmp_path / "pool.parquet"
    demo_frame.select("text").write_parquet(source)
    args = ["score", "--quiet", "--model", str(tiny_onnx), "--input", str(source),
            "--output", str(full_disk / "scores.parquet"), "--chunk-size", "2000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "cannot write" in result.output and "No space left on device" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(full_disk.rglob(".*.tmp"))  # no half-written temp file left behind


def test_a_full_disk_during_selftrain_is_a_one_line_error(tiny_model, small_files, full_disk):
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(full_disk / "run"),
        "--train", str(small_files["train"]), "--unlabeled", str(small_files["unlabeled"]),
        "--dev", str(small_files["dev"]), "--epochs", "1", "--max-length", "16"])
    assert result.exit_code != 0
    assert "No space left on device" in result.output, result.output
    assert "Traceback" not in result.output


def test_csv_with_quoted_newlines_trains_like_parquet(tmp_path):
    frame = pl.DataFrame({"text": ["first line\nsecond line", "plain"], "label": ["a", "b"]})
    frame.write_csv(tmp_path / "q.csv")
    assert read_table(tmp_path / "q.csv").equals(frame)


def test_a_read_only_output_folder_is_a_one_line_error(tiny_model, small_files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        result = CliRunner().invoke(main, [
            "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(folder / "run"),
            "--train", str(small_files["train"]), "--unlabeled", str(small_files["unlabeled"]),
            "--dev", str(small_files["dev"])])
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert result.exit_code != 0
    assert "cannot write there (Read-only file system)" in result.output, result.output
