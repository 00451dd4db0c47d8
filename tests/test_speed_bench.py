"""benchmarks/score_speed.py and round_split.py: one short run on the tiny model, real ORT sessions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

import polars as pl
import pytest

from xlc import data, model, onnx
from xlc.rundir import RunDir

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
    only = ["eager-naive", "st-anchor", "ort-input-order", "ort-int8", "openvino"]
    result = score_speed.main(["--model", str(tiny_run), "--texts", "24", "--cycles", "1", "--batch-size", "8",
                               "--only", *only, "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text()) == result
    variants = result["variants"]
    assert list(variants) == ["eager-naive", "st-anchor", "ort-input-order", "ort-bucketed", "ort-int8", "openvino"]
    assert result["texts"] == 24 and result["max_length"] == 32 and len(result["load_average"]) == 1
    assert result["padded_tokens"]["length-sorted"] <= result["padded_tokens"]["input order"]
    for key in ("eager-naive", "st-anchor", "ort-input-order", "ort-bucketed", "ort-int8"):
        v = variants[key]
        assert v["status"] == "ok", v
        assert len(v["seconds"]) == 1 and v["texts_per_s"] > 0 and v["tokens_per_s"] > v["texts_per_s"]
        assert v["vs_reference"]["min"] <= v["vs_reference"]["median"] <= v["vs_reference"]["max"]
        assert "vs_baseline" in v
        if key == "st-anchor" and result["bf16"]["native"]:  # bf16 autocast: 8 mantissa bits, not fp32's 23
            assert v["agreement"] >= 0.9 and v["max_abs_prob_diff"] < 1e-2, key
        elif key != "ort-int8":  # the same fp32 model everywhere
            assert v["agreement"] == 1.0 and v["max_abs_prob_diff"] < 1e-4, key
    assert 0 < variants["ort-int8"]["max_abs_prob_diff"] < 0.5 and 0.5 < variants["ort-int8"]["agreement"] <= 1
    assert variants["ort-int8"]["onnx_mb"] < variants["ort-bucketed"]["onnx_mb"]
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


def test_round_split_shares_and_targets(tmp_path):
    round_split = load_script("round_split")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.run_file.write_text("{}")
    timings = [{"train": 10.0, "export": 2.0, "evaluate": 1.0, "score": 4.0, "select": 0.5},
               {"train": 12.0, "export": 6.0, "evaluate": 1.0}]
    stamp = run.run_file.stat().st_mtime
    for number, phases in enumerate(timings):
        folder = run.round(number)
        folder.path.mkdir()
        folder.metrics.write_text(json.dumps({"labeled": 80, "pool": 60, "timings": phases}))
        stamp += sum(phases.values()) + 1.0  # one second outside the phases
        os.utime(folder.metrics, (stamp, stamp))
    rounds = round_split.split(run)
    assert [r["wall_seconds"] for r in rounds] == [18.5, 20.0]
    assert rounds[0]["share"]["score"] == pytest.approx(4 / 18.5, abs=1e-4)
    assert rounds[0]["other_seconds"] == pytest.approx(1.0)
    assert (rounds[0]["export_ok"], rounds[0]["score_ok"]) == (True, False)
    assert (rounds[1]["export_ok"], rounds[1]["score_ok"]) == (False, None)
    summary = round_split.summary([{"rounds": rounds}])
    assert summary[1]["seconds"] == {"train": 12.0, "export": 6.0, "evaluate": 1.0}
    assert "| 1 | - | 1 | 20.0 |" in round_split.markdown({
        "command": "c", "date": "d", "machine": {"cpu": "x", "cores": 2, "memory_gib": 1}, "versions": {},
        "cycles": [{"wall_seconds": 40.0, "outside_rounds_seconds": 1.5, "load_average_before": 0.0,
                    "load_average_after": 0.0, "rounds": rounds}], "summary": summary})
    # round 0 apart for a cold and a warm graph cache (the first run traces); later rounds over every cycle
    both = round_split.summary([{"graph_cache": "cold", "rounds": rounds}, {"graph_cache": "warm", "rounds": rounds}])
    assert [(s["round"], s["graph_cache"], s["cycles"]) for s in both] == [(0, "cold", 1), (0, "warm", 1), (1, "-", 2)]
