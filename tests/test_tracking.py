"""`--track mlflow`: a finished run in a real local MLflow store."""

from __future__ import annotations

import sys

import pytest

import xlc
from xlc.errors import XlcError

FAST = {"epochs": 1, "batch_size": 16, "max_length": 32, "max_rounds": 1, "patience": 5}


def test_a_tracked_run_logs_settings_round_metrics_report_and_plots(tiny_model, small_files, tmp_path,
                                                                    monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path / "..")  # nothing may land in the current folder
    before = set((tmp_path / "..").iterdir())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = xlc.selftrain(**small_files, model=str(tiny_model), out=tmp_path / "run", selector="balanced",
                        selector_options={"kt": 2}, select_round="average", track="mlflow", track_uri=uri, **FAST)
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("xlc").experiment_id])
    assert found.info.run_name == "run"
    assert found.data.params["selector"] == "balanced" and found.data.params["epochs"] == "1"
    assert found.data.tags["xlc.best_round"] == str(run.best_round)
    assert found.data.tags["xlc.delivered"] == "the average of the weights of round 1"
    test = run.report["delivered"]["test"]  # best/ holds the average: its metrics, not a round's
    assert found.data.metrics["delivered_test_accuracy"] == pytest.approx(test["accuracy"])
    history = client.get_metric_history(found.info.run_id, "dev_accuracy")
    assert [m.step for m in history] == [0, 1]
    assert [m.value for m in history] == pytest.approx([r["dev"]["accuracy"] for r in run.report["rounds"]])
    assert [m.step for m in client.get_metric_history(found.info.run_id, "pool_confidence")] == [0]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"report.json", "report.md", "accuracy.png", "health.png"} <= artifacts
    assert (tmp_path / "mlruns").is_dir()  # beside the database, not in the current folder
    assert set((tmp_path / "..").iterdir()) == before


def test_tracking_without_mlflow_installed_is_refused_before_any_work(tiny_model, small_files, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(XlcError, match=r"--track mlflow needs MLflow: pip install 'xlc\[mlflow\]'"):
        xlc.selftrain(**small_files, model=str(tiny_model), out=tmp_path / "run", track="mlflow", **FAST)
    assert not (tmp_path / "run").exists()
