"""The columns of scored texts (xlc/scoring/columns.py): `xlc score` and `xlc.score` give one shape,
keep a row of nulls for an empty text, and `--keep-columns` carries input columns into every format."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import xlc
from xlc import XlcError
from xlc.cli import main
from xlc.scoring import ScoreJob, Scorer, check_resumable
from xlc.scoring.job import plan_sources

TOLERANCE = {"check_exact": False, "abs_tol": 1e-5, "rel_tol": 0}
EMPTY = [2, 9, 15]
"""The rows of `reviews` whose text is empty, missing or blank."""


@pytest.fixture(scope="module")
def reviews(tmp_path_factory, demo_frame) -> tuple[pl.DataFrame, object]:
    """23 real texts with an id, a language, a number and a gold label; three texts empty."""
    rows = demo_frame.sample(23, seed=7)
    texts = rows["text"].to_list()
    texts[2], texts[9], texts[15] = "", None, "   "
    frame = pl.DataFrame({"review_id": [f"r{i:02d}" for i in range(23)], "text": texts, "lang": rows["lang"],
                          "stars": pl.Series(range(23), dtype=pl.Int32), "label": rows["label"]},
                         schema_overrides={"text": pl.String})
    path = tmp_path_factory.mktemp("reviews") / "reviews.parquet"
    frame.write_parquet(path)
    return frame, path


@pytest.fixture(scope="module")
def classes(tiny_onnx) -> tuple[str, ...]:
    return Scorer.open(tiny_onnx).classes


def score_cli(model, source, out, *extra):
    return CliRunner().invoke(main, ["score", "--quiet", "--model", str(model), "--input", str(source),
                                     "--out", str(out), *extra])


def read(path) -> pl.DataFrame:
    return {".parquet": pl.read_parquet, ".csv": pl.read_csv, ".jsonl": pl.read_ndjson}[path.suffix](path)


def test_the_command_and_the_python_api_give_the_same_columns_types_and_values(tiny_onnx, reviews, classes,
                                                                              tmp_path):
    frame, source = reviews
    result = score_cli(tiny_onnx, source, tmp_path / "scores.parquet", "--keep-columns", "all", "--chunk-size", "5")
    assert result.exit_code == 0, result.output
    written = pl.read_parquet(tmp_path / "scores.parquet")
    returned = xlc.score(tiny_onnx, source)
    predictions = ["label", "confidence", *(f"p_{c}" for c in classes)]
    assert returned.columns == ["review_id", "text", "lang", "stars", "gold", *predictions]
    assert written.columns == ["id", *returned.columns]  # the command adds only its id (here row numbers)
    assert written["id"].to_list() == list(range(frame.height))
    assert_frame_equal(written.drop("id"), returned, **TOLERANCE)  # types included: Float32 scores
    assert returned.schema["confidence"] == returned.schema[f"p_{classes[0]}"] == pl.Float32
    assert returned["gold"].to_list() == frame["label"].to_list()
    for every in (pl.all_horizontal, pl.any_horizontal):  # empty texts: all predictions null; others: none
        nulls = returned.select(every(pl.col(predictions).is_null()))[:, 0].to_list()
        assert [i for i, null in enumerate(nulls) if null] == EMPTY
    assert_frame_equal(xlc.load(tiny_onnx).score_frame(frame["text"]), returned.drop("review_id", "lang", "stars",
                                                                                     "gold"), **TOLERANCE)


def test_python_scoring_keeps_empty_texts_as_rows_of_nulls_where_predict_refuses_them(tiny_onnx):
    texts = ["Ein guter Text.", "", None, " \t", "Noch ein Text."]
    scored = xlc.score(tiny_onnx, texts)
    assert scored["text"].to_list() == texts
    assert scored["label"].is_null().to_list() == [False, True, True, True, False]
    assert scored["confidence"].is_null().to_list() == [False, True, True, True, False]
    with pytest.raises(XlcError, match="text #1 is empty"):  # scikit-learn's predict: one label per text
        xlc.load(tiny_onnx).predict(texts[:2])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_keep_columns_writes_the_named_columns_beside_the_scores_in_every_format(tiny_onnx, reviews, classes,
                                                                               tmp_path, suffix):
    frame, source = reviews
    out = tmp_path / f"scores{suffix}"
    result = score_cli(tiny_onnx, source, out, "--id-column", "review_id", "--keep-columns", "lang",
                       "--keep-columns", "stars,label", "--chunk-size", "4")
    assert result.exit_code == 0, result.output
    written = read(out)
    assert written.columns == ["id", "lang", "stars", "gold", "label", "confidence", *(f"p_{c}" for c in classes)]
    assert written["id"].to_list() == frame["review_id"].to_list()
    assert written["lang"].to_list() == frame["lang"].to_list()
    assert written["stars"].to_list() == frame["stars"].to_list()
    assert written["gold"].to_list() == frame["label"].to_list()
    assert [i for i, label in enumerate(written["label"].to_list()) if label is None] == EMPTY


def test_keep_columns_all_writes_the_id_column_once(tiny_onnx, reviews, classes, tmp_path):
    _, source = reviews
    result = score_cli(tiny_onnx, source, tmp_path / "s.parquet", "--id-column", "review_id", "--keep-columns", "all")
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "s.parquet").columns == [
        "id", "text", "lang", "stars", "gold", "label", "confidence", *(f"p_{c}" for c in classes)]


@pytest.mark.parametrize("columns, options, says", [
    ({"confidence": [0.5]}, ["--keep-columns", "all"],
     "input column 'confidence' clashes with the prediction column 'confidence'; leave it out of --keep-columns"),
    ({"p_travel": [0.5]}, ["--keep-columns", "p_travel"], "input column 'p_travel' clashes with the prediction"),
    ({"id": [7]}, ["--keep-columns", "id"], "clashes with the id column 'id' (row numbers; pass --id-column id"),
    ({"label": ["a"], "gold": ["b"]}, ["--keep-columns", "all"], "has both 'label' and 'gold' columns"),
    ({"lang": ["de"]}, ["--keep-columns", "langs"], "column 'langs' not found (columns: text, lang)"),
    ({"lang": ["de"]}, ["--keep-columns", "all,lang"], "--keep-columns all,lang: 'all' keeps every column; pass it "
                                                      "alone"),
])
def test_a_column_that_cannot_be_kept_is_named_before_anything_is_written(tiny_onnx, tmp_path, columns, options,
                                                                        says):
    source = tmp_path / "in.csv"
    pl.DataFrame({"text": ["ein Text"], **columns}).write_csv(source)
    result = score_cli(tiny_onnx, source, tmp_path / "out.parquet", *options)
    assert result.exit_code != 0 and says in result.output, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]  # no output, parts or lock


def test_a_list_column_is_kept_in_parquet_and_refused_for_csv(tiny_onnx, tmp_path):
    source = tmp_path / "in.parquet"
    pl.DataFrame({"text": ["ein Text", "noch einer"], "tags": [["a", "b"], []]}).write_parquet(source)
    result = score_cli(tiny_onnx, source, tmp_path / "out.csv", "--keep-columns", "tags")
    assert result.exit_code != 0
    assert "column 'tags' holds List(String), which CSV cannot hold; name --out *.parquet or *.jsonl" in result.output
    assert not (tmp_path / "out.csv").exists()
    assert score_cli(tiny_onnx, source, tmp_path / "out.parquet", "--keep-columns", "tags").exit_code == 0
    assert pl.read_parquet(tmp_path / "out.parquet")["tags"].to_list() == [["a", "b"], []]


def test_a_finished_output_with_other_kept_columns_is_not_taken_for_done(tiny_onnx, reviews, tmp_path):
    _, source = reviews
    out = tmp_path / "scores.csv"
    assert score_cli(tiny_onnx, source, out, "--keep-columns", "lang").exit_code == 0
    written = out.read_bytes()
    assert "is already complete" in score_cli(tiny_onnx, source, out, "--keep-columns", "lang").output
    for other in ([], ["--keep-columns", "lang,stars"], ["--keep-columns", "all"]):
        result = score_cli(tiny_onnx, source, out, *other)
        assert result.exit_code != 0 and "exists; pass --overwrite" in result.output, other
    assert out.read_bytes() == written
    assert score_cli(tiny_onnx, source, out, "--overwrite").exit_code == 0
    assert "lang" not in pl.read_csv(out).columns


def test_unfinished_parts_with_other_kept_columns_are_not_resumed(tiny_onnx, reviews, tmp_path):
    _, source = reviews
    manifest = tmp_path / "manifest.json"
    kept = ScoreJob(tiny_onnx, source, tmp_path / "out.parquet", keep_columns=("lang",))
    manifest.write_text(json.dumps(kept.fingerprint(tiny_onnx, [source], "local")))
    check_resumable(manifest, kept.fingerprint(tiny_onnx, [source], "local"), tmp_path)  # the same job resumes
    for other in ((), ("lang", "stars"), ("all",)):
        job = ScoreJob(tiny_onnx, source, tmp_path / "out.parquet", keep_columns=other)
        with pytest.raises(XlcError, match="unfinished run with a different keep_columns"):
            check_resumable(manifest, job.fingerprint(tiny_onnx, [source], "local"), tmp_path)
    plain = ScoreJob(tiny_onnx, source, tmp_path / "out.parquet")  # as written before --keep-columns existed
    assert "keep_columns" not in plain.fingerprint(tiny_onnx, [source], "local")


def test_input_files_must_agree_on_the_columns_they_keep(tiny_onnx, tmp_path, classes):
    pl.DataFrame({"text": ["a"], "stars": [4]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"text": ["b"], "stars": ["four"]}).write_csv(tmp_path / "b.csv")
    paths = [tmp_path / "a.parquet", tmp_path / "b.csv"]
    job = ScoreJob(tiny_onnx, tmp_path, tmp_path / "out", keep_columns=("stars",))
    with pytest.raises(XlcError, match=r"b.csv: the columns to keep \(stars String\) differ from those of --input "
                                       r".*a.parquet \(stars Int64\)"):
        plan_sources(job, paths, classes)
    sources = plan_sources(job, paths[:1], classes)
    assert sources[0].carried == (("stars", "stars"),)
