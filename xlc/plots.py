"""The run's PNG plots, drawn from report.json alone (matplotlib, headless Agg, imported only here).

accuracy.png: dev and test accuracy per round and language; pseudo_precision.png: the share of
correct pseudo-labels per round (with gold labels for the pool); pseudo_classes.png: the
pseudo-labels per class each round, where a selector's drift to the majority class shows;
health.png: the label-free signals per round (`xlc.health`), for runs without target labels.
`figure`, `save_png`, `colors`, `stacked_bars`, `grouped_bars` and `gaps` are the building
blocks the benchmarks draw with too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xlc import files
from xlc.modelcard import averaged, rounds_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure


PLOTS = {
    "accuracy.png": "accuracy per round",
    "pseudo_precision.png": "pseudo-label precision per round",
    "pseudo_classes.png": "pseudo-labels per class per round",
    "health.png": "label-free health per round",
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
    mean = averaged(summary)  # --select-round average: a level line for the delivered average, no best round
    for ax, split in zip(axes, splits, strict=True):
        series = accuracy_series(rounds, split)
        langs = [k for k in series if k != "all"]
        for lang, color in zip(langs, colors(len(langs)), strict=True):
            ax.plot(x, gaps(series[lang]), marker="o", ms=3, lw=1.2, color=color, label=lang)
        ax.plot(x, gaps(series["all"]), marker="o", lw=2.6, color="black", label="all")
        if mean and (mean.get(split) or {}).get("accuracy") is not None:
            ax.axhline(mean[split]["accuracy"], color="black", ls="--", lw=1.2,
                       label=f"average of {rounds_text(mean['rounds'])}")
        elif best is not None and best >= 0:
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
    ax.set_ylabel("pseudo-labeled texts")
    ax.set_title(f"Pseudo-labels per class, selector {summary['config'].get('selector', '?')}")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    return save_png(fig, path)


def plot_health(summary: dict, path: Path) -> Path | None:
    """Pool labels changed since the last round, and mean pool confidence per language, per round."""
    rows = [r for r in summary["rounds"] if r.get("health")]
    if not rows:
        return None
    fig = figure(10.5, 3.8)
    changed_ax, confidence_ax = fig.subplots(1, 2)
    x = [r["round"] for r in rows]
    changed_ax.plot(x, gaps([r["health"]["changed"] for r in rows]), marker="o", lw=2, color="black")
    changed_ax.set_ylim(bottom=0)
    changed_ax.set_title("pool labels changed since the last round")
    changed_ax.set_ylabel("share of pool texts")
    keys = sorted({k for r in rows for k in r["health"]["confidence"]} - {"all"})
    for key, color in zip(keys, colors(len(keys)), strict=True):
        confidence_ax.plot(x, gaps([r["health"]["confidence"].get(key) for r in rows]), marker="o", ms=3,
                           lw=1.2, color=color, label=key)
    confidence_ax.plot(x, gaps([r["health"]["confidence"].get("all") for r in rows]), marker="o", lw=2.6,
                       color="black", label="all")
    confidence_ax.set_title("mean pool confidence")
    confidence_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    for ax in (changed_ax, confidence_ax):
        ax.set_xticks(x)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    fig.suptitle("Label-free health of the pool (no target labels needed)")
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
        err = gaps(errors[name]) if errors and name in errors else None
        ax.bar(xs, gaps(values), width=width * 0.95, yerr=err, capsize=2, color=color, label=name)
    ax.set_xticks(range(len(groups)), groups)


def gaps(values: Sequence[float | None]) -> list[float]:
    """The values with None as NaN, which matplotlib draws as a gap."""
    return [float("nan") if v is None else v for v in values]


def write_plots(out: Path, summary: dict) -> list[Path]:
    """Draw every plot that the report has data for into `out`; return the files written."""
    written = []
    for name, draw in (("accuracy.png", plot_accuracy), ("pseudo_precision.png", plot_pseudo_precision),
                       ("pseudo_classes.png", plot_pseudo_classes), ("health.png", plot_health)):
        path = draw(summary, out / name)
        if path is not None:
            written.append(path)
        elif (out / name).exists():  # a stale plot of data the report no longer has
            (out / name).unlink()
    return written
