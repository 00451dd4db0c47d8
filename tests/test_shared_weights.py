"""A run stores the frozen word-embedding table once: its rounds' models hard-link one file, and each
model folder still loads on its own with xlc, Transformers, Optimum and the onnx library."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx as onnx_lib
import pytest
import torch

import xlc
from xlc import model, onnx
from xlc.model import REST_FILE, TABLE_FILE
from xlc.onnx import ONNX_DATA, ONNX_FILE

TEXTS = ["Der Bundestag hat das Gesetz beschlossen.", "Le match s'est terminé sur un score nul."]


def nudge(clf: model.Classifier, seed: int, table: bool = False) -> None:
    """Change the weights as a round of training would: all but the word-embedding table, unless `table`."""
    name = model.table_name(clf.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in clf.model.named_parameters():
            if table or key != name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def save_round(clf: model.Classifier, folder: Path, earlier: list[Path]) -> tuple[Path, Path]:
    """A round's checkpoint and ONNX model, saved as the loop saves them."""
    clf.save(folder / "model", reuse=[f / "model" for f in earlier])
    onnx.export(clf, folder / "onnx", reuse=[f / "onnx" for f in earlier])
    return folder / "model", folder / "onnx"


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def probabilities(checkpoint: Path, onnx_folder: Path) -> list[np.ndarray]:
    """The same texts through xlc (ONNX Runtime), Transformers' Auto class, and Optimum in a pipeline."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    clf = xlc.load(onnx_folder, max_length=32)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    found = [clf.predict_proba(TEXTS)]
    for loaded in (AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True),
                   ORTModelForSequenceClassification.from_pretrained(onnx_folder)):
        rows = pipeline("text-classification", model=loaded, tokenizer=tokenizer)(
            TEXTS, truncation=True, max_length=32, top_k=None)
        found.append(np.array([[next(d["score"] for d in row if d["label"] == c) for c in clf.classes_]
                               for row in rows]))
    torch_clf = model.load(checkpoint)
    found.append(model.predict(torch_clf, TEXTS, 32))
    return found


def build_two_rounds(tiny_model: Path, folder: Path) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
    """Two rounds' models of one run, the table frozen: round 1 trained further than round 0."""
    clf = model.from_base(str(tiny_model), ("a", "b", "c"))
    nudge(clf, 0)
    first = save_round(clf, folder / "round-00", [])
    nudge(clf, 1)
    return first, save_round(clf, folder / "round-01", [folder / "round-00"])


@pytest.fixture(scope="module")
def two_rounds(tiny_model, tmp_path_factory):
    return build_two_rounds(tiny_model, tmp_path_factory.mktemp("shared"))


def test_two_rounds_share_the_table_file_and_the_onnx_graph_but_not_their_other_weights(two_rounds):
    (model_0, onnx_0), (model_1, onnx_1) = two_rounds
    assert inode(model_0 / TABLE_FILE) == inode(model_1 / TABLE_FILE)
    assert inode(onnx_0 / ONNX_FILE) == inode(onnx_1 / ONNX_FILE)  # the graph and the table
    assert inode(model_0 / REST_FILE) != inode(model_1 / REST_FILE)
    assert (model_0 / REST_FILE).read_bytes() != (model_1 / REST_FILE).read_bytes()
    for folder in (onnx_0, onnx_1):  # external data that the onnx library agrees to read: one link
        assert os.stat(folder / ONNX_DATA).st_nlink == 1


def test_each_rounds_model_loads_alike_through_xlc_transformers_and_optimum(two_rounds):
    (model_0, onnx_0), (model_1, onnx_1) = two_rounds
    first, second = probabilities(model_0, onnx_0), probabilities(model_1, onnx_1)
    for found in (first, second):
        for other in found[1:]:
            assert np.allclose(other, found[0], atol=1e-5)
    assert not np.allclose(first[0], second[0], atol=1e-3)  # two different models, one table
    loaded = onnx_lib.load(str(onnx_1 / ONNX_FILE))  # external data and all
    onnx_lib.checker.check_model(loaded)


def test_pruning_one_round_leaves_the_other_loadable_with_its_own_link(tiny_model, tmp_path):
    (model_0, _), (model_1, onnx_1) = build_two_rounds(tiny_model, tmp_path)
    before = probabilities(model_1, onnx_1)
    shutil.rmtree(model_0.parent)
    graph = os.stat(onnx_1 / ONNX_FILE)
    cached = sum(os.stat(p).st_ino == graph.st_ino for p in onnx.graph_cache().glob(f"*/*/{ONNX_FILE}"))
    assert os.stat(model_1 / TABLE_FILE).st_nlink == 1 and graph.st_nlink == 1 + cached  # + the graph cache's
    for was, now in zip(before, probabilities(model_1, onnx_1), strict=True):
        assert np.array_equal(was, now)


def test_a_trained_word_embedding_table_is_written_as_a_file_of_its_own(tiny_model, tmp_path):
    clf = model.from_base(str(tiny_model), ("a", "b"))
    model_0, onnx_0 = save_round(clf, tmp_path / "round-00", [])
    nudge(clf, 1, table=True)
    model_1, onnx_1 = save_round(clf, tmp_path / "round-01", [tmp_path / "round-00"])
    assert inode(model_0 / TABLE_FILE) != inode(model_1 / TABLE_FILE)
    assert inode(onnx_0 / ONNX_FILE) != inode(onnx_1 / ONNX_FILE)
    table = clf.model.get_input_embeddings().weight
    assert torch.equal(model.load(model_1).model.get_input_embeddings().weight, table)


def test_a_standalone_save_or_export_keeps_one_weights_file(tiny_model, tmp_path):
    """Only a run's rounds split their weights; `xlc export` and a plain save write one file each."""
    clf = model.from_base(str(tiny_model), ("a", "b"))
    clf.save(tmp_path / "saved")
    onnx.export(clf, tmp_path / "exported")
    assert (tmp_path / "saved" / "model.safetensors").is_file() and not (tmp_path / "saved" / TABLE_FILE).exists()
    assert not (tmp_path / "exported" / ONNX_DATA).exists()


def test_a_finished_runs_models_share_one_table_and_read_with_the_onnx_library(tiny_model, module_files,
                                                                                 tmp_path, traces):
    """best/ and final/ hard-link the rounds' checkpoints and model.onnx, but hold their own external data;
    round 1 was not traced, only its weights written into round 0's graph (test_round_export.py)."""
    out = tmp_path / "run"
    xlc.selftrain(**{r: module_files[r] for r in ("train", "unlabeled", "dev")}, model=str(tiny_model),
                  out=out, epochs=1, batch_size=16, max_length=32, max_rounds=1, patience=5,
                  selector="throttling", selector_options={"n": 7})
    assert [p.parent.parent.name for p in traces] == ["round-00"]
    folders = [out / "best", out / "final", out / "round-00" / "model", out / "round-01" / "model"]
    assert len({inode(f / TABLE_FILE) for f in folders if f.is_dir()}) == 1
    assert inode(out / "best" / ONNX_FILE) == inode(out / "final" / ONNX_FILE)
    for folder in (out / "best", out / "final"):
        assert os.stat(folder / ONNX_DATA).st_nlink == 1
        onnx_lib.load(str(folder / ONNX_FILE))
        assert len(xlc.load(folder, int8=True).predict(TEXTS)) == len(TEXTS)
    assert not any((out / f"round-0{n}" / "onnx").exists() for n in (0, 1))


def test_a_run_with_trainable_embeddings_writes_each_rounds_table(tiny_model, module_files, tmp_path):
    out = tmp_path / "run"
    xlc.selftrain(**{r: module_files[r] for r in ("train", "unlabeled", "dev")}, model=str(tiny_model),
                  out=out, epochs=1, batch_size=16, max_length=32, max_rounds=1, patience=5,
                  selector="throttling", selector_options={"n": 7}, freeze_embeddings=False,
                  keep_round_models=True)
    rounds = [out / f"round-0{n}" for n in (0, 1)]
    assert inode(rounds[0] / "model" / TABLE_FILE) != inode(rounds[1] / "model" / TABLE_FILE)
    assert inode(rounds[0] / "onnx" / ONNX_FILE) != inode(rounds[1] / "onnx" / ONNX_FILE)
    for rnd in rounds:
        assert np.allclose(xlc.load(rnd / "onnx", max_length=32).predict_proba(TEXTS),
                           model.predict(model.load(rnd / "model"), TEXTS, 32), atol=1e-5)
