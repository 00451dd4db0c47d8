"""benchmarks/paper.py: end to end in --smoke mode on the tiny model, and its statistics."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper.py"


@pytest.fixture(scope="module")
def paper():
    spec = importlib.util.spec_from_file_location("xlc_paper_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def smoke(paper, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    args = ["--smoke", "--model", str(tiny_model), "--out", str(root / "results"), "--work", str(root / "work")]
    result = paper.main(args)
    return root, args, result


def test_smoke_run_writes_the_results_file_with_every_table(smoke):
    root, _, result = smoke
    text = (root / "results" / "paper-smoke.md").read_text()
    assert "**SMOKE RUN.**" in text and "numbers mean nothing" in text
    for heading in ("## Summary", "Test accuracy per target language (cf. the paper's Table 1)",
                    "Macro-F1, all target languages", "Pseudo-label precision per language",
                    "Share of each class among the pseudo-labels", "Paired bootstrap",
                    "## Deviations from the paper's protocol", "## Same-compute control"):
        assert heading in text, heading
    for fact in ("- command: `", "- seeds: 0, 1", "- hardware: ", "- versions: xlc ", "wall time **",
                 "minutes** summed"):
        assert fact in text, fact
    demo = result["datasets"]["demo"]
    assert demo["methods"] == ["zero-shot", "balanced", "throttling", "thresholded", "pool-prior", "control", "logreg"]
    assert set(demo["accuracy"]) == {"deu_Latn", "zho_Hans", "all"}
    assert demo["accuracy"]["all"]["balanced"]["n"] == 2  # both seeds
    assert demo["accuracy"]["all"]["throttling"]["n"] == 1  # --selector-seeds 1 in the smoke profile
    assert json.loads((root / "results" / "paper-smoke.json").read_text())["profile"]["name"] == "smoke"


def test_smoke_plots_are_valid_pngs(smoke):
    root, _, result = smoke
    plots = result["datasets"]["demo"]["plots"]
    assert set(plots) == {"accuracy", "pseudo-label classes", "rounds"}
    for name in plots.values():
        with Image.open(root / "results" / name) as image:
            assert image.format == "PNG" and image.width > 500
        assert f"]({name})" in (root / "results" / "paper-smoke.md").read_text()


def test_control_trains_at_least_as_many_steps_as_the_balanced_run(smoke):
    _, _, result = smoke
    runs = result["datasets"]["demo"]["runs"]
    for seed in (0, 1):
        balanced = next(r for r in runs if r["method"] == "balanced" and r["seed"] == seed)
        control = next(r for r in runs if r["method"] == "control" and r["seed"] == seed)
        assert control["rounds"] == 1 and control["pseudo_labels"] == 0
        assert control["train_steps"] >= balanced["train_steps"] == control["matched_to"]["balanced_train_steps"]
        assert balanced["rounds"] == 2  # round 0 and one self-learning round


def test_zero_shot_is_round_zero_of_the_balanced_run(smoke):
    root, _, _ = smoke
    folder = root / "work" / "demo" / "seed-0" / "all" / "balanced"
    predictions = pl.read_parquet(folder / "test_predictions.parquet")
    assert set(predictions["method"]) == {"balanced", "zero-shot"}
    report = json.loads((folder / "report.json").read_text())
    assert report["rounds"][0]["round"] == 0
    for pattern in ("round-*/onnx", "round-*/model", "best", "final"):  # models removed unless --keep-models
        assert not list((folder / "run").glob(pattern)), pattern


def test_a_second_invocation_reuses_finished_runs(paper, smoke):
    root, args, _ = smoke
    summary = root / "work" / "demo" / "seed-1" / "all" / "control" / "summary.json"
    before = summary.stat().st_mtime_ns
    again = paper.main(args)
    assert summary.stat().st_mtime_ns == before
    assert again["datasets"]["demo"]["accuracy"] == json.loads(
        (root / "results" / "paper-smoke.json").read_text())["datasets"]["demo"]["accuracy"]


def test_plan_prints_an_estimate_and_runs_nothing(paper, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO")
    assert paper.main(["--smoke", "--plan", "--model", str(tiny_model), "--work", str(tmp_path / "w"),
                       "--out", str(tmp_path / "o")]) is None
    assert "estimated at most" in caplog.text
    assert not (tmp_path / "o").exists()


def predictions(methods: dict[str, list[list[bool]]]) -> pl.DataFrame:
    """A predictions frame: for each method, one correctness list per seed."""
    rows = []
    for method, seeds in methods.items():
        for seed, correct in enumerate(seeds):
            rows += [{"method": method, "seed": seed, "item": i, "correct": c} for i, c in enumerate(correct)]
    return pl.DataFrame(rows)


def test_paired_bootstrap_of_identical_methods_is_exactly_zero(paper):
    same = [[True, False, True, True], [False, False, True, True]]
    b = paper.paired_bootstrap(predictions({"balanced": same, "zero-shot": same}), "balanced", "zero-shot")
    assert (b["diff"], b["low"], b["high"]) == (0.0, 0.0, 0.0)
    assert b["items"] == 4 and b["seeds"] == 2 and b["resamples"] == 2000


def test_paired_bootstrap_difference_and_interval(paper):
    rng = np.random.default_rng(3)
    a = [list(rng.random(300) < 0.8) for _ in range(3)]
    b = [list(rng.random(300) < 0.6) for _ in range(3)]
    result = paper.paired_bootstrap(predictions({"balanced": a, "control": b}), "balanced", "control")
    expected = np.mean(np.mean(a, axis=0) - np.mean(b, axis=0))
    assert result["diff"] == pytest.approx(expected)
    assert result["low"] < result["diff"] < result["high"]
    assert 0.1 < result["low"] and result["high"] < 0.3  # 20 points apart, 300 items x 3 seeds
    assert result["share_not_above_zero"] == 0.0
    again = paper.paired_bootstrap(predictions({"balanced": a, "control": b}), "balanced", "control")
    assert again == result  # fixed numpy seed


def test_control_epochs_cover_the_self_learning_steps(paper):
    rounds = [{"labeled": 160}, {"labeled": 240}]
    steps = paper.train_steps(rounds, epochs=2, batch_size=16)
    assert steps == 2 * 10 + 2 * 15
    assert paper.control_epochs(steps, labeled=160, batch_size=16) == 5  # 5 epochs x 10 steps = 50
    assert paper.control_epochs(51, labeled=160, batch_size=16) == 6  # never fewer steps


def test_a_work_folder_of_other_settings_is_refused_not_silently_reused(paper, smoke):
    _, args, _ = smoke
    with pytest.raises(paper.XlcError, match="holds runs made with different settings"):
        paper.main([*args, "--lr", "0.001"])


def test_pool_prior_runs_the_plugins_prior_selector_with_pool_proportions_per_language(smoke):
    _, _, result = smoke
    demo = result["datasets"]["demo"]
    runs = [r for r in demo["runs"] if r["method"] == "pool-prior"]
    assert [r["seed"] for r in runs] == [0, 1]  # every seed, like balanced
    for run in runs:
        assert run["selector"] == "prior"
        assert run["selector_options"] == {"kt": 2, "proportions": "pool", "per_lang": True}
    assert "pool-prior - control" in demo["bootstrap"] and "pool-prior" in demo["precision"]["all"]


def test_pool_prior_without_the_plugin_fails_before_any_run_and_names_the_fix(paper, tiny_model, tmp_path,
                                                                               monkeypatch):
    from xlc.selectors.registry import reload

    monkeypatch.setenv("XLC_PLUGINS", "none")
    reload()
    try:
        with pytest.raises(paper.XlcError, match=r"pool-prior needs the xlc-classprior plugin .*pip install -e "
                                                 r"plugins/xlc-classprior.*leave pool-prior out of --methods"):
            paper.main(["--smoke", "--model", str(tiny_model), "--work", str(tmp_path / "w"),
                        "--out", str(tmp_path / "o")])
        assert not (tmp_path / "w").exists()
    finally:
        monkeypatch.delenv("XLC_PLUGINS")
        reload()


def test_epochs_and_lr_flags_change_the_profile_and_so_the_work_folder_settings(paper):
    profile = paper.choose_profile(paper.parse_args(["--epochs", "4", "--lr", "5e-5"]))
    assert (profile.epochs, profile.lr, profile.name) == (4, 5e-5, "budget")
    assert paper.choose_profile(paper.parse_args([])).epochs == 2


def test_with_the_default_method_zero_shot_and_an_exact_same_step_control_come_from_it(paper, tiny_model, tmp_path):
    result = paper.main(["--smoke", "--model", str(tiny_model), "--out", str(tmp_path / "results"),
                         "--work", str(tmp_path / "work"), "--seeds", "0",
                         "--methods", "zero-shot,default,control"])
    demo = result["datasets"]["demo"]
    assert demo["methods"] == ["zero-shot", "default", "control"]
    default = next(r for r in demo["runs"] if r["method"] == "default")
    control = next(r for r in demo["runs"] if r["method"] == "control")
    assert default["selector"] == "balanced" and default["settings"] == {
        "model": str(tiny_model), "seed": 0, "max_length": default["settings"]["max_length"], "id_column": "id"}
    assert control["train_steps"] == default["train_steps"] == control["matched_to"]["balanced_train_steps"]
    assert {"default - zero-shot", "default - control"} <= set(demo["bootstrap"])


def test_the_transfer_gap_is_english_minus_target_accuracy_of_round_zero(smoke):
    root, _, result = smoke
    demo = result["datasets"]["demo"]
    files = sorted((root / "work" / "demo").glob("seed-*/*/*/english_predictions.parquet"))
    english = [pl.read_parquet(f) for f in files]
    assert len(english) == 2  # one per seed, from the balanced run's round 0
    assert demo["gap"]["english"] == pytest.approx(np.mean([(e["gold"] == e["predicted"]).mean() for e in english]))
    zero_shot = demo["accuracy"]["all"]["zero-shot"]["mean"]
    assert demo["gap"]["gap"] == pytest.approx(demo["gap"]["english"] - zero_shot)
    assert "**Transfer gap**" in (root / "results" / "paper-smoke.md").read_text()
