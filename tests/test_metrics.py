"""xlc.metrics: one set of functions measures a self-training round and `xlc evaluate` alike."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc import metrics
from xlc.cli import main
from xlc.evaluate import EvaluateJob, evaluate, evaluate_scored

CLASSES = ("a", "b", "c")
SCORED = pl.DataFrame({
    "gold": ["a", "b", "a", "c", "b", "c"],
    "label": ["a", "b", "b", "c", "b", "a"],
    "lang": ["de", "de", "zh", "zh", "zh", "zh"],
})


def test_a_round_records_accuracy_macro_f1_confusion_and_a_summary_per_language():
    # de: all right; zh: a->b, c->c, b->b, c->a. Macro-F1 over the classes present in gold or predictions.
    assert metrics.evaluate(SCORED, CLASSES) == {
        "accuracy": pytest.approx(4 / 6),
        "macro_f1": pytest.approx((0.5 + 0.8 + 2 / 3) / 3),
        "n": 6,
        "confusion": [[1, 1, 0], [0, 2, 0], [1, 0, 1]],
        "per_lang": {
            "de": {"accuracy": 1.0, "macro_f1": 1.0, "n": 2},  # only a and b occur in de
            "zh": {"accuracy": 0.5, "macro_f1": pytest.approx((0 + 2 / 3 + 2 / 3) / 3), "n": 4},
        },
    }


def test_a_round_and_xlc_evaluate_give_the_same_numbers_on_the_same_predictions():
    recorded = metrics.evaluate(SCORED, CLASSES)
    reported = evaluate_scored(SCORED, CLASSES)
    assert reported == metrics.evaluate(SCORED, CLASSES, detail=True)
    assert {k: reported[k] for k in recorded if k != "per_lang"} == {k: v for k, v in recorded.items()
                                                                    if k != "per_lang"}
    assert recorded["per_lang"] == {lang: {k: r[k] for k in metrics.SUMMARY}
                                    for lang, r in reported["per_lang"].items()}
    for lang, r in reported["per_lang"].items():  # each language's full report is the same function's
        part = SCORED.filter(pl.col("lang") == lang)
        assert r == metrics.classification(part["gold"].to_list(), part["label"].to_list(), CLASSES, detail=True)


def test_no_rows_give_no_accuracy_rather_than_an_error():
    assert metrics.classification([], [], CLASSES) == {"accuracy": None, "macro_f1": None, "n": 0}


def test_a_frame_without_a_language_column_has_no_per_language_results():
    assert "per_lang" not in metrics.evaluate(SCORED.drop("lang"), CLASSES)


def test_pseudo_label_precision_counts_pseudo_labels_that_match_the_hidden_gold():
    selected = pl.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "c"]})
    gold = pl.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "a"]})
    assert metrics.pseudo_label_precision(selected, gold) == pytest.approx(2 / 3)
    assert metrics.pseudo_label_precision(selected, None) is None
    assert metrics.pseudo_label_precision(selected.head(0), gold) is None


def test_the_loop_and_xlc_evaluate_measure_through_the_same_function(tiny_model, demo_frame, tmp_path,
                                                                     monkeypatch):
    calls = []
    measure = metrics.evaluate

    def spy(scored, classes, **options):
        result = measure(scored, classes, **options)
        calls.append((scored, tuple(classes), options, result))
        return result

    monkeypatch.setattr(metrics, "evaluate", spy)
    rows = demo_frame.sort("text").select("text", "label", "lang")
    dev = pl.concat([rows.filter(pl.col("lang") == lang).head(15) for lang in ("deu_Latn", "zho_Hans")])
    dev_path = tmp_path / "dev.csv"
    dev.write_csv(dev_path)
    run = xlc.selftrain(train=rows.filter(pl.col("lang") == "eng_Latn").head(80),
                        unlabeled=rows.filter(pl.col("lang") == "deu_Latn").tail(10), dev=dev_path,
                        model=str(tiny_model), out=tmp_path / "run", epochs=1, batch_size=16, max_length=32,
                        max_rounds=0)
    assert len(calls) == 1
    loop_frame, classes, loop_options, loop_result = calls[0]
    assert loop_options == {}
    assert json.loads((run.out / "round-00" / "eval.json").read_text())["dev"] == loop_result
    assert set(loop_result["per_lang"]) == {"deu_Latn", "zho_Hans"}

    reported = evaluate(EvaluateJob(run.best_model, dev_path, max_length=32))
    assert len(calls) == 2
    _, evaluate_classes, evaluate_options, evaluate_result = calls[1]
    assert evaluate_classes == classes
    assert evaluate_options == {"detail": True, "ordinal": False}
    assert reported is evaluate_result  # plus the model and data paths

    # the loop's own predictions, measured as `xlc evaluate` measures them: the same numbers
    as_reported = evaluate_scored(loop_frame, classes)
    assert {k: as_reported[k] for k in ("accuracy", "macro_f1", "n", "confusion")} == \
        {k: loop_result[k] for k in ("accuracy", "macro_f1", "n", "confusion")}
    assert {lang: {k: r[k] for k in metrics.SUMMARY} for lang, r in as_reported["per_lang"].items()} == \
        loop_result["per_lang"]


def test_xlc_evaluate_refuses_a_table_with_no_rows(tiny_onnx, tmp_path):
    path = tmp_path / "empty.parquet"
    pl.DataFrame({"text": [], "label": []}, schema={"text": pl.String, "label": pl.String}).write_parquet(path)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_onnx), "--data", str(path)])
    assert result.exit_code != 0
    assert "no rows to evaluate (an empty table, or --lang matched no rows)" in result.output
    assert "Traceback" not in result.output
