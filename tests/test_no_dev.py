"""Runs without target-language labels: no --dev, a dev set held out from the labeled data."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from xlc import data
from xlc.cli import main
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError


def labeled(counts: dict[str, int]) -> pl.DataFrame:
    labels = [c for c, n in counts.items() for _ in range(n)]
    return pl.DataFrame({"text": [f"text {i}" for i in range(len(labels))], "label": labels})


def test_split_dev_holds_out_the_share_of_every_class():
    train, dev = data.split_dev(labeled({"a": 50, "b": 20, "c": 3, "d": 1}), share=0.1, seed=0)
    assert dict(dev["label"].value_counts().iter_rows()) == {"a": 5, "b": 2, "c": 1}  # d: its only text trains
    assert train.height + dev.height == 74
    assert set(train["text"]).isdisjoint(dev["text"])
    for part in (train, dev):  # both keep the file's order
        assert part["text"].to_list() == sorted(part["text"].to_list(), key=lambda t: int(t.split()[1]))


def test_split_dev_is_the_same_for_a_seed_and_differs_between_seeds():
    frame = labeled({"a": 100, "b": 100})
    first, again, other = (data.split_dev(frame, seed=s)[1]["text"].to_list() for s in (0, 0, 1))
    assert first == again
    assert first != other


def test_too_small_a_training_set_to_hold_out_dev_is_refused(tmp_path):
    train, pool = tmp_path / "train.csv", tmp_path / "pool.csv"
    labeled({"a": 1, "b": 1}).write_csv(train)
    pl.DataFrame({"text": ["x", "y"]}).write_csv(pool)
    with pytest.raises(XlcError, match=r"--train .*train\.csv: too few texts to hold out a dev set.*pass --dev"):
        data.load_files(train, pool, None, None, data.Columns("text", "label", None, "lang"))


@pytest.mark.parametrize(("settings", "rule"), [
    ({"train": "a.csv", "unlabeled": "u.csv"}, "average"),
    ({"train": "a.csv", "unlabeled": "u.csv", "dev": "d.csv"}, "dev"),
    ({}, "dev"),  # the demo has a target-language dev set
    ({"train": "a.csv", "unlabeled": "u.csv", "select_round": "dev"}, "dev"),
    ({"train": "a.csv", "unlabeled": "u.csv", "dev": "d.csv", "select_round": "last"}, "last"),
    ({"train": "a.csv", "unlabeled": "u.csv", "dev": "d.csv", "select_round": "average"}, "average"),
])
def test_the_round_rule_follows_the_dev_set_unless_chosen(settings, rule):
    assert SelfTrainConfig.from_mapping(settings).round_rule == rule


def test_selftrain_without_dev_chooses_on_held_out_labeled_texts(tiny_model, small_files, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out),
        "--train", str(small_files["train"]), "--unlabeled", str(small_files["unlabeled"]),
        "--test", str(small_files["test"]), "--kt", "2", "--epochs", "1", "--batch-size", "16",
        "--max-length", "32", "--max-rounds", "2", "--patience", "5", "--json", "--text-prefix", "passage: ",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)  # --json: report.json and the run's paths
    assert summary["best_model"] == str(out / "best") and summary["finished_before"] is False
    assert summary["rounds"] == json.loads((out / "report.json").read_text())["rounds"]
    held = summary["data"]["sizes"]["dev"]
    assert summary["data"]["dev_held_out"] is True
    assert 7 <= held <= 14  # 10% of each of the 7 classes of 80 English texts, at least one each
    assert summary["data"]["sizes"]["train"] == 80 - held
    assert summary["rounds"][0]["labeled"] == 80 - held  # the held-out texts never train
    assert summary["data"]["languages"]["dev"] == ["eng_Latn"]
    assert json.loads((out / "best" / "xlc.json").read_text())["text_prefix"] == "passage: "
    assert summary["round_rule"] == "average" and summary["delivered"]["rounds"] == [1, 2]  # rounds 1-2 averaged
    assert summary["stop_code"] == "max_rounds"  # patience does not apply: the run goes to --max-rounds
    markdown = (out / "report.md").read_text()
    assert "held out from the labeled training set" in markdown
    assert "chosen by: the average of the weights of rounds 1-2" in markdown
    first, second, last = (r.get("health") for r in summary["rounds"])
    assert first["changed"] is None and 0 <= second["changed"] <= 1  # rounds that scored the pool
    assert last is None  # the last round does not score the pool
    assert set(second["confidence"]) == {"all", "deu_Latn"}
    assert sum(second["class_shares"]["all"].values()) == pytest.approx(1)
