"""The run report: report.json (every fact), report.md (the round table) and the plots.

The plots (`xlc.plots`) are drawn from report.json alone, so `xlc report RUN_DIR` can redraw
them with report.md.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from xlc import files
from xlc._compat import package_version
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.modelcard import averaged, rounds_text
from xlc.plots import PLOTS, write_plots
from xlc.rundir import RunDir

log = logging.getLogger("xlc")

ROUND_RULES = {
    "dev": "the best dev accuracy (patience ends the run)",
    "last": "the last round (a fixed number of rounds: a dev set held out from the labeled data cannot "
            "tell which target-language round is best)",
    "average": "the average of the weights of {rounds} (every round of --max-rounds; patience does not apply)",
}
COLUMNS = ("round", "labeled", "pool", "selected", "per class", "pseudo prec.", "dev acc",
           "dev F1", "test acc", "test F1", "train s", "export s", "score s")


def build(config: SelfTrainConfig, classes: tuple[str, ...], rounds: list[dict], best_round: int,
          stop_reason: str, stop_code: str, data: dict | None = None, delivered: dict | None = None) -> dict:
    """report.json: the settings, every round's record, the best round and why the run stopped.

    `stop_reason` is a sentence for people; `stop_code` the same for programs (see loop.STOP_CODES).
    `data`: the sizes and languages of the run's data (`data_facts`), for the model cards.
    `delivered`: what `best/` holds when it is not round `best_round` (--select-round average: the rule,
    the rounds averaged, their average's dev and test metrics; see `modelcard.averaged`).
    """
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "classes": list(classes),
        "rounds": rounds,
        "best_round": best_round,
        "round_rule": config.round_rule,
        "stop_reason": stop_reason,
        "stop_code": stop_code,
        **({"data": data} if data is not None else {}),
        **({"delivered": delivered} if delivered is not None else {}),
        "versions": {d: package_version(d) for d in ("xlc", "torch", "transformers", "optimum-onnx",
                                                      "onnxruntime", "polars")},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }


def data_facts(frames: dict[str, pl.DataFrame | None]) -> dict:
    """Rows and languages (from the `lang` column, sorted; empty when unknown) of each data set."""
    present = {role: frame for role, frame in frames.items() if frame is not None}
    return {
        "sizes": {role: frame.height for role, frame in present.items()},
        "languages": {role: sorted(frame["lang"].drop_nulls().unique().to_list()) if "lang" in frame.columns else []
                      for role, frame in present.items()},
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


SEPARATOR = " · "


def per_class(counts: dict[str, int], width: int | None = None) -> str:
    """Texts selected per class, each after its class name: "World 40 · Sports 40"; "-" for none.

    `width`: lines of at most that many characters (a longer pair alone on its line), broken
    between pairs, never inside one (for a terminal, where a table cell wraps at spaces).
    """
    pairs = [f"{name} {n}" for name, n in counts.items()]
    if width is None:
        return SEPARATOR.join(pairs) or "-"
    lines: list[str] = []
    for pair in pairs:
        if lines and len(lines[-1]) + len(SEPARATOR) + len(pair) <= width:
            lines[-1] += SEPARATOR + pair
        else:
            lines.append(pair)
    return "\n".join(lines) or "-"


def table_rows(rounds: list[dict], per_class_width: int | None = None,
               average: dict | None = None) -> list[list[str]]:
    """One row of strings per round, in COLUMNS order; `per_class_width`: see `per_class`. With `average`
    (`averaged(summary)`), a last row with the averaged model's dev and test metrics."""
    rows = []
    for r in rounds:
        per_class_cell = per_class(r.get("selected_per_class", {}), per_class_width)
        t = r.get("timings", {})
        dev, test = r.get("dev", {}), r.get("test") or {}
        rows.append([
            str(r["round"]), str(r["labeled"]), str(r["pool"]), str(r["selected"]), per_class_cell,
            _fmt(r.get("pseudo_precision")), _fmt(dev.get("accuracy")), _fmt(dev.get("macro_f1")),
            _fmt(test.get("accuracy")), _fmt(test.get("macro_f1")),
            _fmt(t.get("train"), 1), _fmt(t.get("export"), 1),
            _fmt((t.get("score") or 0) + (t.get("evaluate") or 0), 1),
        ])
    if average:
        dev, test = average.get("dev") or {}, average.get("test") or {}
        rows.append([average_label(average), *["-"] * 5, _fmt(dev.get("accuracy")), _fmt(dev.get("macro_f1")),
                     _fmt(test.get("accuracy")), _fmt(test.get("macro_f1")), *["-"] * 3])
    return rows


def average_label(mean: dict) -> str:
    """The averaged model in a table cell: "avg 1-3"."""
    rounds = mean["rounds"]
    return f"avg {rounds[0]}" + (f"-{rounds[-1]}" if len(rounds) > 1 else "")


def delivered(summary: dict) -> str:
    """What `best/` holds, in words: "round 2", or "the average of the weights of rounds 1-3"."""
    mean = averaged(summary)
    return f"the average of the weights of {rounds_text(mean['rounds'])}" if mean else f"round {summary['best_round']}"


def delivered_record(summary: dict) -> dict:
    """The dev and test metrics of the model in `best/`: the average's, or the best round's record."""
    return averaged(summary) or summary["rounds"][summary["best_round"]]


NARROW_DROPS = ("score s", "export s", "train s", "dev F1", "test F1", "pool", "labeled", "selected",
                "pseudo prec.")
"""Columns a narrow terminal loses, in this order: timings, F1, sizes (report.md keeps them all)."""


def fit_columns(columns: Sequence[str], rows: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """The round table's columns that fit `width` characters, with their cells: `NARROW_DROPS` go in
    order until a table with rich's default box and padding (3 characters a column, 1 more) fits."""
    widths = {c: max(len(line) for text in [c, *(row[i] for row in rows)] for line in text.split("\n"))
              for i, c in enumerate(columns)}
    keep = list(columns)
    for drop in NARROW_DROPS:
        if 1 + sum(3 + widths[c] for c in keep) <= width:
            break
        keep.remove(drop)
    index = [columns.index(c) for c in keep]
    return keep, [[row[i] for i in index] for row in rows]


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


def best_round_note(summary: dict) -> str:
    """Say so when the delivered model is round 0: self-learning was tried and kept nothing."""
    if summary["best_round"] == 0 and len(summary["rounds"]) > 1:
        return "round 0, trained on the labeled data only: no self-learning round did better on dev"
    return ""


def chosen_by(summary: dict) -> str:
    """How the delivered model was chosen, in words (`ROUND_RULES`, with the rounds an average took)."""
    rule = ROUND_RULES.get(summary.get("round_rule", "dev"), "")
    mean = averaged(summary)
    return rule.format(rounds=rounds_text(mean["rounds"])) if mean else rule


def delivered_line(summary: dict) -> str:
    """report.md's line on the model in `best/`: the best round, or the average with its accuracy."""
    if mean := averaged(summary):
        accuracy = ", ".join(f"{split} accuracy {_fmt((mean.get(split) or {}).get('accuracy'))}"
                             for split in ("dev", "test") if mean.get(split))
        return f"- delivered model (in `best/`): {delivered(summary)}; {accuracy}"
    note = best_round_note(summary)
    return f"- best round: {summary['best_round']} (its model is in `best/`)" + (f"; {note}" if note else "")


def dev_source(summary: dict) -> str:
    """Where the dev set that chose epochs and rounds came from."""
    if summary.get("data", {}).get("dev_held_out"):
        share = summary["config"].get("dev_share")
        return (f"held out from the labeled training set ({share:.0%} of each class; no --dev given), so no "
                f"target-language labels chose the model")
    return "--dev" if summary["config"].get("dev") else "the demo's target-language dev set"


def health_lines(summary: dict) -> list[str]:
    """report.md's table of the label-free signals per round and language (rounds that scored the pool)."""
    rows = [r for r in summary["rounds"] if r.get("health")]
    if not rows:
        return []
    classes = summary["classes"]
    lines = ["", "## Pool health (no target labels needed)", "",
             f"Shares in % in the order {', '.join(classes)}; *changed* = pool texts whose predicted label "
             f"changed since the last round. A run's last round does not score the pool.", "",
             "| round | pool | changed | mean confidence | predicted shares | labeled shares |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        h = r["health"]
        labeled = " ".join(f"{100 * h['labeled_shares'][c]:.0f}" for c in classes)
        for key in h["confidence"]:
            changed = _fmt(h["changed"]) if key == "all" else ""
            predicted = " ".join(f"{100 * h['class_shares'][key][c]:.0f}" for c in classes)
            lines.append(f"| {r['round']} | {key} | {changed} | {_fmt(h['confidence'][key])} | {predicted} | "
                         f"{labeled if key == 'all' else ''} |")
    return lines


def markdown(summary: dict, plots: Sequence[Path] = ()) -> str:
    """report.md: settings, the round table, test accuracy per language, then the `plots`."""
    classes = summary["classes"]
    lines = [
        "# xlc self-training report",
        "",
        f"- selector: `{summary['config']['selector']}` {summary['config'].get('selector_options') or ''}",
        f"- model: `{summary['config']['model']}`",
        delivered_line(summary),
        f"- stopped: {summary['stop_reason']}",
        f"- dev set: {dev_source(summary)}",
        f"- delivered round chosen by: {chosen_by(summary)}",
        f"- classes: {', '.join(classes)}; per class = texts selected per class in the round",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    mean = averaged(summary)
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary["rounds"], average=mean)]
    records = [(str(r["round"]), r) for r in summary["rounds"]] + ([(average_label(mean), mean)] if mean else [])
    langs = sorted({lang for _, r in records for lang in (r.get("test") or {}).get("per_lang", {})})
    if langs:
        lines += ["", "## Test accuracy per language", "",
                  "| round | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
        for name, r in records:
            per = r["test"]["per_lang"]
            lines.append(f"| {name} | " + " | ".join(_fmt(per[x]["accuracy"]) for x in langs) + " |")
    lines += health_lines(summary)
    if plots:
        lines += ["", "## Plots", ""]
        for path in plots:
            lines += [f"![{PLOTS.get(path.name, path.stem)}]({path.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write(out: Path, summary: dict) -> list[Path]:
    """Write report.json, the plots and report.md into `out`; return the plot paths.

    A plot that fails is logged and left out: it never costs a finished run its report.
    """
    run = RunDir(out)
    files.write_json(run.report, summary)
    try:
        plots = write_plots(out, summary)
    except Exception as exc:  # noqa: BLE001 - plotting is a courtesy at the end of a long run
        log.warning("report plots not written: %s: %s (report.md and report.json are)",
                    type(exc).__name__, exc)
        plots = []
    files.write_text(run.report_md, markdown(summary, plots))
    return plots


def read(run_dir: Path) -> dict:
    """The report.json of a finished run folder, checked to be one."""
    source = RunDir(Path(run_dir)).report
    if not source.is_file():
        raise XlcError(f"{run_dir}: no report.json here; pass a folder written by `xlc selftrain`")
    try:
        summary = json.loads(source.read_text())
    except json.JSONDecodeError as exc:
        raise XlcError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("rounds"), list):
        raise XlcError(f"{source}: no rounds in it; is it an xlc run report?")
    return summary


def render(run_dir: Path) -> list[Path]:
    """Redraw report.md and the plots of a run folder from its report.json; return what was written."""
    run = RunDir(Path(run_dir))
    source = run.report
    summary = read(run_dir)
    try:
        markdown(summary)  # reads every field the report shows: a damaged file fails here, before any write
        plots = write_plots(run.path, summary)
        text = markdown(summary, plots)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise XlcError(f"{source}: not a report as `xlc selftrain` writes it ({type(exc).__name__}: {exc}); "
                       f"restore the file or run the self-training again") from None
    files.write_text(run.report_md, text)
    return [*plots, run.report_md]
