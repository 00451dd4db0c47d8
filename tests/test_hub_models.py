"""--model as a Hugging Face id (from the Hugging Face cache) and the text prefix E5 models expect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xlc import model
from xlc.errors import XlcError

CLASSES = ("neg", "pos")


def cache_with(tiny_model: Path, cache: Path, repo: str) -> Path:
    """A Hugging Face hub cache holding `tiny_model` as `repo`, laid out as huggingface_hub writes it."""
    commit = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny_model, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never the network in a test
    return tmp_path / "hub"


def test_a_hugging_face_id_loads_from_the_cache_with_the_e5_prefix(tiny_model, hub_cache, monkeypatch):
    snapshot = cache_with(tiny_model, hub_cache, "someone/tiny-e5-small")
    monkeypatch.chdir(hub_cache.parent)  # no local folder of that name
    assert model.check_base("someone/tiny-e5-small") == snapshot
    clf = model.from_base("someone/tiny-e5-small", CLASSES)
    assert clf.text_prefix == "query: "
    assert model.from_base("someone/tiny-e5-small", CLASSES, text_prefix="").text_prefix == ""


def test_an_id_that_is_not_cached_offline_says_where_it_looked(hub_cache):
    with pytest.raises(XlcError, match=r"--model 'someone/absent': not a local folder, not in the Hugging Face "
                                       r"cache \(.*hub\), and the download failed .*huggingface-cli download"):
        model.check_base("someone/absent")


@pytest.mark.parametrize(("name", "prefix"), [
    ("intfloat/multilingual-e5-base", "query: "), ("/models/my_e5_large", "query: "),
    ("xlm-roberta-base", ""), ("/models/bge-m3", ""), ("/models/de5-test", ""),
])
def test_the_default_prefix_follows_the_model_name(name, prefix):
    assert model.default_prefix(name) == prefix


@pytest.mark.parametrize(("config", "prefix"), [
    ({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}, "query: "),
    ({"prompts": {"classification": "Classify: ", "query": "q: "}, "default_prompt_name": "classification"},
     "Classify: "),
    ({"prompts": {}, "default_prompt_name": None}, ""),  # declares none: the name rule (no e5 here)
])
def test_a_sentence_transformers_folder_gives_its_prompt_as_prefix(tiny_model, tmp_path, config, prefix):
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_model, folder)
    (folder / model.ST_CONFIG).write_text(json.dumps(config))
    assert model.from_base(str(folder), CLASSES).text_prefix == prefix
