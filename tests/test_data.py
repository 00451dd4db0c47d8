"""Reading the user's files: formats, column checks and clear errors."""

from __future__ import annotations

import polars as pl
import pytest

from xlc import XlcError
from xlc.data import Columns, load_demo, load_files, read_table

FRAME = pl.DataFrame({"sentence": ["a b", "c d", "e f", "g h"], "y": [1, 0, 1, 0],
                      "lang": ["en"] * 4})


def write(frame: pl.DataFrame, path):
    writers = {".csv": frame.write_csv, ".parquet": frame.write_parquet, ".jsonl": frame.write_ndjson}
    writers[path.suffix](path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_format_reads_to_the_same_frame(tmp_path, suffix):
    assert read_table(write(FRAME, tmp_path / f"t{suffix}")).equals(FRAME)


def test_csv_with_quoted_newlines_keeps_the_text(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('text,label\n"line one\nline two",a\nplain,b\n')
    assert read_table(path)["text"].to_list() == ["line one\nline two", "plain"]


def test_unknown_extension_names_the_known_ones(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(XlcError, match=r"unknown file type '.xlsx'; use one of .csv"):
        read_table(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(XlcError, match=r"nope.csv: file not found"):
        read_table(tmp_path / "nope.csv")


def files(tmp_path, **frames):
    defaults = {name: FRAME for name in ("train", "unlabeled", "dev", "test")}
    defaults.update(frames)
    return {name: write(frame, tmp_path / f"{name}.csv") for name, frame in defaults.items()}


COLS = Columns(text="sentence", label="y")


def test_labels_become_strings_and_classes_are_sorted(tmp_path):
    paths = files(tmp_path)
    run = load_files(paths["train"], paths["unlabeled"], paths["dev"], paths["test"], COLS)
    assert run.classes == ("0", "1")
    assert run.pool.columns == ["id", "text", "lang"]
    assert run.pool_gold is not None and run.pool_gold["label"].to_list() == ["1", "0", "1", "0"]


def test_missing_column_lists_the_available_ones(tmp_path):
    paths = files(tmp_path)
    with pytest.raises(XlcError) as info:
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None, Columns(text="text", label="y"))
    assert "column 'text' not found (columns: sentence, y, lang)" in str(info.value)
    assert "--text-column" in str(info.value)


def test_empty_texts_are_reported_by_row(tmp_path):
    bad = FRAME.with_columns(pl.Series("sentence", ["ok", "  ", None, "fine"]))
    paths = files(tmp_path, unlabeled=bad)
    message = r"2 empty or missing text\(s\) in column 'sentence' \(data rows 2, 3\)"
    with pytest.raises(XlcError, match=message):
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None, COLS)


def test_dev_label_absent_from_train_is_rejected(tmp_path):
    paths = files(tmp_path, dev=FRAME.with_columns(pl.Series("y", [1, 0, 2, 0])))
    with pytest.raises(XlcError, match=r"label\(s\) \['2'\] do not occur in the training set"):
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None, COLS)


def test_single_class_training_set_is_rejected(tmp_path):
    paths = files(tmp_path, train=FRAME.with_columns(pl.lit(1).alias("y")))
    with pytest.raises(XlcError, match=r"training set has 1 class\(es\)"):
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None, COLS)


def test_duplicate_ids_are_rejected(tmp_path):
    paths = files(tmp_path, unlabeled=FRAME.with_columns(pl.Series("key", [1, 2, 2, 3])))
    with pytest.raises(XlcError, match=r"duplicate id 2 in column 'key'"):
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None,
                   Columns(text="sentence", label="y", id="key"))


def test_empty_file_is_rejected(tmp_path):
    paths = files(tmp_path, train=FRAME.clear())
    with pytest.raises(XlcError, match=r"--train .*train.csv: the file has no rows"):
        load_files(paths["train"], paths["unlabeled"], paths["dev"], None, COLS)


def test_demo_pool_is_the_target_languages_training_rows():
    run = load_demo(("deu_Latn",))
    assert run.train.height == 701 and set(run.train["lang"]) == {"eng_Latn"}
    assert run.pool.height == 701 and set(run.pool["lang"]) == {"deu_Latn"}
    assert (run.dev.height, run.test.height) == (99, 204)
    assert len(run.classes) == 7


def test_unknown_demo_language_lists_the_choices():
    with pytest.raises(XlcError, match=r"unknown language\(s\) \['xx'\]; choose from deu_Latn"):
        load_demo(("xx",))
