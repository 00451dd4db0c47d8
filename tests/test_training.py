"""Fine-tuning one round: top layers on cached features, epochs chosen on dev, step budgets, soft targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xlc import XlcError, model
from xlc.cli import main

TEXTS = ["Die Regierung beschließt ein Gesetz.", "Der Fußball-Verein gewinnt das Spiel.",
         "Neue Forschung zu Zellen.", "Das Parlament stimmt ab.", "Ein Tor in der letzten Minute.",
         "Ein Labor misst Proteine.", "Wahlen im Herbst.", "Die Mannschaft trainiert."] * 2
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1] * 2)


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    return model.build_tiny(tmp_path_factory.mktemp("tiny4") / "encoder", layers=4)


def classifier(path) -> model.Classifier:
    return model.from_base(str(path), ("politics", "sports", "science"))


def settings(**changes) -> model.TrainSettings:
    return model.TrainSettings(**{"epochs": 2, "batch_size": 4, "max_length": 24, "head_lr": 1e-2,
                                  "device": "cpu", **changes})


def test_lower_layers_then_upper_layers_equal_the_full_forward(four_layers):
    clf = classifier(four_layers)
    with torch.no_grad():
        clf.model.classifier.weight.normal_(0, 1.0)  # confident outputs show any difference
    full = model.predict(clf, TEXTS, 24)
    for frozen in (1, 3):
        lower = model.LowerLayers(clf, frozen, 24)
        lower.add(TEXTS)
        assert np.allclose(model.predict(clf, TEXTS, 24, lower, frozen), full, atol=1e-6)


def test_training_the_top_layers_leaves_the_lower_layers_and_embeddings_unchanged(four_layers):
    clf = classifier(four_layers)
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    model.fine_tune(clf, TEXTS, LABELS, settings(train_layers=1))
    after = clf.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("encoder.encoder.layer.3.", "classifier.")) for k in changed)
    assert any(k.startswith("encoder.encoder.layer.3.") for k in changed)


def test_a_model_trained_on_cached_features_predicts_the_same_through_the_full_forward(four_layers):
    clf = classifier(four_layers)
    lower = model.LowerLayers(clf, 2, 24)
    model.fine_tune(clf, TEXTS, LABELS, settings(train_layers=2, epochs=3), lower=lower)
    assert np.allclose(model.predict(clf, TEXTS, 24, lower, 2), model.predict(clf, TEXTS, 24), atol=1e-5)


def test_train_layers_at_or_above_the_depth_trains_every_layer(four_layers):
    clf = classifier(four_layers)
    assert model.frozen_layers(clf, 4) == 0 and model.frozen_layers(clf, 9) == 0
    assert model.frozen_layers(clf, 1) == 3 and model.frozen_layers(clf, 0) == 0


def test_max_steps_sets_the_exact_number_of_optimiser_steps(four_layers):
    result = model.fine_tune(classifier(four_layers), TEXTS, LABELS, settings(max_steps=7, train_layers=1))
    assert result.steps == 7 and result.epochs == 2  # 4 steps per epoch: one full epoch, one partial


def test_with_dev_data_the_best_epoch_is_kept_and_reported(four_layers):
    clf = classifier(four_layers)
    dev = (TEXTS[:8], LABELS[:8])
    result = model.fine_tune(clf, TEXTS, LABELS, settings(epochs=6, train_layers=1, head_lr=5e-2), dev=dev)
    assert len(result.dev_accuracy) == result.epochs
    assert result.best_epoch == 1 + int(np.argmax(result.dev_accuracy))  # first of the best
    kept = float(np.mean(model.predict(clf, dev[0], 24).argmax(1) == dev[1]))
    assert kept == pytest.approx(max(result.dev_accuracy))


def test_epoch_patience_stops_a_round_that_no_longer_gains_on_dev(four_layers):
    clf = classifier(four_layers)
    dev = (TEXTS[:3], np.array([2, 2, 2]))  # an unlearnable dev set: no gain after the first epochs
    result = model.fine_tune(clf, TEXTS, LABELS, settings(epochs=20, epoch_patience=2, train_layers=1), dev=dev)
    assert result.epochs < 20
    assert result.epochs - result.best_epoch == 2


def test_soft_targets_train_towards_the_given_distribution(four_layers):
    clf = classifier(four_layers)
    soft = np.tile(np.array([[0.1, 0.1, 0.8]], dtype=np.float32), (len(TEXTS), 1))
    model.fine_tune(clf, TEXTS, soft, settings(epochs=15, train_layers=1, head_lr=5e-2))
    assert model.predict(clf, TEXTS, 24).mean(0).argmax() == 2


def test_student_noise_hides_tokens_of_the_marked_rows_only_and_never_the_first():
    mask = torch.ones((3, 40), dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    noisy = model.hide_tokens(mask.clone(), np.array([False, True, True]), 0.5, generator)
    assert noisy[0].sum() == 40  # a gold text: every token
    assert all(10 < noisy[row].sum() < 30 and noisy[row, 0] == 1 for row in (1, 2))  # about half hidden
    assert not torch.equal(noisy[1], noisy[2])  # each text draws its own tokens
    state = generator.get_state()
    for marked, rate in ((np.array([False, False, False]), 0.5), (np.array([True, True, True]), 0.0)):
        assert torch.equal(model.hide_tokens(mask.clone(), marked, rate, generator), mask)
    assert torch.equal(generator.get_state(), state)  # nothing drawn: the run without noise is unchanged


@pytest.mark.parametrize("train_layers", [0, 1], ids=["full fine-tuning", "cached lower layers"])
def test_student_noise_changes_training_only_through_the_pseudo_labeled_texts(four_layers, train_layers):
    def trained(noise: float, pseudo: np.ndarray | None) -> dict[str, torch.Tensor]:
        clf = classifier(four_layers)
        model.fine_tune(clf, TEXTS, LABELS, settings(train_layers=train_layers, student_noise=noise), pseudo=pseudo)
        return {n: p.detach().clone() for n, p in clf.model.named_parameters()}

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[n], b[n]) for n in a)

    plain = trained(0.0, None)
    half = np.arange(len(TEXTS)) >= len(TEXTS) // 2
    assert same(plain, trained(0.5, None))  # no text marked: no noise
    assert same(plain, trained(0.0, half))  # rate 0: off
    assert not same(plain, trained(0.5, half))
    assert same(trained(0.5, half), trained(0.5, half))  # the noise is seeded


def test_student_noise_of_a_text_count_other_than_the_training_set_is_refused(four_layers):
    with pytest.raises(ValueError, match="pseudo marks 3 texts, not the 16"):
        model.fine_tune(classifier(four_layers), TEXTS, LABELS, settings(student_noise=0.3), pseudo=[True] * 3)


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_a_student_noise_outside_zero_to_one_is_refused(value):
    result = CliRunner().invoke(main, ["selftrain", "--student-noise", value])
    assert result.exit_code != 0 and "--student-noise must be in [0, 1)" in result.output


def test_selftrain_with_student_noise_trains_only_the_rounds_with_pseudo_labels_differently(
        tiny_model, small_files, tmp_path):
    def weights(name: str, *noise: str) -> list[bytes]:
        out = tmp_path / name
        result = CliRunner().invoke(main, [
            "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train",
            str(small_files["train"]), "--unlabeled", str(small_files["unlabeled"]), "--dev", str(small_files["dev"]),
            "--epochs", "2", "--fixed-epochs", "--batch-size", "16", "--max-length", "32", "--kt", "4",
            "--max-rounds", "1", "--patience", "5", "--keep-round-models", *noise])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "report.json").read_text())["rounds"][0]["selected"] > 0  # round 1 trains on them
        return [(out / f"round-0{r}" / "model" / "model-rest.safetensors").read_bytes() for r in (0, 1)]  # what trains

    plain, noisy = weights("plain", "--student-noise", "0"), weights("noisy", "--student-noise", "0.5")
    assert plain[0] == noisy[0]  # round 0 trains on English gold alone: no noise
    assert plain[1] != noisy[1]


def test_a_negative_train_layers_is_refused():
    from xlc.config import SelfTrainConfig

    with pytest.raises(XlcError, match="--train-layers must be >= 0"):
        SelfTrainConfig(train_layers=-1)


def test_selftrain_reports_steps_epochs_and_dev_curve_per_round(tiny_model, small_files, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train", str(small_files["train"]),
        "--unlabeled", str(small_files["unlabeled"]), "--dev", str(small_files["dev"]), "--epochs", "3",
        "--batch-size", "16", "--max-length", "32", "--kt", "2", "--max-rounds", "1", "--patience", "5",
        "--train-layers", "1"])
    assert result.exit_code == 0, result.output
    rounds = json.loads((out / "report.json").read_text())["rounds"]
    assert rounds[0]["train"]["steps"] == rounds[0]["train"]["epochs"] * 5  # 80 texts / 16
    assert 1 <= rounds[0]["train"]["best_epoch"] <= rounds[0]["train"]["epochs"] <= 3
    assert len(rounds[0]["train"]["dev_accuracy"]) == rounds[0]["train"]["epochs"]


def test_max_steps_gives_the_same_compute_control(tiny_model, small_files, tmp_path):
    out = tmp_path / "control"
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train", str(small_files["train"]),
        "--unlabeled", str(small_files["unlabeled"]), "--dev", str(small_files["dev"]), "--max-steps", "13",
        "--fixed-epochs", "--batch-size", "16", "--max-length", "32", "--max-rounds", "0"])
    assert result.exit_code == 0, result.output
    train = json.loads((out / "report.json").read_text())["rounds"][0]["train"]
    assert train["steps"] == 13 and train["dev_accuracy"] == []


def test_a_run_on_cached_features_killed_mid_run_resumes_to_the_same_result(tiny_model, small_files, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from test_resume import args, in_process, outcome

    from xlc.loop import CRASH_ENV

    reference, killed_out = tmp_path / "reference", tmp_path / "killed"
    in_process(*args(tiny_model, small_files, reference, "--train-layers", "1", "--epochs", "2"))
    killed = subprocess.run([sys.executable, "-m", "xlc.cli",
                             *args(tiny_model, small_files, killed_out, "--train-layers", "1", "--epochs", "2")],
                            env={**os.environ, CRASH_ENV: "select:1"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    in_process(*args(tiny_model, small_files, killed_out, "--train-layers", "1", "--epochs", "2"))
    expected, got = outcome(reference), outcome(killed_out)
    assert got[0] == expected[0] and got[1] == expected[1] and got[2].equals(expected[2])


def test_soft_targets_from_the_whole_pool_train_a_fresh_student(tiny_model, small_files, tmp_path):
    import polars as pl

    out = tmp_path / "distil"
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(out), "--train", str(small_files["train"]),
        "--unlabeled", str(small_files["unlabeled"]), "--dev", str(small_files["dev"]), "--epochs", "1",
        "--batch-size", "16", "--max-length", "32", "--selector", "pool", "--targets", "soft", "--from-base",
        "--max-rounds", "1", "--patience", "5"])
    assert result.exit_code == 0, result.output
    pseudo = pl.read_parquet(out / "pseudo_labels.parquet")
    assert pseudo.height == 60 and "probs" in pseudo.columns  # the whole pool, with the teacher's probabilities
    probs = np.stack(pseudo["probs"].to_list())
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (np.asarray(pseudo["label"]) == np.asarray(json.loads((out / "report.json").read_text())["classes"],
                                                      dtype=object)[probs.argmax(1)]).all()
    rounds = json.loads((out / "report.json").read_text())["rounds"]
    assert rounds[1]["labeled"] == 80 + 60 and rounds[1]["train"]["steps"] == 9  # 140 texts / 16


def test_an_unknown_targets_value_is_refused():
    from xlc.config import SelfTrainConfig

    with pytest.raises(XlcError, match="--targets must be one of hard, soft"):
        SelfTrainConfig(targets="fuzzy")


def test_pool_gold_from_its_own_file_gives_the_pseudo_label_precision(tiny_model, small_files, tmp_path):
    import polars as pl

    pool = pl.read_parquet(small_files["unlabeled"]).with_row_index("doc").with_columns(pl.col("doc").cast(pl.Int64))
    pool.drop("label").write_parquet(tmp_path / "pool.parquet")
    pool.select("doc", "label").write_csv(tmp_path / "gold.csv")
    common = ["selftrain", "--quiet", "--model", str(tiny_model), "--train", str(small_files["train"]),
              "--dev", str(small_files["dev"]), "--epochs", "1", "--batch-size", "16", "--max-length", "32",
              "--kt", "2", "--max-rounds", "1", "--id-column", "doc"]
    with_gold = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "a"), "--unlabeled",
                                          str(tmp_path / "pool.parquet"), "--pool-gold", str(tmp_path / "gold.csv")])
    assert with_gold.exit_code == 0, with_gold.output
    precision = json.loads((tmp_path / "a" / "report.json").read_text())["rounds"][0]["pseudo_precision"]
    selected = pl.read_parquet(tmp_path / "a" / "round-00" / "selected.parquet")
    truth = selected.join(pool.select(pl.col("doc").alias("id"), pl.col("label").alias("gold")), on="id")
    assert precision == pytest.approx(float((truth["label"] == truth["gold"]).mean()))


def test_pool_gold_with_an_id_not_in_the_pool_is_refused_with_that_id(tiny_model, small_files, tmp_path):
    import polars as pl

    pool = pl.read_parquet(small_files["unlabeled"]).with_row_index("doc").with_columns(pl.col("doc").cast(pl.Int64))
    pool.drop("label").write_parquet(tmp_path / "pool.parquet")
    pl.DataFrame({"doc": [0, 999], "label": ["health", "travel"]}).write_csv(tmp_path / "gold.csv")
    result = CliRunner().invoke(main, [
        "selftrain", "--quiet", "--model", str(tiny_model), "--out", str(tmp_path / "run"), "--train",
        str(small_files["train"]), "--unlabeled", str(tmp_path / "pool.parquet"), "--dev", str(small_files["dev"]),
        "--pool-gold", str(tmp_path / "gold.csv"), "--id-column", "doc"])
    assert result.exit_code != 0 and "id 999 is not in the pool" in result.output
    assert not (tmp_path / "run" / "round-00").exists()


def test_one_rounds_defaults_are_the_selftrain_defaults():
    from xlc.config import DEFAULTS

    names = ("epochs", "batch_size", "max_length", "lr", "head_lr", "warmup", "freeze_embeddings", "seed",
             "max_steps", "train_layers", "student_noise")
    trained = model.TrainSettings()
    assert {n: getattr(trained, n) for n in names} == {n: getattr(DEFAULTS, n) for n in names}
    assert trained.epoch_patience == 0  # a round fine-tuned on its own never stops early
