"""Every saved model folder (best/, final/, `xlc export`) carries a README.md model card that tells the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import sample

import xlc
from xlc import modelcard
from xlc.cli import main
from xlc.config import DEFAULTS
from xlc.modelcard import CARD_FILE, MARK

TEXTS = ["Der Bundestag hat das Gesetz beschlossen.", "Le match s'est terminé sur un score nul."]


@pytest.fixture(scope="module")
def run(tiny_model, demo_frame, tmp_path_factory) -> Path:
    """A one-round run whose dev and test sets hold German and French texts, with the text prefix "query: "."""
    folder = tmp_path_factory.mktemp("card")
    files = {
        "train": sample(demo_frame, "eng_Latn", "train", 60),
        "unlabeled": sample(demo_frame, "deu_Latn", "train", 40).drop("label"),
        "dev": pl.concat([sample(demo_frame, lang, "dev", 12) for lang in ("deu_Latn", "fra_Latn")]),
        "test": pl.concat([sample(demo_frame, lang, "test", 12) for lang in ("deu_Latn", "fra_Latn")]),
    }
    xlc.selftrain(**files, selector="throttling", selector_options={"n": 5}, model=str(tiny_model),
                  out=folder / "run", epochs=1, batch_size=16, max_length=32, max_rounds=1, patience=5,
                  text_prefix="query: ")
    return folder / "run"


def test_best_and_final_carry_a_card_with_the_runs_facts(run, tiny_model):
    report = json.loads((run / "report.json").read_text())
    for folder, number in (("best", report["best_round"]), ("final", 1)):
        card = (run / folder / CARD_FILE).read_text()
        assert card.startswith(MARK)
        assert f"- Base model: `{tiny_model}`" in card
        assert "- Text prefix: `query: `" in card and "- Max length: 32 tokens" in card
        assert "the tokenizer puts the prefix `query: ` before each text itself" in card and "yourself" not in card
        assert 'classify(["Tolles Hotel!"], truncation=True, max_length=32, top_k=None)' in card
        assert "`science/technology`" in card and "Classes (7)" in card
        assert ("- Languages: train eng_Latn; unlabeled deu_Latn; dev deu_Latn, fra_Latn; "
                "test deu_Latn, fra_Latn") in card
        assert "- Labeled training texts: 60" in card
        taken = report["rounds"][number]["labeled"] - 60
        assert f"- Pseudo-labels this model was trained on: {taken} (taken from 40 unlabeled texts)" in card
        assert "- Data sizes: train 60, unlabeled 40, dev 24, test 24" in card
        assert "- Selector: `throttling` with n=5" in card
        noise = f"- Student noise: each pseudo-labeled text hid {DEFAULTS.student_noise:.0%} of its tokens while it"
        assert noise in card
        assert f"- Round: {number} of rounds 0-1" in card
        assert "- The run stopped: reached --max-rounds 1" in card
        test = report["rounds"][number]["test"]
        assert f"| test | all | 24 | {test['accuracy']:.3f} | {test['macro_f1']:.3f} |" in card
        fra = test["per_lang"]["fra_Latn"]
        assert f"| test | fra_Latn | 12 | {fra['accuracy']:.3f} | {fra['macro_f1']:.3f} |" in card
        assert 'xlc.load("THIS_FOLDER")' in card and "ORTModelForSequenceClassification" in card
        assert "from_pretrained(\"THIS_FOLDER\", trust_remote_code=True)" in card
    assert "(the best on dev" in (run / "best" / CARD_FILE).read_text()
    assert "the last)" in (run / "final" / CARD_FILE).read_text()


def test_export_carries_a_card_that_says_it_holds_onnx_only(run, tmp_path):
    result = CliRunner().invoke(main, ["export", "--model", str(run), "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "exported" / CARD_FILE).read_text()
    assert card.startswith(MARK) and "- Selector: `throttling` with n=5" in card
    assert "holds the ONNX model only" in card and "trust_remote_code" not in card
    assert "the tokenizer puts the prefix `query: ` before each text itself" in card
    again = CliRunner().invoke(main, ["export", "--json", "--model", str(run), "--out", str(tmp_path / "json")])
    assert again.exit_code == 0, again.output
    facts = json.loads(again.output)
    assert facts["out"] == str(tmp_path / "json") and "model.onnx" in facts["files"] and CARD_FILE in facts["files"]


def test_what_the_card_says_loads_does_load_with_the_same_predictions(run):
    """The PyTorch weights through Transformers' Auto class and pipeline; model.onnx through Optimum; the texts
    as they are (the tokenizer puts the prefix before them)."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    best = run / "best"
    clf = xlc.load(best)
    tokenizer = AutoTokenizer.from_pretrained(best)
    for model in (AutoModelForSequenceClassification.from_pretrained(best, trust_remote_code=True),
                  ORTModelForSequenceClassification.from_pretrained(best)):
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
        found = classify(TEXTS, truncation=True, max_length=32, top_k=None)
        probs = np.array([[next(d["score"] for d in row if d["label"] == c) for c in clf.classes_] for row in found])
        assert np.allclose(probs, clf.predict_proba(TEXTS), atol=1e-5)


def test_a_readme_that_xlc_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / CARD_FILE).write_text("my notes")
    modelcard.write(tmp_path, MARK + "\ncard")
    assert (tmp_path / CARD_FILE).read_text() == "my notes"
    (tmp_path / CARD_FILE).write_text(MARK + "\nold card")
    modelcard.write(tmp_path, MARK + "\nnew card")
    assert (tmp_path / CARD_FILE).read_text() == MARK + "\nnew card"


def test_a_model_without_a_run_gets_a_card_that_says_what_is_unknown():
    """A folder from before xlc built the prefix into the tokenizer: the card says to put it there yourself."""
    card = modelcard.render({"classes": ["neg", "pos"], "text_prefix": "query: "}, weights=False)
    assert "- Base model: unknown" in card and "- Text prefix: `query: `" in card
    assert "- Max length: not recorded (xlc scores at 128 tokens)" in card
    assert "Unknown: no run report for this model." in card
    assert "put the prefix `query: ` before each text yourself" in card
    assert 'classify(["query: Tolles Hotel!"], truncation=True, max_length=128, top_k=None)' in card
