"""`xlc audit`: a stratified sample of a run's pseudo-labels for people to check, and its precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import xlc
from xlc import audit
from xlc.cli import main

CLASSES = ["neg", "neu", "pos"]


@pytest.fixture
def run_dir(tmp_path):
    """A finished run folder as far as `xlc audit` reads it: report.json and pseudo_labels.parquet."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"classes": CLASSES, "rounds": [{"round": 0}]}))
    n = 300
    pl.DataFrame({
        "id": list(range(n)), "text": [f"text {i}" for i in range(n)],
        "lang": ["de" if i % 3 else "hi" for i in range(n)],
        "label": [CLASSES[i % 2 * 2] if i < 270 else "neu" for i in range(n)],  # neu: a small class
        "confidence": [0.5 + 0.5 * ((i * 37) % 100) / 100 for i in range(n)],
        "round": [i % 2 for i in range(n)], "selector": ["balanced"] * n,
    }).write_parquet(run / "pseudo_labels.parquet")
    return run


def test_the_sample_covers_every_class_language_and_confidence_band(run_dir):
    labels = audit.pseudo_labels(run_dir)
    chosen = audit.sample(labels, 60)
    assert chosen.height == 60 and chosen["id"].n_unique() == 60
    strata = labels.with_columns(lang=pl.col("lang")).group_by("label", "lang").len().height
    assert chosen.group_by("pseudo_label", "lang").len().height == strata  # every class x language
    assert set(chosen["band"]) == set(audit.BANDS)
    assert chosen.filter(pl.col("pseudo_label") == "neu").height >= 3  # the small class too, not 0
    assert audit.sample(labels, 60)["id"].to_list() == chosen["id"].to_list()  # seeded
    assert audit.sample(labels, 60, seed=1)["id"].to_list() != chosen["id"].to_list()


def test_audit_writes_a_sample_then_reports_precision_from_the_checked_file(run_dir, tmp_path):
    out = tmp_path / "audit"
    result = CliRunner().invoke(main, ["audit", str(run_dir), "--n", "40", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sample = pl.read_csv(out / "audit.csv")
    assert sample.height == 40 and sample["gold"].null_count() == 40
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert len(tasks) == 40 and tasks[0]["predictions"][0]["result"][0]["value"]["choices"][0] in CLASSES
    config = (out / "label_studio_config.xml").read_text()
    assert all(f'<Choice value="{c}"/>' in config for c in CLASSES)
    # people check 30 of the 40: the first 20 pseudo-labels are right, the next 10 wrong
    gold = [p if i < 20 else ("neu" if p != "neu" else "pos") if i < 30 else None
            for i, p in enumerate(sample["pseudo_label"].to_list())]
    sample.with_columns(gold=pl.Series(gold)).write_csv(out / "audit.csv")
    result = CliRunner().invoke(main, ["audit", str(run_dir), "--import", str(out / "audit.csv"), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["all"]["correct"] == 20 and found["all"]["checked"] == 30
    assert found["all"]["low"] < 2 / 3 < found["all"]["high"]
    assert sum(v["checked"] for v in found["per_lang"].values()) == 30
    checked = pl.read_csv(found["gold"])
    assert checked.columns == ["text", "label", "lang"] and checked.height == 30


def test_a_label_studio_export_is_read_like_the_csv(run_dir, tmp_path):
    out = tmp_path / "audit"
    assert CliRunner().invoke(main, ["audit", str(run_dir), "--n", "10", "--out", str(out)]).exit_code == 0
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    for i, task in enumerate(tasks):  # as Label Studio exports them: the person's choice under annotations
        choice = task["predictions"][0]["result"][0]["value"]["choices"][0] if i < 7 else "neu"
        task["annotations"] = [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                            "value": {"choices": [choice]}}], "was_cancelled": False}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    checked = audit.read_checked(export, CLASSES)
    assert checked.height == 10
    expected = 7 + sum(1 for t in tasks[7:] if t["predictions"][0]["result"][0]["value"]["choices"][0] == "neu")
    assert audit.precision(checked)["all"]["correct"] == expected


def test_audit_refuses_a_folder_it_did_not_write_and_unknown_gold_labels(run_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result = CliRunner().invoke(main, ["audit", str(run_dir), "--out", str(mine)])
    assert result.exit_code != 0 and "not an earlier `xlc audit` folder" in result.output
    assert (mine / "notes.txt").read_text() == "keep"
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"audit_id": [0], "lang": ["de"], "text": ["x"], "pseudo_label": ["neg"],
                  "gold": ["negative"]}).write_csv(bad)
    result = CliRunner().invoke(main, ["audit", str(run_dir), "--import", str(bad)])
    assert result.exit_code != 0 and "gold label(s) ['negative'] are not classes of the run" in result.output
    good = tmp_path / "good.csv"
    pl.DataFrame({"audit_id": [0], "lang": ["de"], "text": ["x"], "pseudo_label": ["neg"],
                  "gold": ["pos"]}).write_csv(good)
    (tmp_path / "checked_gold.csv").write_text("my own file")  # where the gold would go by default
    result = CliRunner().invoke(main, ["audit", str(run_dir), "--import", str(good)])
    assert result.exit_code != 0 and "exists and xlc did not write it" in result.output
    assert (tmp_path / "checked_gold.csv").read_text() == "my own file"


def test_checked_texts_join_the_labeled_set_with_extra_train(tiny_model, small_files, tmp_path):
    extra = tmp_path / "checked_gold.csv"
    dev = pl.read_parquet(small_files["dev"])
    dev.head(12).select("text", "label", "lang").write_csv(extra)
    run = xlc.selftrain(**small_files, model=str(tiny_model), out=tmp_path / "run", extra_train=str(extra),
                        epochs=1, batch_size=16, max_length=32, max_rounds=0)
    assert run.report["rounds"][0]["labeled"] == pl.read_parquet(small_files["train"]).height + 12


LABEL_STUDIO_SDK = Path(sys.prefix) / "label-studio-sdk"  # installed apart by `make install` (see Makefile)
VALIDATE = """
import json, sys
from label_studio_sdk.label_interface import LabelInterface
interface = LabelInterface(open(sys.argv[1]).read())
interface.validate()
tasks = json.load(open(sys.argv[2]))
wrong = {"result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["nope"]}}]}
print(json.dumps({"errors": [e for t in tasks for p in t["predictions"]
                             for e in interface.validate_prediction(p, return_errors=True)],
                  "wrong": interface.validate_prediction(wrong, return_errors=True)}))
"""


@pytest.mark.skipif(not LABEL_STUDIO_SDK.is_dir(), reason=f"Label Studio's SDK is not installed in "
                    f"{LABEL_STUDIO_SDK} (`make install` puts it there)")
def test_label_studios_own_sdk_accepts_the_config_and_the_pre_annotations(run_dir, tmp_path):
    out = tmp_path / "audit"
    assert CliRunner().invoke(main, ["audit", str(run_dir), "--n", "30", "--out", str(out)]).exit_code == 0
    checked = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(out / audit.LABEL_STUDIO_CONFIG), str(out / audit.LABEL_STUDIO_FILE)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(LABEL_STUDIO_SDK)}, timeout=300)
    assert checked.returncode == 0, checked.stderr[-2000:]
    found = json.loads(checked.stdout.strip().splitlines()[-1])
    assert found["errors"] == []
    assert found["wrong"] and "valid labels" in found["wrong"][0]  # the validator does reject bad labels
