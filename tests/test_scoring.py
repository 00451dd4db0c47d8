"""`xlc score`: real ONNX Runtime sessions on a tiny exported model, real files, real kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from xlc import XlcError
from xlc.cli import main
from xlc.scoring import ScoreJob, Scorer, exact_chunks, score_file


@pytest.fixture(scope="module")
def texts(demo_frame) -> list[str]:
    """Real sentences of very different lengths, in no particular order."""
    return demo_frame.sample(600, seed=3)["text"].to_list()


def test_bucketing_keeps_input_order(tiny_onnx, texts):
    scorer = Scorer.open(tiny_onnx)
    bucketed = scorer.probabilities(texts, batch_size=32, max_length=64)
    one_by_one = np.vstack([scorer.probabilities([t], batch_size=1, max_length=64) for t in texts[:40]])
    assert np.allclose(bucketed[:40], one_by_one, atol=1e-5)


def test_batch_size_does_not_change_results(tiny_onnx, texts):
    scorer = Scorer.open(tiny_onnx)
    results = [scorer.probabilities(texts, batch_size=b, max_length=64) for b in (1, 7, 64, 1000)]
    for other in results[1:]:
        assert np.allclose(results[0], other, atol=1e-5)
        assert (results[0].argmax(1) == other.argmax(1)).all()


def test_exact_chunks_cut_a_stream_at_fixed_boundaries():
    frame = pl.LazyFrame({"x": range(1005)})
    sizes = [c.height for c in exact_chunks(frame, 100)]
    assert sizes == [100] * 10 + [5]
    assert pl.concat(exact_chunks(frame, 100))["x"].to_list() == list(range(1005))


def write_input(frame: pl.DataFrame, path):
    {".csv": frame.write_csv, ".parquet": frame.write_parquet, ".jsonl": frame.write_ndjson}[path.suffix](path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_input_format_gives_the_same_scores(tiny_onnx, texts, tmp_path, suffix):
    frame = pl.DataFrame({"body": texts[:120], "key": [f"r{i}" for i in range(120)]})
    source = write_input(frame, tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}.parquet"
    summary = score_file(ScoreJob(tiny_onnx, source, out, text_column="body", id_column="key", chunk_size=50))
    scored = pl.read_parquet(out)
    assert scored["id"].to_list() == frame["key"].to_list()
    reference = Scorer.open(tiny_onnx).probabilities(texts[:120], max_length=128)
    assert np.allclose(scored.select(pl.selectors.starts_with("p_")).to_numpy(), reference, atol=1e-5)
    assert summary.rows == 120 and sum(summary.per_class.values()) == 120


def test_empty_and_null_texts_keep_their_row_with_null_scores(tiny_onnx, tmp_path):
    source = write_input(pl.DataFrame({"text": ["good", None, "  ", "", "fine"]}), tmp_path / "in.parquet")
    summary = score_file(ScoreJob(tiny_onnx, source, tmp_path / "out.parquet"))
    scored = pl.read_parquet(tmp_path / "out.parquet")
    assert scored["id"].to_list() == [0, 1, 2, 3, 4]
    assert scored["label"].is_null().to_list() == [False, True, True, True, False]
    assert summary.empty_texts == 3 and summary.rows == 5


def test_duplicate_ids_are_an_error(tiny_onnx, tmp_path):
    source = write_input(pl.DataFrame({"text": ["a", "b"], "key": [1, 1]}), tmp_path / "in.csv")
    with pytest.raises(XlcError, match="column 'key' has duplicate or missing ids"):
        score_file(ScoreJob(tiny_onnx, source, tmp_path / "out.parquet", id_column="key"))


def test_existing_output_needs_overwrite(tiny_onnx, tmp_path):
    source = write_input(pl.DataFrame({"text": ["a", "b"]}), tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"keep me")
    with pytest.raises(XlcError, match="exists; pass --overwrite"):
        score_file(ScoreJob(tiny_onnx, source, out))
    assert out.read_bytes() == b"keep me"
    score_file(ScoreJob(tiny_onnx, source, out, overwrite=True))
    assert pl.read_parquet(out).height == 2


def score_command(model, source, out, *extra):
    return [sys.executable, "-m", "xlc.cli", "score", "--quiet", "--model", str(model), "--input", str(source),
            "--out", str(out), "--chunk-size", "50", "--batch-size", "16", "--threads", "1", *extra]


def kill_after_parts(command, parts_dir, parts: int, timeout: float = 120.0) -> None:
    """Start `command`, SIGKILL it once `parts` part files exist; fail if it finished first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if parts_dir.is_dir() and len(list(parts_dir.glob("part-*.parquet"))) >= parts:
            break
        assert process.poll() is None, f"finished before it could be killed: {process.stderr.read()!r}"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def big_input(tmp_path_factory, demo_frame):
    path = tmp_path_factory.mktemp("big") / "pool.parquet"
    demo_frame.sample(3000, with_replacement=True, seed=1).select("text").write_parquet(path)
    return path


def test_killed_score_resumes_to_byte_identical_output(tiny_onnx, big_input, tmp_path):
    clean = tmp_path / "clean.parquet"
    subprocess.run(score_command(tiny_onnx, big_input, clean), check=True, capture_output=True)
    resumed = tmp_path / "resumed.parquet"
    kill_after_parts(score_command(tiny_onnx, big_input, resumed), tmp_path / "resumed.parquet.parts", 3)
    assert not resumed.exists()
    again = subprocess.run(score_command(tiny_onnx, big_input, resumed), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    assert resumed.read_bytes() == clean.read_bytes()
    assert not (tmp_path / "resumed.parquet.parts").exists()


def test_parts_from_a_different_model_are_not_mixed(tiny_onnx, big_input, tmp_path):
    out = tmp_path / "out.parquet"
    kill_after_parts(score_command(tiny_onnx, big_input, out), tmp_path / "out.parquet.parts", 1)
    result = CliRunner().invoke(main, score_command(tiny_onnx, big_input, out, "--max-length", "32")[3:])
    assert result.exit_code != 0
    assert "different max_length" in result.output and "--overwrite" in result.output
    result = CliRunner().invoke(main, score_command(tiny_onnx, big_input, out, "--max-length", "32",
                                                    "--overwrite")[3:])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).height == 3000


def test_scoring_tokenizer_matches_the_training_tokenizer(tiny_onnx, texts):
    from xlc.model import load_tokenizer
    from xlc.modeldir import FastTokenizer

    fast, trained = FastTokenizer(tiny_onnx), load_tokenizer(tiny_onnx)
    assert fast.encode(texts, 40) == trained(texts, truncation=True, max_length=40)["input_ids"]
    assert fast.pad_token_id == trained.pad_token_id


def test_scoring_does_not_import_torch(tiny_onnx, texts):
    code = ("import sys; from xlc.scoring import Scorer; "
            f"Scorer.open({str(tiny_onnx)!r}).probabilities(['ein Satz']); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_rerunning_a_finished_score_says_it_is_done_and_leaves_the_output(tiny_onnx, tmp_path):
    source = write_input(pl.DataFrame({"text": ["a b", "c d e", "f"]}), tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    args = ["score", "--quiet", "--model", str(tiny_onnx), "--input", str(source), "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    written, stat = out.read_bytes(), out.stat()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert f"--out {out} is already complete (3 rows" in again.output and "nothing to do" in again.output
    assert out.read_bytes() == written and out.stat().st_mtime_ns == stat.st_mtime_ns
    # the batch size may change (selftrain's name for it works here too): still the same job, done
    as_json = json.loads(CliRunner().invoke(main, [*args, "--json", "--score-batch-size", "8"]).output)
    assert as_json["complete"] is True and as_json["rows"] == 3 and as_json["output"] == str(out)
    # another job on the same output (named by the older spelling --output): refused
    other = CliRunner().invoke(main, [*args[:-2], "--output", str(out), "--max-length", "16"])
    assert other.exit_code != 0 and "exists; pass --overwrite" in other.output
    assert out.read_bytes() == written


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_scores_can_be_written_as_csv_or_jsonl_with_the_same_rows(tiny_onnx, tmp_path, suffix):
    source = write_input(pl.DataFrame({"text": ["a b", "", "c d e", "f"]}), tmp_path / "in.csv")
    base = ["score", "--quiet", "--model", str(tiny_onnx), "--input", str(source), "--max-length", "16"]
    assert CliRunner().invoke(main, [*base, "--out", str(tmp_path / "o.parquet")]).exit_code == 0
    out = tmp_path / f"o{suffix}"
    result = CliRunner().invoke(main, [*base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = pl.read_csv(out) if suffix == ".csv" else pl.read_ndjson(out)
    expected = pl.read_parquet(tmp_path / "o.parquet")
    assert written.columns == expected.columns and written.height == 4
    assert written["label"].to_list() == expected["label"].to_list()  # the empty text: null in both
    assert np.allclose(written["confidence"].fill_null(-1).to_numpy(), expected["confidence"].fill_null(-1).to_numpy())
    again = CliRunner().invoke(main, [*base, "--out", str(out)])
    assert again.exit_code == 0 and "is already complete" in again.output
