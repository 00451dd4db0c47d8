"""`--track mlflow`: a finished run's settings, per-round metrics, the delivered model's metrics, report and
plots in MLflow.

The store is `--track-uri`, else $MLFLOW_TRACKING_URI, else a SQLite file `mlflow.db` in the
current folder (artifacts in `mlruns/` beside it): local, so it works offline. MLflow is an
optional extra (`pip install 'xlc[mlflow]'`) and imported only here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from xlc.errors import XlcError
from xlc.plots import PLOTS
from xlc.report import delivered, delivered_record
from xlc.rundir import RunDir

log = logging.getLogger("xlc")
EXPERIMENT = "xlc"
ROUND_METRICS = {
    "dev_accuracy": ("dev", "accuracy"), "dev_macro_f1": ("dev", "macro_f1"),
    "test_accuracy": ("test", "accuracy"), "test_macro_f1": ("test", "macro_f1"),
}


def check() -> None:
    """Refuse --track mlflow before any work when MLflow is not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise XlcError("--track mlflow needs MLflow: pip install 'xlc[mlflow]'") from None


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').absolute()}"


def artifacts_beside(uri: str) -> str | None:
    """For a SQLite store, its artifacts in `mlruns/` next to the database file (not in the current
    folder, MLflow's default); for other stores, the store's own default (None)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix):]).absolute().parent / "mlruns").as_uri()


def log_run(run_dir: Path, summary: dict, uri: str | None = None) -> str:
    """Log a finished run to MLflow as one MLflow run (named after the run folder); return its id."""
    import mlflow

    uri = uri or default_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts_beside(uri))
    mlflow.set_experiment(EXPERIMENT)
    run = RunDir(Path(run_dir))
    with mlflow.start_run(run_name=run.path.name) as active:
        mlflow.log_params({k: _param(v) for k, v in summary["config"].items()})
        mlflow.set_tags({"xlc.run_dir": str(run.path.absolute()), "xlc.best_round": summary["best_round"],
                         "xlc.stop_code": summary.get("stop_code", ""),
                         "xlc.round_rule": summary.get("round_rule", "dev"), "xlc.delivered": delivered(summary)})
        for r in summary["rounds"]:
            mlflow.log_metrics(round_metrics(r), step=r["round"])
        best = round_metrics(delivered_record(summary))  # the model in best/: a round or the average
        mlflow.log_metrics({f"delivered_{k}": v for k, v in best.items() if k in ROUND_METRICS})
        for path in [run.report, run.report_md, *(run.path / name for name in PLOTS)]:
            if path.is_file():
                mlflow.log_artifact(str(path))
        return active.info.run_id


def round_metrics(record: dict) -> dict[str, float]:
    """The numbers of one round's record that MLflow charts per step (the round)."""
    found: dict[str, float] = {}
    for name, (split, key) in ROUND_METRICS.items():
        value = (record.get(split) or {}).get(key)
        if value is not None:
            found[name] = float(value)
    for name in ("labeled", "selected", "pseudo_precision", "train_loss"):
        if record.get(name) is not None:
            found[name] = float(record[name])
    health = record.get("health") or {}
    if health.get("changed") is not None:
        found["pool_changed"] = float(health["changed"])
    if (health.get("confidence") or {}).get("all") is not None:
        found["pool_confidence"] = float(health["confidence"]["all"])
    return found


def _param(value: object) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."
