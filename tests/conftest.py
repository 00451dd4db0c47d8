"""Shared fixtures: a tiny random encoder with the real tokenizer, and small real data files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from xlc import data
from xlc.model import build_tiny


@pytest.fixture(scope="session", autouse=True)
def users_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The session's $XLC_CACHE is its own (fixtures of any scope write the traced ONNX graphs of runs
    there, not into the user's cache); yields the user's."""
    with pytest.MonkeyPatch.context() as patch:
        users = os.environ.get("XLC_CACHE")
        patch.setenv("XLC_CACHE", str(tmp_path_factory.mktemp("xlc-cache-session")))
        yield users


@pytest.fixture(autouse=True)
def own_cache(request: pytest.FixtureRequest, users_cache: str | None, tmp_path_factory: pytest.TempPathFactory,
              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own $XLC_CACHE, so that no test sees the graphs another traced; the slow tests of the
    real default model use the user's, where it is converted once."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("XLC_CACHE", str(tmp_path_factory.mktemp("xlc-cache")))
    elif users_cache is None:
        monkeypatch.delenv("XLC_CACHE")
    else:
        monkeypatch.setenv("XLC_CACHE", users_cache)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with the real multilingual tokenizer."""
    return build_tiny(tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(scope="session")
def demo_frame() -> pl.DataFrame:
    return pl.read_parquet(data.demo_path())


def sample(frame: pl.DataFrame, lang: str, split: str, n: int) -> pl.DataFrame:
    rows = frame.filter((pl.col("lang") == lang) & (pl.col("split") == split))
    return rows.sort("text").head(n).select("text", "label", "lang")


def write_small_files(folder: Path, demo_frame: pl.DataFrame) -> dict[str, Path]:
    """English train (80), German pool with gold labels (60), dev (30) and test (30) as Parquet."""
    parts = {
        "train": sample(demo_frame, "eng_Latn", "train", 80),
        "unlabeled": sample(demo_frame, "deu_Latn", "train", 60),
        "dev": sample(demo_frame, "deu_Latn", "dev", 30),
        "test": sample(demo_frame, "deu_Latn", "test", 30),
    }
    paths = {}
    for name, frame in parts.items():
        paths[name] = folder / f"{name}.parquet"
        frame.write_parquet(paths[name])
    return paths


@pytest.fixture
def small_files(tmp_path: Path, demo_frame: pl.DataFrame) -> dict[str, Path]:
    return write_small_files(tmp_path, demo_frame)


@pytest.fixture(scope="module")
def module_files(tmp_path_factory: pytest.TempPathFactory, demo_frame: pl.DataFrame) -> dict[str, Path]:
    """The same small files, shared by the tests of one module."""
    return write_small_files(tmp_path_factory.mktemp("data"), demo_frame)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder with a 7-topic head, exported to ONNX (untrained, but deterministic)."""
    from xlc import model, onnx

    classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
    return onnx.export(model.from_base(str(tiny_model), classes), tmp_path_factory.mktemp("onnx") / "model")


@pytest.fixture
def traces(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files Optimum's exporter traced a model into, in order (a later round of a run is not traced:
    `xlc.onnx.rewrite`)."""
    import optimum.exporters.onnx as exporter

    called, real = [], exporter.export

    def counted(model, config, output, **kwargs):
        called.append(Path(output))
        return real(model, config, output, **kwargs)

    monkeypatch.setattr(exporter, "export", counted)
    return called
