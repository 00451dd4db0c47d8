"""A run's later rounds export without tracing: the earlier round's graph and table (model.onnx, hard-linked)
and the round's own weights written where the weights map (onnx_weights.json) says; the same files as a
full export, or a full export where that cannot be vouched for."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_shared_weights import TEXTS, nudge

import xlc
from xlc import model, onnx
from xlc.onnx import ONNX_DATA, ONNX_FILE, WEIGHTS_GRAPH, WEIGHTS_MAP


def trained(tiny_model: Path, seed: int = 0) -> model.Classifier:
    """A classifier with weights as after training: no two alike (a fresh model's LayerNorms are all ones)."""
    clf = model.from_base(str(tiny_model), ("a", "b", "c"))
    nudge(clf, seed)
    return clf


@pytest.fixture(scope="module")
def first_round(tiny_model, tmp_path_factory) -> Path:
    """Round 0 of a run, exported in full (`trained(tiny_model)`), with its weights map."""
    folder = tmp_path_factory.mktemp("run") / "round-00"
    onnx.export(trained(tiny_model), folder, reuse=[])
    assert (folder / WEIGHTS_MAP).is_file()
    return folder


def agrees_with_pytorch(folder: Path, clf: model.Classifier) -> bool:
    return np.allclose(xlc.load(folder, max_length=32).predict_proba(TEXTS), model.predict(clf, TEXTS, 32),
                       atol=1e-5)


def test_a_later_round_writes_the_files_a_full_export_writes_without_tracing(tiny_model, first_round, tmp_path,
                                                                            traces):
    clf = trained(tiny_model)
    nudge(clf, 1)
    fast, full = tmp_path / "round-01", tmp_path / "full"
    onnx.export(clf, fast, reuse=[first_round])
    assert traces == []
    onnx.export(clf, full, reuse=[])  # the same weights, traced
    for name in (ONNX_FILE, ONNX_DATA, WEIGHTS_MAP, WEIGHTS_GRAPH, "tokenizer.json", "config.json", "xlc.json"):
        assert (fast / name).read_bytes() == (full / name).read_bytes(), name
    assert os.stat(fast / ONNX_FILE).st_ino == os.stat(first_round / ONNX_FILE).st_ino
    assert os.stat(fast / ONNX_DATA).st_nlink == 1
    assert agrees_with_pytorch(fast, clf)


def test_a_runs_round_0_uses_the_graph_an_earlier_run_traced(tiny_model, tmp_path, traces):
    first = tmp_path / "run-a" / "round-00"
    onnx.export(trained(tiny_model), first, reuse=[])  # traced, and kept in $XLC_CACHE
    (kept,) = onnx.cached_graphs(json.loads((first / WEIGHTS_MAP).read_text())["graph"])
    assert os.stat(kept / ONNX_FILE).st_ino == os.stat(first / ONNX_FILE).st_ino  # a hard link: no extra disk
    clf = model.from_base(str(tiny_model), ("neg", "neu", "pos"))  # other class names: the same graph
    nudge(clf, 1)
    later = tmp_path / "run-b" / "round-00"
    onnx.export(clf, later, reuse=[])
    assert len(traces) == 1  # only the first run traced
    assert json.loads((later / "config.json").read_text())["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert agrees_with_pytorch(later, clf)
    assert onnx.cached_graphs(json.loads((later / WEIGHTS_MAP).read_text())["graph"]) == [kept]


def test_a_cache_that_cannot_be_written_costs_only_the_trace(tiny_model, tmp_path, traces, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("the user's file\n")
    monkeypatch.setenv("XLC_CACHE", str(blocked))
    for run in ("run-a", "run-b"):
        onnx.export(trained(tiny_model), tmp_path / run / "round-00", reuse=[])
    assert len(traces) == 2
    assert blocked.read_text() == "the user's file\n"
    assert agrees_with_pytorch(tmp_path / "run-b" / "round-00", trained(tiny_model))


def test_a_model_with_weights_of_equal_values_gets_no_map_and_is_exported_in_full(tiny_model, tmp_path, traces):
    """A fresh model's LayerNorm weights are all ones: the exporter may merge them, so values cannot tell
    which tensor is which weight, and a later round's graph may differ."""
    clf = model.from_base(str(tiny_model), ("a", "b"))
    onnx.export(clf, tmp_path / "round-00", reuse=[])
    assert not (tmp_path / "round-00" / WEIGHTS_MAP).exists()
    nudge(clf, 1)
    onnx.export(clf, tmp_path / "round-01", reuse=[tmp_path / "round-00"])
    # round 0: traced with a stand-in table, which gets no map either, then in full; round 1 (its weights
    # nudged apart) has no map to rewrite with, so it traces with the stand-in and gets one
    assert len(traces) == 3 and (tmp_path / "round-01" / WEIGHTS_MAP).is_file()
    assert agrees_with_pytorch(tmp_path / "round-01", clf)


def test_a_trained_word_embedding_table_is_exported_in_full(tiny_model, first_round, tmp_path, traces):
    clf = trained(tiny_model)
    nudge(clf, 1, table=True)
    onnx.export(clf, tmp_path / "round-01", reuse=[first_round])
    assert len(traces) == 1
    assert os.stat(tmp_path / "round-01" / ONNX_FILE).st_ino != os.stat(first_round / ONNX_FILE).st_ino  # its own
    assert agrees_with_pytorch(tmp_path / "round-01", clf)


def test_a_rewritten_model_that_scores_apart_from_pytorch_is_exported_in_full(tiny_model, first_round, tmp_path,
                                                                             traces, caplog):
    earlier = tmp_path / "round-00"
    shutil.copytree(first_round, earlier)
    layout = json.loads((earlier / WEIGHTS_MAP).read_text())
    query, key = (next(e for e in layout["tensors"] if e["weight"] == f"encoder.encoder.layer.0.attention.self.{n}")
                  for n in ("query.weight", "key.weight"))
    query["weight"], key["weight"] = key["weight"], query["weight"]  # a wrong map of the right shapes
    (earlier / WEIGHTS_MAP).write_text(json.dumps(layout))
    clf = trained(tiny_model)
    nudge(clf, 1)
    with caplog.at_level(logging.WARNING, logger="xlc.onnx"):
        onnx.export(clf, tmp_path / "round-01", reuse=[earlier])
    assert "exporting it in full" in caplog.text
    assert len(traces) == 1
    assert agrees_with_pytorch(tmp_path / "round-01", clf)


def test_xlc_export_traces_and_writes_no_weights_map(tiny_model, first_round, tmp_path, traces):
    onnx.export(trained(tiny_model), tmp_path / "exported", kind="export")
    assert len(traces) == 1 and not (tmp_path / "exported" / WEIGHTS_MAP).exists()


def test_a_rounds_scorer_opens_its_weights_graph_and_scores_exactly_as_model_onnx(tiny_model, first_round, tmp_path):
    """The graph reads the table as external data (fast to open); the session is the same model."""
    from xlc.scoring import Scorer

    clf = trained(tiny_model)
    nudge(clf, 1)
    onnx.export(clf, tmp_path / "round-01", reuse=[first_round])
    for folder in (first_round, tmp_path / "round-01"):  # traced; rewritten
        fast = Scorer.open(folder, graph=True)
        assert fast.session._model_path == str(folder / WEIGHTS_GRAPH)  # ORT keeps the path it opened
        np.testing.assert_array_equal(fast.probabilities(TEXTS, max_length=32),
                                      Scorer.open(folder).probabilities(TEXTS, max_length=32))


def test_without_a_usable_weights_graph_the_scorer_opens_model_onnx(tiny_model, first_round, tmp_path):
    from xlc.scoring import Scorer

    onnx.export(trained(tiny_model), tmp_path / "exported", kind="export")  # `xlc export`: no weights graph
    broken = tmp_path / "broken"
    shutil.copytree(first_round, broken)
    (broken / WEIGHTS_GRAPH).write_bytes(b"not a graph")
    for folder in (tmp_path / "exported", broken):
        scorer = Scorer.open(folder, graph=True)
        assert scorer.session._model_path == str(folder / ONNX_FILE)
        assert scorer.probabilities(TEXTS, max_length=32).shape == (len(TEXTS), 3)


def test_optimizing_a_rounds_split_model_keeps_it_whole_and_drops_the_files_of_the_old_one(first_round, tmp_path):
    from xlc.scoring import Scorer

    folder = tmp_path / "round"
    shutil.copytree(first_round, folder)
    onnx.optimize(folder, "O1")  # the weights were split over model.onnx and model.onnx_data: now one file
    assert not any((folder / name).exists() for name in (WEIGHTS_GRAPH, WEIGHTS_MAP, ONNX_DATA))
    scorer = Scorer.open(folder, graph=True)
    assert scorer.session._model_path == str(folder / ONNX_FILE)
    np.testing.assert_allclose(scorer.probabilities(TEXTS, max_length=32),
                               Scorer.open(first_round).probabilities(TEXTS, max_length=32), atol=1e-5)


@pytest.fixture
def table_rows(monkeypatch) -> list[int]:
    """The rows of the word-embedding table each call of Optimum's exporter traced, in order."""
    import optimum.exporters.onnx as exporter

    rows, real = [], exporter.export

    def recorded(model, config, output, **kwargs):
        rows.append(model.get_input_embeddings().weight.shape[0])
        return real(model, config, output, **kwargs)

    monkeypatch.setattr(exporter, "export", recorded)
    return rows


def test_a_run_traces_with_a_stand_in_table_and_writes_the_files_a_full_trace_writes(tiny_model, tmp_path,
                                                                                    table_rows, monkeypatch):
    clf = trained(tiny_model)
    onnx.export(clf, tmp_path / "stand-in", reuse=[])
    assert table_rows == [onnx.STAND_IN_ROWS]
    monkeypatch.setattr(onnx, "trace_with_stand_in", lambda *args: False)
    monkeypatch.setenv("XLC_CACHE", str(tmp_path / "another-cache"))  # no graph to write round 0 into
    onnx.export(clf, tmp_path / "full", reuse=[])
    assert table_rows[1] == clf.model.get_input_embeddings().weight.shape[0] > onnx.STAND_IN_ROWS
    for name in (ONNX_FILE, ONNX_DATA, WEIGHTS_MAP, WEIGHTS_GRAPH, "config.json", "xlc.json"):
        assert (tmp_path / "stand-in" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert clf.model.config.vocab_size == table_rows[1]  # the model is as it was
    assert agrees_with_pytorch(tmp_path / "stand-in", clf)


def test_a_stand_in_export_that_scores_apart_from_pytorch_is_traced_in_full(tiny_model, tmp_path, table_rows,
                                                                           monkeypatch):
    real = onnx.split
    monkeypatch.setattr(onnx, "split", lambda *args, stand_in=False: real(*args))  # the stand-in table stays in
    clf = trained(tiny_model)
    onnx.export(clf, tmp_path / "round-00", reuse=[])
    assert table_rows == [onnx.STAND_IN_ROWS, clf.model.get_input_embeddings().weight.shape[0]]
    assert (tmp_path / "round-00" / WEIGHTS_MAP).is_file()
    assert agrees_with_pytorch(tmp_path / "round-00", clf)
