"""Atomic writes: a file is written whole or not at all, and a failed write leaves no temp file."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from xlc import files, onnx, plots
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError

NOT_UTF8 = "half a surrogate: \ud800"  # str.encode("utf-8") fails after the file is opened


def leftovers(folder: Path) -> list[str]:
    """Temp files and folders an atomic write left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_file_replaces_the_target_only_when_the_block_ends(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with files.atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_a_failing_block_leaves_no_temp_file_and_the_target_untouched(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer broke"), files.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer broke")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_an_interrupted_block_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), files.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_failing_commit_leaves_no_temp_file_and_the_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def no_sync(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "fsync", no_sync)
    with pytest.raises(OSError, match="Input/output error"), files.atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_block_that_writes_nothing_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError), files.atomic_file(target):
        pass
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_stale_temp_file_is_replaced_and_a_stale_link_never_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not xlc's")
    folder = tmp_path / "out"
    folder.mkdir()
    files.temp_path(folder / "a.txt").write_text("left by a killed write")
    files.temp_path(folder / "b.txt").symlink_to(elsewhere)
    files.write_text(folder / "a.txt", "a")
    files.write_text(folder / "b.txt", "b")
    assert (folder / "a.txt").read_text() == "a"
    assert (folder / "b.txt").read_text() == "b" and not (folder / "b.txt").is_symlink()
    assert elsewhere.read_text() == "not xlc's"
    assert leftovers(folder) == []


# ------------------------------------------------------------ every writer goes through atomic_file


def test_write_text_that_fails_leaves_no_temp_file(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        files.write_text(target, NOT_UTF8)
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_write_toml_that_fails_leaves_no_temp_file(tmp_path):
    target = tmp_path / "config.toml"
    SelfTrainConfig().write_toml(target)
    before = target.read_bytes()
    with pytest.raises(UnicodeEncodeError):
        SelfTrainConfig(out=NOT_UTF8).write_toml(target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_save_png_whose_savefig_fails_leaves_no_temp_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = tmp_path / "accuracy.png"
    plots.save_png(plots.figure(), target)
    before = target.read_bytes()

    def half_written(self, fname, **kwargs):
        Path(fname).write_bytes(before[:20])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="No space left"):
        plots.save_png(plots.figure(), target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_write_parquet_that_fails_is_a_one_line_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    from xlc import data

    target = tmp_path / "scored.parquet"
    frame = pl.DataFrame({"id": [1, 2], "label": ["a", "b"]})
    data.write_parquet(frame, target)

    def half_written(self, file, *args, **kwargs):
        Path(file).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_written)
    with pytest.raises(XlcError, match=r"scored.parquet: cannot write \(No space left on device\)"):
        data.write_parquet(frame.head(1), target)
    assert pl.read_parquet(target).equals(frame)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [ValueError("bad graph"), KeyboardInterrupt()])
def test_quantize_int8_that_fails_leaves_no_temp_file(tiny_onnx, tmp_path, monkeypatch, failure):
    import onnxruntime.quantization

    folder = tmp_path / "model"
    shutil.copytree(tiny_onnx, folder)

    def half_written(model_input, model_output, **kwargs):
        Path(model_output).write_bytes(b"half a model")
        raise failure

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", half_written)
    with pytest.raises(XlcError if isinstance(failure, Exception) else KeyboardInterrupt):
        onnx.quantize_int8(folder)
    assert not (folder / onnx.INT8_FILE).exists() and not (folder / onnx.INT8_LOCK).exists()
    assert leftovers(folder) == []


def test_default_model_conversion_that_fails_leaves_no_temp_folder(tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel

    from xlc import default_model

    tiny = {"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 16}
    monkeypatch.setattr(default_model, "read_e5s1", lambda path: (tiny, {}))
    monkeypatch.setattr(default_model, "_bert_state_dict", lambda cfg, tensors: BertModel(
        BertConfig(**cfg, pad_token_id=1), add_pooling_layer=False).state_dict())

    def no_tokenizer():
        raise RuntimeError("tokenizer broke")

    monkeypatch.setattr(default_model, "build_tokenizer", no_tokenizer)
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        default_model.convert(models / default_model.NAME)
    assert list(models.iterdir()) == []
