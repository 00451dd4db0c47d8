"""Writing the results: the Markdown report, the list of deviations from the paper and the PNG plots."""

from __future__ import annotations

from pathlib import Path

from xlc import plots
from xlc.config import DEFAULTS, show

from .profiles import BOOTSTRAP_RESAMPLES, COMPARISONS, METHODS, SELECTORS, Profile


def pct(stats: dict | None, sd: bool = True) -> str:
    if not stats:
        return "-"
    text = f"{100 * stats['mean']:.1f}"
    return text + (f" ± {100 * stats['sd']:.1f}" if sd and stats.get("n", 1) > 1 else "")


def render_markdown(result: dict) -> str:
    meta, lines = result["meta"], []
    smoke = result["profile"]["name"] == "smoke"
    lines += ["# Reproducing Dong & de Melo (2019) with xlc", ""]
    if smoke:
        lines += ["> **SMOKE RUN.** A tiny random encoder on a slice of the bundled demo: this file shows",
                  "> the shape of the results and checks the code path. Its numbers mean nothing.", ""]
    lines += [
        f"- command: `{meta['command']}`",
        f"- profile: **{result['profile']['name']}**: {result['profile']['note']}",
        f"- seeds: {', '.join(str(s) for s in result['profile']['seeds'])}; data slices are the same for "
        f"every seed (sampling seed 0); bootstrap: {BOOTSTRAP_RESAMPLES} resamples, numpy seed 0",
        f"- model: `{meta['model']}`; epochs per round {result['profile']['epochs']}, batch "
        f"{result['profile']['batch_size']}, lr {result['profile']['lr']}, max rounds "
        f"{result['profile']['max_rounds']}, patience {result['profile']['patience']}, embeddings "
        f"{'frozen' if result['profile']['freeze_embeddings'] else 'trained'}",
        f"- started {meta['started']}, wall time **{meta['wall_minutes']:.1f} minutes** for this invocation; "
        f"the runs reported here took **{meta['runs_minutes']:.1f} minutes** summed (runs finished by an "
        f"earlier invocation of the same `--work` folder are reused and counted here, not in the wall time)",
        f"- hardware: {meta['hardware']['cpu']} ({meta['hardware']['cores']} cores visible, torch threads "
        f"{meta['hardware']['torch_threads']}), GPU: {meta['hardware']['gpu']}, {meta['hardware']['platform']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "Accuracy and macro-F1 are on the target-language test sets, in percent, mean ± standard "
        "deviation over seeds. *zero-shot* is round 0 of the balanced run (English training only); "
        "each self-learning method reports its best round on the target dev set; *control* trains on "
        "the English data alone for at least as many optimiser steps as the balanced run took; "
        "*pool-prior* is the `prior` selector of the xlc-classprior plugin with `proportions=pool` "
        "and `per_lang=true` (as many texts as balanced, split across languages by pool size and "
        "across classes by each language pool's mean predicted class probabilities); "
        "*logreg* is a logistic regression on frozen mean-pooled embeddings (deterministic).",
        "",
    ]
    lines += ["## Summary", "", "Test accuracy, all target languages:", "",
              "| data set | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name, ds in result["datasets"].items():
        acc = ds["accuracy"]["all"]
        lines.append(f"| {name} | " + " | ".join(pct(acc.get(m)) for m in METHODS) + " |")
    labels = [f"{a} − {b}" for a, b in COMPARISONS]
    lines += ["", "Paired differences in accuracy points, with 95% bootstrap intervals:", "",
              "| data set | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, ds in result["datasets"].items():
        lines.append(f"| {name} | " + " | ".join(_ci(ds["bootstrap"].get(f"{a} - {b}")) for a, b in COMPARISONS)
                     + " |")
    for name, ds in result["datasets"].items():
        lines += dataset_markdown(name, ds)
    lines += ["", "## Deviations from the paper's protocol", ""]
    lines += [f"- {d}" for d in result["deviations"]]
    lines += ["", "## Same-compute control: what it matches and what it does not", "", CONTROL_NOTE]
    return "\n".join(lines) + "\n"


def _ci(boot: dict | None) -> str:
    if not boot:
        return "-"
    return f"{100 * boot['diff']:+.1f} [{100 * boot['low']:+.1f}, {100 * boot['high']:+.1f}]"


def dataset_markdown(name: str, ds: dict) -> list[str]:
    spec, methods = ds["spec"], ds["methods"]
    lines = ["", f"## {name}: {spec['title']}", "",
             f"Slices: English train {ds['sizes']['train']}, pool {ds['sizes']['pool']}, dev "
             f"{ds['sizes']['dev']}, test {ds['sizes']['test']} (target languages: {', '.join(ds['langs'])}); "
             f"classes: {', '.join(ds['classes'])}; Kt = {spec['kt']}; max length {ds['max_length']} tokens.",
             "", "### Test accuracy per target language (cf. the paper's Table 1)", "",
             "| language | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for scope, row in ds["accuracy"].items():
        label = "**all**" if scope == "all" else scope
        lines.append(f"| {label} | " + " | ".join(pct(row.get(m)) for m in methods) + " |")
    gap = ds.get("gap")
    if gap:
        closed = ", ".join(f"{m} {100 * v:+.0f}%" for m, v in gap["closed"].items() if v is not None)
        lines += ["", f"**Transfer gap**: round 0 scores {100 * gap['english']:.1f}% on held-out English and "
                  f"{100 * (gap['english'] - gap['gap']):.1f}% on the target languages, a gap of "
                  f"{100 * gap['gap']:.1f} points; share of it each method closes: {closed or '-'}."]
    lines += ["", "### Macro-F1, all target languages", "", "| " + " | ".join(methods) + " |",
              "|" + "---|" * len(methods), "| " + " | ".join(pct(ds["macro_f1"].get(m)) for m in methods) + " |"]
    if ds["precision"]:
        sels = [s for s in SELECTORS if s in ds["precision"]["all"]]
        lines += ["", "### Pseudo-label precision per language, all rounds (cf. the paper's Table 3)", "",
                  "| language | " + " | ".join(f"{s} (labels, all seeds)" for s in sels) + " |",
                  "|---|" + "---|" * len(sels)]
        for scope, row in ds["precision"].items():
            cells = [f"{pct(row.get(s))} ({row[s]['labels']})" if s in row else "-" for s in sels]
            lines.append(f"| {'**all**' if scope == 'all' else scope} | " + " | ".join(cells) + " |")
    shares = ds["class_shares"]
    cols = list(shares)
    lines += ["", "### Share of each class among the pseudo-labels (all rounds and seeds), %", "",
              "| class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c in ds["classes"]:
        lines.append(f"| {c} | " + " | ".join(f"{100 * shares[k][c]:.1f}" for k in cols) + " |")
    if ds["bootstrap"]:
        lines += ["", "### Paired bootstrap, all target languages (accuracy points)", "",
                  "| comparison | difference | 95% CI | resamples ≤ 0 | items × seeds |", "|---|---|---|---|---|"]
        for label, b in ds["bootstrap"].items():
            lines.append(f"| {label} | {100 * b['diff']:+.2f} | [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}] | "
                         f"{100 * b['share_not_above_zero']:.1f}% | {b['items']} × {b['seeds']} |")
    lines += ["", "### Runs", "", "| method | seed | group | rounds | best round | stop | pseudo-labels | "
              "train steps | epochs/round | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(ds["runs"], key=lambda s: (METHODS.index(s["method"]), s["seed"], s["group"])):
        lines.append(f"| {s['method']} | {s['seed']} | {s['group']} | {s['rounds']} | {s['best_round']} | "
                     f"{s['stop_reason']} | {s['pseudo_labels']} | {s['train_steps']} | "
                     f"{s['settings'].get('epochs', 'default')} | "
                     f"{s['seconds']['selftrain'] + s['seconds']['test']:.0f} |")
    lines += [""] + [f"![{name} {what}]({file})" for what, file in ds.get("plots", {}).items()]
    return lines


CONTROL_NOTE = (
    "The control is `xlc.selftrain(..., max_rounds=0, epochs=E)`: one round on the English "
    "labeled data, with E = ceil(S / ceil(|L| / batch)) where S is the number of optimiser steps "
    "the balanced run of the same seed took over all its rounds (each round trains the configured "
    "epochs on the labeled set of that round, which grows by the pseudo-labels). So the control "
    "gets at least as many gradient steps (and as many or more example-passes of *labeled* data) "
    "as self-learning, without pseudo-labels. It is not identical compute in every respect: "
    "self-learning restarts AdamW with a fresh warm-up and linear decay every round (warm start "
    "from the previous round's weights), whereas the control runs one long schedule; the control "
    "repeats the same few English texts many times, while self-learning sees new target-language "
    "texts; self-learning also spends time scoring the pool (inference, not training); and the "
    "control has no dev-based choice between rounds (its only round is its result), whereas "
    "self-learning keeps its best round on the dev set. The extra steps of self-learning that "
    "come after its best round are counted too, which favours the control."
)


def deviations(profile: Profile) -> list[str]:
    out = [
        "Encoder: multilingual-e5-small (118 M parameters, mean pooling, linear head) instead of "
        "multilingual BERT; `--model PATH` runs any local Hugging Face encoder (pass `--lr 3e-5` for "
        "base-size ones).",
        "Data: stand-ins for the paper's sets (SIB-200 topics for MLDoc, ChnSentiCorp hotel reviews "
        "with English movie-review sentences for Yelp -> Chinese hotels, XLM-T tweets); the "
        "published numbers are on other data and are not comparable one to one.",
        "Every round continues from the previous round's model (warm start) with a fresh optimiser.",
        "Ordinal MSE (the paper's Table 2) is not reported: none of these data sets has ordinal labels "
        "(`xlc evaluate --ordinal` computes it for data that has).",
        f"Throttling takes n = Kt × classes texts per round (as many as balanced at most); "
        f"thresholded takes every text with confidence >= {profile.threshold}.",
    ]
    if profile.pooled:
        out.append("Target languages are pooled: one run per selector and seed for all target languages "
                   "of a data set (one pool, one dev set for early stopping), instead of one run per "
                   "language. Balanced takes Kt per class from the pooled pool, so about Kt / languages "
                   "per language and class.")
    if profile.head_lr != DEFAULTS.head_lr:
        out.append(f"Head learning rate {profile.head_lr:g} (xlc's default is {show(DEFAULTS.head_lr)}): "
                   f"with so few steps per round the default head barely learns (round-0 dev accuracy on "
                   f"SIB-200, 1 epoch: 0.31 with 1e-3, 0.48 with 1e-2; 2 epochs with 1e-2: 0.70 to 0.76).")
    if profile.freeze_embeddings:
        out.append("The word-embedding table is frozen (30-40% faster steps on a CPU).")
    sliced = [d for d in profile.data if any(v is not None for v in (d.train, d.pool, d.dev, d.test))]
    for d in sliced:
        out.append(f"{d.name}: slices, not the full sets: English train {d.train or 'all'}, per target "
                   f"language pool {d.pool or 'all'}, dev {d.dev or 'all'}, test {d.test or 'all'}.")
    out.append(f"Max length: the 95th percentile of token counts of train + pool, capped at "
               f"{profile.max_length_cap} tokens.")
    out.append(f"Self-learning rounds after round 0: at most {profile.max_rounds}, patience "
               f"{profile.patience}; epochs per round: {profile.epochs}.")
    if not profile.test_every_round:
        out.append("Test sets are scored only with the best and the round-0 models (not every round), "
                   "to save time.")
    return out


def write_plots(out: Path, stem: str, name: str, ds: dict) -> dict[str, str]:
    """Bars of accuracy per language and method; class shares per selector; rounds per selector."""
    drawn = {}
    fig = plots.figure(max(7.5, 1.1 * len(ds["accuracy"]) + 3), 4.4)
    ax = fig.subplots()
    groups = list(ds["accuracy"])
    plots.grouped_bars(ax, groups, {m: [ds["accuracy"][g].get(m, {}).get("mean") for g in groups]
                                     for m in ds["methods"]},
                        {m: [ds["accuracy"][g].get(m, {}).get("sd") for g in groups] for m in ds["methods"]})
    low = min((v["mean"] for row in ds["accuracy"].values() for v in row.values()), default=0)
    ax.set_ylim(max(0, low - 0.1), 1)
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    ax.set_title(f"{name}: test accuracy per target language and method")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    drawn["accuracy"] = plots.save_png(fig, out / f"{stem}-{name}-accuracy.png").name

    shares = ds["class_shares"]
    if len(shares) > 1:
        fig = plots.figure(7.5, 4.2)
        ax = fig.subplots()
        plots.stacked_bars(ax, list(shares), {c: [shares[k][c] for k in shares] for c in ds["classes"]})
        ax.set_ylabel("share of pseudo-labels")
        ax.set_title(f"{name}: class of the pseudo-labels, per selector (all rounds and seeds)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        drawn["pseudo-label classes"] = plots.save_png(fig, out / f"{stem}-{name}-classes.png").name

    if ds["rounds"]:
        fig = plots.figure(10, 4)
        axes = fig.subplots(1, 2)
        for (method, row), color in zip(ds["rounds"].items(), plots.colors(len(ds["rounds"])), strict=True):
            for ax, key in zip(axes, ("dev_accuracy", "pseudo_precision"), strict=True):
                ys = row[key]
                ax.plot(range(len(ys)), plots.gaps(ys), marker="o", color=color, label=method)
        axes[0].set_title("dev accuracy per round (mean over seeds)")
        axes[1].set_title("pseudo-label precision per round (mean over seeds)")
        longest = max(len(row["dev_accuracy"]) for row in ds["rounds"].values())
        for ax in axes:
            ax.set_xlabel("round")
            ax.set_xticks(range(longest))
            ax.set_xlim(-0.3, longest - 0.7)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, frameon=False)
        drawn["rounds"] = plots.save_png(fig, out / f"{stem}-{name}-rounds.png").name
    return drawn
