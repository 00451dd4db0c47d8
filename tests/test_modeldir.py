"""A model folder's tokenizer is parsed once per process and content, and sharing it stays correct."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xlc import model
from xlc.modeldir import FastTokenizer

TEXTS = ["A long sentence about the weather in Berlin, the trains and the price of bread " * 3,
         "今天天气很好，我们去公园散步吧，然后去吃晚饭。" * 2, "short"]


def test_copies_of_a_folder_share_one_parsed_tokenizer_and_a_changed_one_is_parsed_again(tiny_model, tmp_path):
    copy = Path(shutil.copytree(tiny_model, tmp_path / "copy"))
    assert FastTokenizer(copy).backend is FastTokenizer(tiny_model).backend
    assert model.load_tokenizer(copy) is model.load_tokenizer(tiny_model)

    changed = Path(shutil.copytree(tiny_model, tmp_path / "changed"))
    with (changed / "tokenizer.json").open("a", encoding="utf-8") as f:
        f.write("\n")  # other bytes, same meaning
    assert FastTokenizer(changed).backend is not FastTokenizer(tiny_model).backend
    assert model.load_tokenizer(changed) is not model.load_tokenizer(tiny_model)
    assert FastTokenizer(changed).encode(TEXTS, 12) == FastTokenizer(tiny_model).encode(TEXTS, 12)


def test_scorers_sharing_a_tokenizer_in_threads_each_get_their_own_max_length(tiny_model):
    short, long = FastTokenizer(tiny_model), FastTokenizer(tiny_model)
    expected = {8: short.encode(TEXTS, 8), 40: long.encode(TEXTS, 40)}
    assert expected[8] != expected[40] and max(map(len, expected[8])) == 8

    def encode(i: int) -> bool:
        length, tokenizer = (8, short) if i % 2 else (40, long)
        return tokenizer.encode(TEXTS, length) == expected[length]

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(encode, range(400)))


def test_a_saved_tokenizer_does_not_depend_on_what_the_shared_one_was_used_for(tiny_model, tmp_path):
    tokenizer = model.load_tokenizer(tiny_model)
    model.save_tokenizer(tokenizer, tmp_path / "before")
    tokenizer(TEXTS, truncation=True, max_length=8, padding="max_length")  # leaves both in the backend
    model.save_tokenizer(tokenizer, tmp_path / "after")
    assert (tmp_path / "after" / "tokenizer.json").read_bytes() == (tmp_path / "before" / "tokenizer.json").read_bytes()
