"""The run report: report.json (every fact) and report.md (the round table)."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import polars as pl

from xlc import files
from xlc.config import SelfTrainConfig

COLUMNS = ("round", "labeled", "pool", "selected", "per class", "pseudo prec.", "dev acc",
           "dev F1", "test acc", "test F1", "train s", "export s", "score s")


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def build(config: SelfTrainConfig, classes: tuple[str, ...], rounds: list[dict], best_round: int,
          stop_reason: str) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "classes": list(classes),
        "rounds": rounds,
        "best_round": best_round,
        "stop_reason": stop_reason,
        "versions": {d: _version(d) for d in ("xlc", "torch", "transformers", "optimum-onnx",
                                               "onnxruntime", "polars")},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(rounds: list[dict]) -> list[list[str]]:
    """One row of strings per round, in COLUMNS order."""
    rows = []
    for r in rounds:
        per_class = " ".join(str(n) for n in r.get("selected_per_class", {}).values()) or "-"
        t = r.get("timings", {})
        dev, test = r.get("dev", {}), r.get("test") or {}
        rows.append([
            str(r["round"]), str(r["labeled"]), str(r["pool"]), str(r["selected"]), per_class,
            _fmt(r.get("pseudo_precision")), _fmt(dev.get("accuracy")), _fmt(dev.get("macro_f1")),
            _fmt(test.get("accuracy")), _fmt(test.get("macro_f1")),
            _fmt(t.get("train"), 1), _fmt(t.get("export"), 1),
            _fmt((t.get("score") or 0) + (t.get("evaluate") or 0), 1),
        ])
    return rows


def rounds_frame(rounds: list[dict]) -> pl.DataFrame:
    """Per-round metrics as a flat Polars frame."""
    return pl.DataFrame([
        {
            "round": r["round"], "labeled": r["labeled"], "pool": r["pool"], "selected": r["selected"],
            "pseudo_precision": r.get("pseudo_precision"),
            "dev_accuracy": r["dev"]["accuracy"], "dev_macro_f1": r["dev"]["macro_f1"],
            "test_accuracy": (r.get("test") or {}).get("accuracy"),
            "test_macro_f1": (r.get("test") or {}).get("macro_f1"),
            "train_loss": r.get("train_loss"),
            **{f"{k}_seconds": v for k, v in r.get("timings", {}).items()},
        }
        for r in rounds
    ], infer_schema_length=None)


def markdown(summary: dict) -> str:
    classes = summary["classes"]
    lines = [
        "# xlc self-training report",
        "",
        f"- selector: `{summary['config']['selector']}` {summary['config'].get('selector_options') or ''}",
        f"- model: `{summary['config']['model']}`",
        f"- best round: {summary['best_round']} (its model is in `best/`)",
        f"- stopped: {summary['stop_reason']}",
        f"- per class = texts selected per class in the order: {', '.join(classes)}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary["rounds"])]
    langs = sorted({lang for r in summary["rounds"] for lang in (r.get("test") or {}).get("per_lang", {})})
    if langs:
        lines += ["", "## Test accuracy per language", "",
                  "| round | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
        for r in summary["rounds"]:
            per = r["test"]["per_lang"]
            lines.append(f"| {r['round']} | " + " | ".join(_fmt(per[x]["accuracy"]) for x in langs) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, summary: dict) -> None:
    files.write_json(out / "report.json", summary)
    files.write_text(out / "report.md", markdown(summary))
