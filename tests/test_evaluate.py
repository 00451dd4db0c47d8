"""`xlc evaluate`: metrics against hand-computed values, and the command on the tiny ONNX model."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc.cli import main
from xlc.evaluate import classification_report, evaluate_scored, ordinal_errors

CLASSES = ("a", "b", "c")


def test_accuracy_macro_f1_per_class_and_confusion_match_hand_computed_values():
    gold = ["a", "a", "b", "b", "c", "c"]
    predicted = ["a", "b", "b", "b", "c", "a"]
    r = classification_report(gold, predicted, CLASSES)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    # a: 1 right, 1 wrongly predicted as a, 1 missed; b: 2 right, 1 false alarm; c: 1 right, 1 missed
    assert r["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows gold, columns predicted
    assert "mse" not in r


def test_a_class_never_predicted_nor_present_is_listed_but_left_out_of_macro_f1():
    r = classification_report(["a", "b"], ["a", "b"], CLASSES)
    assert r["accuracy"] == 1.0
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == 1.0  # averaged over a and b, as scikit-learn does; c would add a 0


def test_a_class_predicted_but_absent_from_gold_counts_in_macro_f1():
    r = classification_report(["a", "a"], ["a", "c"], CLASSES)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)  # a: P 1, R 0.5; c: a false alarm


def test_ordinal_mse_of_the_wrong_predictions_as_in_the_papers_table_2():
    stars = ("1", "2", "3", "4", "5")
    gold = ["1", "2", "3", "4", "5", "5"]
    predicted = ["1", "3", "3", "2", "5", "4"]
    # wrong: 2->3 (1), 4->2 (4), 5->4 (1): squared errors 1, 4, 1
    errors = ordinal_errors(gold, predicted, stars)
    assert errors == {"mse": pytest.approx(6 / 6), "mse_wrong": pytest.approx(6 / 3), "wrong": 3}
    r = classification_report(gold, predicted, stars, ordinal=True)
    assert r["mse_wrong"] == pytest.approx(2.0) and r["accuracy"] == pytest.approx(0.5)


def test_ordinal_with_no_mistakes_has_no_wrong_prediction_mse():
    assert ordinal_errors(["1", "2"], ["1", "2"], ("1", "2")) == {"mse": 0.0, "mse_wrong": None, "wrong": 0}


def test_ordinal_needs_numeric_class_names():
    with pytest.raises(xlc.XlcError, match="class 'a' is not a number"):
        ordinal_errors(["a"], ["b"], CLASSES)


def test_per_language_reports_when_a_frame_has_several_languages():
    scored = pl.DataFrame({
        "gold": ["a", "b", "a", "c"], "label": ["a", "b", "b", "c"], "lang": ["de", "de", "zh", "zh"],
    })
    r = evaluate_scored(scored, CLASSES)
    assert r["accuracy"] == 0.75
    assert r["per_lang"]["de"]["accuracy"] == 1.0
    assert r["per_lang"]["zh"]["accuracy"] == 0.5
    assert r["per_lang"]["zh"]["confusion"] == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    single = evaluate_scored(scored.filter(pl.col("lang") == "de"), CLASSES)
    assert "per_lang" not in single


@pytest.fixture
def labeled(tmp_path, demo_frame):
    rows = (demo_frame.filter(pl.col("split") == "test", pl.col("lang").is_in(["deu_Latn", "zho_Hans"]))
            .sort("text").head(40).select(pl.col("text").alias("sentence"), "label", "lang"))
    path = tmp_path / "test.csv"
    rows.write_csv(path)
    return path, rows


def evaluate_cli(*args: str):
    return CliRunner().invoke(main, ["evaluate", *args])


def test_cli_json_agrees_with_the_models_own_predictions(tiny_onnx, labeled):
    path, rows = labeled
    result = evaluate_cli("--model", str(tiny_onnx), "--data", str(path), "--text-column", "sentence",
                          "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    predicted = xlc.load(tiny_onnx).predict(rows["sentence"].to_list())
    gold = rows["label"].to_list()
    assert report["n"] == 40
    assert report["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold, strict=True)) / 40)
    assert sum(map(sum, report["confusion"])) == 40
    assert set(report["per_lang"]) == {"deu_Latn", "zho_Hans"}
    assert sum(v["n"] for v in report["per_lang"].values()) == 40
    assert report["classes"] == list(xlc.load(tiny_onnx).classes_)


def test_cli_table_and_language_filter(tiny_onnx, labeled):
    path, rows = labeled
    result = evaluate_cli("--model", str(tiny_onnx), "--data", str(path), "--text-column", "sentence",
                          "--lang", "zho_Hans")
    assert result.exit_code == 0, result.output
    for heading in ("accuracy", "macro-F1", "per class", "confusion matrix", "precision", "recall"):
        assert heading in result.output
    as_json = json.loads(evaluate_cli("--model", str(tiny_onnx), "--data", str(path), "--text-column",
                                      "sentence", "--lang", "zho_Hans", "--json").output)
    assert as_json["n"] == rows.filter(pl.col("lang") == "zho_Hans").height
    assert "per_lang" not in as_json


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--lang", "klingon"), "--lang klingon not found in column 'lang'"),
        (("--ordinal",), "--ordinal: class 'entertainment' is not a number"),
        (("--label-column", "lang"), "are not classes of the model"),
        (("--text-column", "body"), "column 'body' not found"),
    ],
)
def test_cli_mistakes_give_one_line_errors(tiny_onnx, labeled, extra, message):
    path, _ = labeled
    args = ["--model", str(tiny_onnx), "--data", str(path)]
    if "--text-column" not in extra:
        args += ["--text-column", "sentence"]
    result = evaluate_cli(*args, *extra)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("missing", [float("nan"), None], ids=["NaN", "null"])
def test_cli_a_missing_label_is_refused_naming_its_row(tiny_onnx, tmp_path, missing):
    path = tmp_path / "scores.parquet"
    pl.DataFrame({"text": ["gut", "schlecht", "mittel"], "label": [1.0, missing, 2.0]}).write_parquet(path)
    result = evaluate_cli("--model", str(tiny_onnx), "--data", str(path))
    assert result.exit_code != 0
    assert f"--data {path}: missing label (null or NaN) in column 'label' (data row 2)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_evaluate_reports_progress_up_to_every_row(tiny_onnx, labeled):
    from xlc.evaluate import EvaluateJob, evaluate

    path, _ = labeled
    seen: list[tuple[int, int]] = []
    evaluate(EvaluateJob(tiny_onnx, path, text_column="sentence", batch_size=16),
             progress=lambda done, total: seen.append((done, total)))
    assert seen == [(16, 40), (32, 40), (40, 40)]


def test_the_rate_column_shows_items_per_second_once_measured():
    from rich.progress import Progress

    from xlc.progress import RateColumn

    now = [0.0]
    progress = Progress(get_time=lambda: now[0])
    task = progress.add_task("score", total=1000)
    column = RateColumn("rows")
    assert column.render(progress.tasks[0]).plain == ""
    for _ in range(4):
        now[0] += 1.0
        progress.update(task, advance=250)
    assert column.render(progress.tasks[0]).plain == "250 rows/s"
