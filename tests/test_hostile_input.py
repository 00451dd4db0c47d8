"""Hostile input and hostile environments: each gets a clear error or a documented rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import xlc
from xlc import XlcError, model, onnx
from xlc.cli import main
from xlc.data import Columns, load_files, read_table
from xlc.scoring import ScoreJob, Scorer, score_file
from xlc.selectors.validate import check_selector


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
            "--out", str(full_disk / "scores.parquet"), "--chunk-size", "2000"]
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


# ------------------------------------------------------------------ the second hardening pass (issue 14)

def one_line_error(result) -> str:
    """The CLI failed with one line and no traceback; that line."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash with a traceback
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def score_cli(model_dir, source, output, *extra):
    return CliRunner().invoke(main, ["score", "--quiet", "--model", str(model_dir), "--input", str(source),
                                     "--out", str(output), *extra])


@pytest.mark.parametrize("name, content, says", [
    ("empty.csv", b"", "cannot be read as csv: the file is empty"),
    ("broken.jsonl", b'{"text": "a"}\n{"text": \n', "cannot be read as jsonl"),
    ("latin1.csv", b'text\n"caf\xe9"\nok\n', "cannot be read as csv: invalid utf-8"),
    ("numbers.csv", b"text\n1\n2\n", "column 'text' does not hold text"),
])
def test_score_refuses_an_unreadable_input_with_one_line(tiny_onnx, tmp_path, name, content, says):
    source = tmp_path / name
    source.write_bytes(content)
    output = one_line_error(score_cli(tiny_onnx, source, tmp_path / "out.parquet"))
    assert str(source) in output and says in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no output, parts or lock left


@pytest.mark.parametrize("name", ["header.csv", "zero.parquet"])
def test_score_of_an_input_without_rows_gives_an_output_without_rows(tiny_onnx, tmp_path, name):
    source = tmp_path / name
    if name.endswith(".csv"):
        source.write_text("text\n")
    else:
        pl.DataFrame(schema={"text": pl.String}).write_parquet(source)
    result = score_cli(tiny_onnx, source, tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    scores = pl.read_parquet(tmp_path / "out.parquet")
    classes = Scorer.open(tiny_onnx).classes
    assert scores.height == 0
    assert scores.columns == ["id", "label", "confidence", *(f"p_{c}" for c in classes)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out.parquet"])


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4])
def test_empty_texts_at_the_start_of_a_chunk_give_null_rows(tiny_onnx, tmp_path, chunk_size):
    texts = ["ein Text", None, "  ", "noch ein Text", "", "\t", "dritter Text"]
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": texts}, schema={"text": pl.String}).write_parquet(source)
    result = score_cli(tiny_onnx, source, tmp_path / "out.parquet", "--chunk-size", str(chunk_size))
    assert result.exit_code == 0, result.output
    scores = pl.read_parquet(tmp_path / "out.parquet")
    assert scores["id"].to_list() == list(range(len(texts)))
    assert scores["label"].is_null().to_list() == [t is None or not t.strip() for t in texts]


_PROPERTY_TEXTS = ["Die Regierung hat ein Gesetz beschlossen.", "Der Verein gewann das Spiel.", "Ein neues Album.",
                   "Forscher entdecken eine neue Art.", "Reisen nach Italien im Sommer."]


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.sampled_from(["", " ", "\t\n"]), st.sampled_from(_PROPERTY_TEXTS)),
                      max_size=12),
       chunk_size=st.integers(1, 13))
def test_score_gives_null_rows_for_empty_texts_and_real_scores_for_the_others(tiny_onnx, texts, chunk_size):
    scorer = _cached_scorer(tiny_onnx)
    with tempfile.TemporaryDirectory(dir=tiny_onnx.parent) as folder, \
            mock.patch.object(Scorer, "open", return_value=scorer):
        source, output = Path(folder) / "texts.parquet", Path(folder) / "scores.parquet"
        pl.DataFrame({"text": texts}, schema={"text": pl.String}).write_parquet(source)
        summary = score_file(ScoreJob(tiny_onnx, source, output, chunk_size=chunk_size, max_length=32))
        scores = pl.read_parquet(output)
        assert sorted(p.name for p in Path(folder).iterdir()) == ["scores.parquet", "texts.parquet"]
    empty = [t is None or not t.strip() for t in texts]
    assert scores.height == summary.rows == len(texts) and scores["id"].to_list() == list(range(len(texts)))
    assert scores["label"].is_null().to_list() == empty and summary.empty_texts == sum(empty)
    real = [t for t, e in zip(texts, empty, strict=True) if not e]
    if real:
        expected = scorer.probabilities(real, max_length=32)
        got = scores.filter(pl.col("label").is_not_null()).select(f"p_{c}" for c in scorer.classes).to_numpy()
        assert np.allclose(got, expected, atol=1e-5)


_SCORERS: dict = {}


def _cached_scorer(model_dir):
    if model_dir not in _SCORERS:
        _SCORERS[model_dir] = Scorer.open(model_dir)
    return _SCORERS[model_dir]


def test_max_length_above_the_models_positions_is_refused(tiny_onnx, tiny_model, small_files, tmp_path):
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": ["ein Text"]}).write_parquet(source)
    output = one_line_error(score_cli(tiny_onnx, source, tmp_path / "out.parquet", "--max-length", "100000"))
    assert "--max-length 100000" in output and "512" in output
    with pytest.raises(XlcError, match="--max-length 600: this model reads between 2 and 512 tokens"):
        xlc.load(tiny_onnx, max_length=600)
    out = tmp_path / "run"
    output = one_line_error(CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train", str(small_files["train"]),
        "--unlabeled", str(small_files["unlabeled"]), "--dev", str(small_files["dev"]), "--max-length", "600"]))
    assert "--max-length 600" in output and "at most 512" in output
    assert not out.exists()


def _selftrain(tiny_model, files, out, *extra):
    return CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train", str(files["train"]),
        "--unlabeled", str(files["unlabeled"]), "--dev", str(files["dev"]), "--epochs", "1", "--max-length", "16",
        *extra])


def test_a_nan_label_is_refused_naming_its_row(tiny_model, small_files, tmp_path):
    train = tmp_path / "float_labels.parquet"
    pl.DataFrame({"text": ["a", "b", "c"], "label": [1.0, float("nan"), 2.0]}).write_parquet(train)
    output = one_line_error(_selftrain(tiny_model, dict(small_files, train=train), tmp_path / "run"))
    assert f"--train {train}: missing label (null or NaN) in column 'label' (data row 2)" in output
    assert not (tmp_path / "run").exists()


def test_a_huge_kt_is_refused_before_round_0_trains(tiny_model, small_files, tmp_path):
    output = one_line_error(_selftrain(tiny_model, small_files, tmp_path / "run", "--kt", "99999999999999999999"))
    assert "selector 'balanced': option kt is too large: 99999999999999999999" in output
    assert not (tmp_path / "run").exists()


def test_a_null_id_in_the_pool_is_refused_before_training(tiny_model, small_files, tmp_path):
    pool = tmp_path / "pool.parquet"
    pl.DataFrame({"text": ["a", "b", "c"], "key": [1, None, 3]}).write_parquet(pool)
    output = one_line_error(_selftrain(tiny_model, dict(small_files, unlabeled=pool), tmp_path / "run",
                                       "--id-column", "key"))
    assert "missing id in column 'key' (data row 2)" in output
    assert not (tmp_path / "run").exists()


def test_a_pool_with_some_gold_labels_missing_is_accepted(small_files, tmp_path):
    pool = pl.read_parquet(small_files["unlabeled"])
    partly = tmp_path / "pool.parquet"
    pool.with_columns(pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("label")).alias("label")) \
        .write_parquet(partly)
    loaded = load_files(small_files["train"], partly, small_files["dev"], None, Columns())
    assert loaded.pool.height == pool.height
    assert loaded.pool_gold is not None and loaded.pool_gold.height == (pool.height + 1) // 2


def _truncate_onnx(folder):
    blob = (folder / onnx.ONNX_FILE).read_bytes()
    (folder / onnx.ONNX_FILE).write_bytes(blob[: len(blob) // 3])


def _edit_meta(change):
    def edit(folder):
        meta = json.loads((folder / "xlc.json").read_text())
        change(meta)
        (folder / "xlc.json").write_text(json.dumps(meta))
    return edit


@pytest.mark.parametrize("damage, says", [
    (_truncate_onnx, "ONNX Runtime cannot load it"),
    (lambda folder: (folder / "xlc.json").write_text("{not json"), "xlc.json: not valid JSON"),
    (_edit_meta(lambda meta: meta.update(classes=meta["classes"][:3])), "outputs 7 scores per text but xlc.json"),
    (_edit_meta(lambda meta: meta["classes"].__setitem__(1, meta["classes"][0])), "occur twice"),
    (lambda folder: (folder / "tokenizer.json").write_text("{}"), "tokenizer.json"),
], ids=["truncated-onnx", "invalid-xlc-json", "class-count", "duplicate-classes", "broken-tokenizer"])
def test_a_damaged_model_folder_is_a_one_line_error(tiny_onnx, tmp_path, damage, says):
    folder = tmp_path / "model"
    shutil.copytree(tiny_onnx, folder)
    damage(folder)
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": ["ein Text"]}).write_parquet(source)
    output = one_line_error(score_cli(folder, source, tmp_path / "out.parquet"))
    assert says in output and "damaged" in output
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("command, says", [
    (["selftrain", "--seed", "99999999999999999999"], "--seed must be between 0 and 4294967295"),
    (["selftrain", "--seed", "-1"], "--seed must be between 0 and 4294967295"),
    (["selftrain", "--threads", "100000"], "--threads must be between 1 and 1024"),
    (["score", "--threads", "100000"], "--threads must be between 1 and 1024"),
    (["score", "--chunk-size", "99999999999999999999"], "--chunk-size must be between 1 and 10000000"),
])
def test_out_of_range_options_are_refused_before_any_work(tiny_onnx, tmp_path, command, says):
    source = tmp_path / "texts.parquet"
    pl.DataFrame({"text": ["ein Text"]}).write_parquet(source)
    where = (["--out", str(tmp_path / "run")] if command[0] == "selftrain" else
             ["--model", str(tiny_onnx), "--input", str(source), "--out", str(tmp_path / "out.parquet")])
    output = one_line_error(CliRunner().invoke(main, [*command, "--quiet", *where]))
    assert says in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.parquet"]


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'epochs = 1\nout = "caf\xe9"\n')
    output = one_line_error(CliRunner().invoke(main, ["selftrain", "--config", str(config)]))
    assert f"--config {config}: not UTF-8 text" in output


@pytest.mark.parametrize("options, says", [
    ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
    ({"threads": 0}, "threads must be a whole number >= 1"),
    ({"threads": 100000}, "threads must be <= 1024"),
])
def test_load_refuses_bad_options(tiny_onnx, options, says):
    with pytest.raises(XlcError, match=says):
        xlc.load(tiny_onnx, **options)


@pytest.mark.parametrize("texts, says", [
    (pl.DataFrame({"text": ["a"], "label": ["x"], "gold": ["y"]}), "both 'label' and 'gold'"),
    (pl.DataFrame({"text": ["a"], "confidence": [0.5]}), "input column 'confidence' clashes with the prediction "
                                                         "column 'confidence'; rename or drop it"),
    (["ein Text", 3], "text #1 is a int, not a string"),
])
def test_score_api_refuses_ambiguous_or_non_text_input(tiny_onnx, texts, says):
    with pytest.raises(XlcError, match=says):
        xlc.score(tiny_onnx, texts)


def test_errors_that_are_not_about_disk_space_do_not_advise_freeing_space(tiny_model, tmp_path):
    weightless = tmp_path / "weightless"
    model.from_base(str(tiny_model), ("a", "b")).save(weightless)
    (weightless / "model.safetensors").unlink()
    output = one_line_error(CliRunner().invoke(main, ["export", "--model", str(weightless),
                                                      "--out", str(tmp_path / "out")]))
    assert "free some space" not in output
    assert not (tmp_path / "out").exists()


def test_int8_on_a_read_only_model_folder_is_a_one_line_error(tiny_onnx, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        shutil.copytree(tiny_onnx, folder / "model")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        source = tmp_path / "texts.parquet"
        pl.DataFrame({"text": ["ein Text"]}).write_parquet(source)
        output = one_line_error(score_cli(folder / "model", source, tmp_path / "out.parquet", "--int8"))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert "cannot write model.int8.onnx there (Read-only file system)" in output
    assert "fix the permissions" in output and "free some space" not in output


def test_a_plugin_option_check_that_crashes_is_named_not_a_traceback():
    def crashing(value):
        raise ZeroDivisionError("division by zero")

    selector = xlc.Selector("fragile", lambda pool, options, context: pool,
                            options=(xlc.Option("k", int, 1, check=crashing),))
    with pytest.raises(XlcError, match=r"selector 'fragile': the check of option k failed on 1 "
                                       r"\(ZeroDivisionError: division by zero\)"):
        check_selector(selector)


def test_an_input_changed_under_an_unfinished_run_is_named_without_advising_resume(tiny_model, small_files,
                                                                                 tmp_path):
    out = tmp_path / "run"
    result = _selftrain(tiny_model, small_files, out, "--max-rounds", "0")
    assert result.exit_code == 0, result.output
    (out / "report.json").unlink()  # as if killed before the end
    pl.read_parquet(small_files["train"]).head(60).write_parquet(small_files["train"])
    output = one_line_error(_selftrain(tiny_model, small_files, out, "--max-rounds", "0"))
    assert f"and the train file ({small_files['train']}) changed on disk since it started" in output
    assert "--resume" not in output
