"""`TextClassifier` keeps scikit-learn's conventions: score(X, y) is accuracy, clone works, inputs of any array kind."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone, is_classifier
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

import xlc

PARAMS = ["batch_size", "int8", "max_length", "path", "provider", "threads"]


@pytest.fixture(scope="module")
def texts(demo_frame) -> list[str]:
    return demo_frame.filter(pl.col("lang") == "deu_Latn").sort("text").head(12)["text"].to_list()


@pytest.fixture(scope="module")
def clf(tiny_onnx):
    return xlc.load(tiny_onnx, batch_size=4, threads=1)


def test_get_params_returns_the_constructor_arguments_as_given(clf, tiny_onnx):
    params = clf.get_params()
    assert sorted(params) == PARAMS
    assert params["path"] == tiny_onnx and params["batch_size"] == 4 and params["threads"] == 1
    assert params["max_length"] is None  # not given: the model's own length is used ...
    assert clf.max_length_ == 128  # ... which tiny_onnx (never trained) does not record
    assert is_classifier(clf)
    check_is_fitted(clf)  # a loaded model counts as fitted


def test_clone_gives_an_equivalent_classifier_with_the_same_predictions(clf, texts):
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    assert list(twin.predict(texts)) == list(clf.predict(texts))
    assert np.array_equal(twin.predict_proba(texts), clf.predict_proba(texts))


def test_score_is_the_accuracy_against_the_labels(clf, texts):
    gold = list(clf.predict(texts))
    gold[:3] = [next(c for c in clf.classes_ if c != g) for g in gold[:3]]  # three wrong
    assert clf.score(texts, gold) == pytest.approx(accuracy_score(gold, clf.predict(texts))) == 0.75
    assert isinstance(clf.score(texts, gold), float)


def test_score_without_labels_names_the_method_that_returns_the_frame(clf, texts):
    with pytest.raises(xlc.XlcError, match=r"score_frame\(X\)"):
        clf.score(texts)
    frame = clf.score_frame(texts)
    assert frame.columns == ["text", "label", "confidence", *(f"p_{c}" for c in clf.classes_)]
    assert frame["label"].to_list() == list(clf.predict(texts))


def test_score_refuses_labels_of_another_length(clf, texts):
    with pytest.raises(xlc.XlcError, match="y has 2 labels for 12 texts"):
        clf.score(texts, ["travel", "sports"])


def test_set_params_checks_like_the_constructor_and_keeps_the_old_value_on_refusal(tiny_onnx, texts):
    clf = xlc.load(tiny_onnx)
    with pytest.raises(xlc.XlcError, match="xlc.load: batch_size must be a whole number >= 1, got 0"):
        clf.set_params(batch_size=0)
    assert clf.batch_size == 64
    assert clf.set_params(batch_size=3, max_length=16) is clf
    assert (clf.batch_size, clf.max_length, clf.max_length_) == (3, 16, 16)
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(batch=3)


def test_fit_says_that_training_is_selftrain(clf, texts):
    with pytest.raises(xlc.XlcError, match=r"xlc.selftrain"):
        clf.fit(texts, ["travel"] * len(texts))


def _kinds(texts: list[str]) -> dict[str, object]:
    pd = pytest.importorskip("pandas", reason="pandas is in the dev extra")
    pa = pytest.importorskip("pyarrow", reason="pyarrow comes with pandas' test extras")
    return {"list": texts, "tuple": tuple(texts), "numpy": np.array(texts, dtype=object),
            "numpy str": np.array(texts), "pandas": pd.Series(texts), "polars": pl.Series(texts),
            "arrow": pa.array(texts), "arrow chunked": pa.chunked_array([texts[:5], texts[5:]])}


def test_every_kind_of_text_array_gives_the_same_predictions_and_scores(clf, texts):
    expected = clf.predict_proba(texts)
    labels = list(clf.predict(texts))
    for name, kind in _kinds(texts).items():
        assert np.array_equal(clf.predict_proba(kind), expected), name
        assert list(clf.predict(kind)) == labels, name
        assert clf.score(kind, _kinds(labels)[name]) == 1.0, name
        assert xlc.score(clf, kind)["label"].to_list() == labels, name


def test_xlc_score_takes_pandas_and_arrow_tables(clf, texts):
    pd = pytest.importorskip("pandas", reason="pandas is in the dev extra")
    pa = pytest.importorskip("pyarrow", reason="pyarrow comes with pandas' test extras")
    labels = list(clf.predict(texts))
    assert xlc.score(clf, pd.DataFrame({"text": texts}))["label"].to_list() == labels
    assert xlc.score(clf, pa.table({"text": texts}))["label"].to_list() == labels


@pytest.mark.parametrize("bad, says", [
    ("ein Satz", "pass a list of texts, not a single string"),
    (["gut", None], "texts: text #1 is missing"),
    (["gut", 3], "texts: text #1 is a int, not a string"),
    (["gut", "  "], "texts: text #1 is empty"),
    (np.array([["a", "b"]]), "pass a 1-D array of texts"),
    (pl.DataFrame({"text": ["a"]}), r"pass the text column \(e.g. frame\['text'\]\)"),
    (42, "expected a list, tuple, array or Series of texts, got a int"),
])
def test_a_bad_input_is_one_clear_error(clf, bad, says):
    with pytest.raises(xlc.XlcError, match=says):
        clf.predict(bad)


def test_a_missing_text_in_a_pandas_series_is_named(clf):
    pd = pytest.importorskip("pandas", reason="pandas is in the dev extra")
    with pytest.raises(xlc.XlcError, match="text #1 is missing"):
        clf.predict(pd.Series(["gut", None]))
