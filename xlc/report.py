"""The run report: report.json (every fact), report.md (the round table) and PNG plots.

The plots are drawn from report.json alone, so `xlc report RUN_DIR` can redraw them:
accuracy (dev and test) per round and language, pseudo-label precision per round, and the
class distribution of the pseudo-labels each round (where a selector's drift to the majority
class shows). matplotlib draws them headless (Agg), imported only when plotting.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from xlc import files
from xlc._compat import package_version
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.rundir import RunDir

log = logging.getLogger("xlc")

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = ("round", "labeled", "pool", "selected", "per class", "pseudo prec.", "dev acc",
           "dev F1", "test acc", "test F1", "train s", "export s", "score s")


def build(config: SelfTrainConfig, classes: tuple[str, ...], rounds: list[dict], best_round: int,
          stop_reason: str, stop_code: str) -> dict:
    """report.json: the settings, every round's record, the best round and why the run stopped.

    `stop_reason` is a sentence for people; `stop_code` the same for programs (see loop.STOP_CODES).
    """
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "classes": list(classes),
        "rounds": rounds,
        "best_round": best_round,
        "stop_reason": stop_reason,
        "stop_code": stop_code,
        "versions": {d: package_version(d) for d in ("xlc", "torch", "transformers", "optimum-onnx",
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


def best_round_note(summary: dict) -> str:
    """Say so when the delivered model is round 0: self-learning was tried and kept nothing."""
    if summary["best_round"] == 0 and len(summary["rounds"]) > 1:
        return "round 0, trained on the labelled data only: no self-learning round did better on dev"
    return ""


def markdown(summary: dict, plots: Sequence[Path] = ()) -> str:
    """report.md: settings, the round table, test accuracy per language, then the `plots`."""
    classes = summary["classes"]
    lines = [
        "# xlc self-training report",
        "",
        f"- selector: `{summary['config']['selector']}` {summary['config'].get('selector_options') or ''}",
        f"- model: `{summary['config']['model']}`",
        f"- best round: {summary['best_round']} (its model is in `best/`)"
        + (f"; {best_round_note(summary)}" if best_round_note(summary) else ""),
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


def render(run_dir: Path) -> list[Path]:
    """Redraw report.md and the plots of a run folder from its report.json; return what was written."""
    run = RunDir(Path(run_dir))
    source = run.report
    if not source.is_file():
        raise XlcError(f"{run_dir}: no report.json here; pass a folder written by `xlc selftrain`")
    try:
        summary = json.loads(source.read_text())
    except json.JSONDecodeError as exc:
        raise XlcError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("rounds"), list):
        raise XlcError(f"{source}: no rounds in it; is it an xlc run report?")
    try:
        markdown(summary)  # reads every field the report shows: a damaged file fails here, before any write
        plots = write_plots(run.path, summary)
        text = markdown(summary, plots)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise XlcError(f"{source}: not a report as `xlc selftrain` writes it ({type(exc).__name__}: {exc}); "
                       f"restore the file or run the self-training again") from None
    files.write_text(run.report_md, text)
    return [*plots, run.report_md]


# ---- plots ------------------------------------------------------------------------------------

PLOTS = {
    "accuracy.png": "accuracy per round",
    "pseudo_precision.png": "pseudo-label precision per round",
    "pseudo_classes.png": "pseudo-labels per class per round",
}


def figure(width: float = 7.5, height: float = 4.2) -> Figure:
    """A matplotlib figure drawn by Agg, without pyplot (no global state, no display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_png(fig: Figure, path: Path) -> Path:
    """Save `fig` as a PNG atomically."""
    with files.atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def colors(n: int) -> list:
    """`n` distinct colours (tab10, then tab20)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def accuracy_series(rounds: list[dict], split: str) -> dict[str, list[float | None]]:
    """Accuracy per round for `split`: "all" plus one series per language, None where absent."""
    series: dict[str, list[float | None]] = {"all": []}
    langs = sorted({x for r in rounds for x in ((r.get(split) or {}).get("per_lang") or {})})
    for lang in langs:
        series[lang] = []
    for r in rounds:
        metrics = r.get(split) or {}
        series["all"].append(metrics.get("accuracy"))
        for lang in langs:
            series[lang].append(((metrics.get("per_lang") or {}).get(lang) or {}).get("accuracy"))
    return series


def plot_accuracy(summary: dict, path: Path) -> Path | None:
    """Dev and test accuracy per round, one line per target language and a bold line for all."""
    rounds = summary["rounds"]
    splits = [s for s in ("dev", "test") if any((r.get(s) or {}).get("accuracy") is not None for r in rounds)]
    if not splits:
        return None
    fig = figure(5.2 * len(splits) + 1.6, 4.2)
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    x = [r["round"] for r in rounds]
    best = summary.get("best_round")
    for ax, split in zip(axes, splits, strict=True):
        series = accuracy_series(rounds, split)
        langs = [k for k in series if k != "all"]
        for lang, color in zip(langs, colors(len(langs)), strict=True):
            ax.plot(x, _nan(series[lang]), marker="o", ms=3, lw=1.2, color=color, label=lang)
        ax.plot(x, _nan(series["all"]), marker="o", lw=2.6, color="black", label="all")
        if best is not None and best >= 0:
            ax.axvline(best, color="grey", ls=":", lw=1)
            ax.annotate(" best round", (best, 0.02), xycoords=("data", "axes fraction"), ha="left",
                        va="bottom", fontsize=8, color="grey")
        ax.set_title(f"{split} accuracy")
        ax.set_xlabel("round (0 = source-language training only)")
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"Accuracy per round, selector {summary['config'].get('selector', '?')}")
    return save_png(fig, path)


def plot_pseudo_precision(summary: dict, path: Path) -> Path | None:
    """Share of correct pseudo-labels per selecting round (needs gold labels in the pool)."""
    rows = [r for r in summary["rounds"] if r.get("pseudo_precision") is not None]
    if not rows:
        return None
    fig = figure(6.5, 3.8)
    ax = fig.subplots()
    x = [r["round"] for r in rows]
    y = [r["pseudo_precision"] for r in rows]
    ax.plot(x, y, marker="o", lw=2, color="tab:blue")
    for xi, yi, r in zip(x, y, rows, strict=True):
        ax.annotate(f"{yi:.2f}\n({r['selected']} texts)", (xi, yi), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.margins(x=0.12)
    ax.set_xticks(x)
    ax.set_xlabel("round whose model chose the pseudo-labels")
    ax.set_ylabel("precision (pseudo-label = hidden gold)")
    ax.set_title(f"Pseudo-label precision, selector {summary['config'].get('selector', '?')}")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def plot_pseudo_classes(summary: dict, path: Path) -> Path | None:
    """Pseudo-labels added per round, stacked by class: a drift to one class shows as one colour."""
    classes = summary["classes"]
    rows = [r for r in summary["rounds"] if r.get("selected")]
    if not rows:
        return None
    fig = figure(6.5 + 0.15 * len(classes), 4.0)
    ax = fig.subplots()
    labels = [str(r["round"]) for r in rows]
    counts = {c: [r.get("selected_per_class", {}).get(c, 0) for r in rows] for c in classes}
    stacked_bars(ax, labels, counts)
    for i, r in enumerate(rows):
        ax.annotate(str(r["selected"]), (i, r["selected"]), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8)
    ax.set_xlabel("round whose model chose the pseudo-labels")
    ax.set_ylabel("pseudo-labelled texts")
    ax.set_title(f"Pseudo-labels per class, selector {summary['config'].get('selector', '?')}")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    return save_png(fig, path)


def stacked_bars(ax, labels: Sequence[str], series: dict[str, Sequence[float]]) -> None:
    """One bar per label, stacked by the keys of `series` (e.g. classes)."""
    bottom = [0.0] * len(labels)
    for (name, values), color in zip(series.items(), colors(len(series)), strict=True):
        ax.bar(range(len(labels)), values, bottom=bottom, color=color, label=name, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(labels)), labels)


def grouped_bars(ax, groups: Sequence[str], series: dict[str, Sequence[float | None]],
                 errors: dict[str, Sequence[float | None]] | None = None) -> None:
    """Bars of each `series` side by side within each of `groups`, with optional error bars."""
    width = 0.8 / max(1, len(series))
    for k, ((name, values), color) in enumerate(zip(series.items(), colors(len(series)), strict=True)):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(groups))]
        err = _nan(errors[name]) if errors and name in errors else None
        ax.bar(xs, _nan(values), width=width * 0.95, yerr=err, capsize=2, color=color, label=name)
    ax.set_xticks(range(len(groups)), groups)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def write_plots(out: Path, summary: dict) -> list[Path]:
    """Draw every plot that the report has data for into `out`; return the files written."""
    written = []
    for name, draw in (("accuracy.png", plot_accuracy), ("pseudo_precision.png", plot_pseudo_precision),
                       ("pseudo_classes.png", plot_pseudo_classes)):
        path = draw(summary, out / name)
        if path is not None:
            written.append(path)
        elif (out / name).exists():  # a stale plot of data the report no longer has
            (out / name).unlink()
    return written
