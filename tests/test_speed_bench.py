"""benchmarks/score_speed.py: one short run on the tiny model, real ORT sessions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import polars as pl
import pytest

from xlc import data, model, onnx

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"xlc_{name}_bench", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def score_speed():
    yield load_script("score_speed")
    sys.modules.pop("xlc_score_speed_bench", None)


@pytest.fixture(scope="module")
def tiny_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with PyTorch weights and, in onnx/, their export (as a round folder holds them)."""
    classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
    clf = dataclasses.replace(model.from_base(str(tiny_model), classes), max_length=32)
    folder = tmp_path_factory.mktemp("speed") / "model"
    clf.save(folder)
    onnx.export(clf, folder / "onnx")
    return folder


def test_one_cycle_times_each_variant_and_checks_it_against_ort_fp32(score_speed, tiny_run, tmp_path):
    out = tmp_path / "results" / "speed"
    only = ["eager-naive", "st-anchor", "ort-input-order", "ort-o2", "openvino"]
    result = score_speed.main(["--model", str(tiny_run), "--texts", "24", "--cycles", "1", "--batch-size", "8",
                               "--only", *only, "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text()) == result
    variants = result["variants"]
    assert list(variants) == ["eager-naive", "st-anchor", "ort-input-order", "ort-bucketed", "ort-o2", "openvino"]
    assert result["texts"] == 24 and result["max_length"] == 32 and len(result["load_average"]) == 1
    assert result["padded_tokens"]["length-sorted"] <= result["padded_tokens"]["input order"]
    for key in ("eager-naive", "st-anchor", "ort-input-order", "ort-bucketed", "ort-o2"):
        v = variants[key]
        assert v["status"] == "ok", v
        assert len(v["seconds"]) == 1 and v["texts_per_s"] > 0 and v["tokens_per_s"] > v["texts_per_s"]
        assert v["agreement"] == 1.0 and v["max_abs_prob_diff"] < 1e-4  # the same fp32 model everywhere
        assert v["vs_reference"]["min"] <= v["vs_reference"]["median"] <= v["vs_reference"]["max"]
        assert "vs_baseline" in v
    assert variants["ort-bucketed"]["max_abs_prob_diff"] == 0.0
    assert variants["eager-naive"]["vs_baseline"]["median"] == 1.0
    assert variants["openvino"]["status"] in ("ok", score_speed.NOT_INSTALLED)
    assert "attention" in result["notes"]["st-anchor"] and result["bf16"]["why"] in result["notes"]["st-anchor"]
    text = out.with_suffix(".md").read_text()
    assert "- command: `python benchmarks/score_speed.py --model" in text
    for v in variants.values():
        assert v["name"] in text


def test_a_folder_without_pytorch_weights_reports_the_eager_variants_as_not_run(score_speed, tiny_run, tmp_path):
    result = score_speed.main(["--model", str(tiny_run / "onnx"), "--texts", "8", "--cycles", "1",
                               "--only", "eager-sorted", "st-anchor", "--out", str(tmp_path / "speed")])
    for key in ("eager-sorted", "st-anchor"):
        assert result["variants"][key]["status"].startswith("no PyTorch weights"), result["variants"][key]
        assert "seconds" not in result["variants"][key]
    assert result["variants"]["ort-bucketed"]["status"] == "ok"
