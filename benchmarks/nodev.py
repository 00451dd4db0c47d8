"""Which model to deliver when there are no target-language labels: measure the rules.

A user without labeled target-language data cannot pick epochs or rounds on a target dev set.
This benchmark trains as `xlc selftrain` does without `--dev`: a stratified share of the English
training set is held out as the dev set (`--dev-share`, xlc's default), epochs are chosen on it,
and every round is kept. The target labels, which such a user lacks, are used only to grade the
rules afterwards. Per data set and seed it runs round 0 (English only), the paper's `balanced`
loop for `--rounds` rounds (warm start, Kt per class) and one round of soft self-distillation
(a fresh student on the English gold and the whole pool with round 0's probabilities as
targets), and records after every round: the target test predictions, the English dev and the
target dev accuracy, and label-free pool signals (share of pool labels changed since the last
round, mean confidence, distance of the predicted class shares from the English ones).
`--methods` adds the same-compute control (the same warm-started rounds on English alone, each
as many optimiser steps as the default's), bbse (balanced's rounds with each round's texts split
across classes by the pool's class shares from black-box shift estimation on the English dev set),
noisy (balanced's rounds with Noisy Student's input noise: while training, each pseudo-labeled
text hides a random `--noise` share of its tokens from the trained layers, anew in every batch)
and weight averaging (each method's rounds 1..k with their weights averaged into one model).
`--merge` combines results files of the same settings (other methods or seeds) into one.
Each data set's `bootstrap["default - control"]` compares what `xlc selftrain` delivers without `--dev`
(balanced with `--student-noise`, i.e. noisy at xlc's default `--noise`, else plain balanced; its rounds
averaged, `--select-round average`; the last round in a run without `--methods control,average`) with
the control delivered the same way; `steps` holds both runs' optimiser steps.

The rules, each choosing one round per run:
- round0: never self-train (zero-shot);
- fixed-K: K rounds, the last one delivered (`--select-round last` with `--max-rounds K`; fixed-R,
  R = `--rounds`, is the last round of the run);
- english-dev: the best round on the held-out English dev set (earliest on ties);
- stable: the first round whose pool labels changed by less than `--stable` since the round
  before, else the last (label-free);
- target-dev: the best round on the target dev set: what a user with target labels gets (reference);
- oracle: the best round on the target test set (an upper bound no rule can reach).

Like benchmarks/methods.py, models train their top `--train-layers` layers on cached
lower-layer features, so the screen fits a CPU.

    python benchmarks/nodev.py --out benchmarks/results/nodev
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods import SETS, Screen, balanced, bootstrap, dump, load, run_screens, screen_arguments  # noqa: E402

from xlc import data as data_mod  # noqa: E402
from xlc import model  # noqa: E402
from xlc.config import DEFAULTS  # noqa: E402

log = logging.getLogger("nodev")
RULES = ("round0", "fixed", "english-dev", "stable", "target-dev", "oracle")
"""`fixed` stands for one rule per number of rounds, fixed-1 ... fixed-R (see `rules`)."""


class NoDevScreen(Screen):
    """A method screen whose epochs are chosen on an English dev split held out from the training set."""

    select_on = "endev"

    def __init__(self, spec, args: argparse.Namespace) -> None:
        super().__init__(spec, args)
        train, endev = data_mod.split_dev(self.parts["train"], args.dev_share, seed=0)
        self.parts["train"], self.parts["endev"] = train, endev

    def observe(self, clf: model.Classifier, steps: int) -> dict:
        """What a round leaves: test predictions, both dev accuracies, the pool's probabilities."""
        acc = {role: float(np.mean(self.probs(clf, role).argmax(1) == self.y(role))) for role in ("endev", "dev")}
        return {"steps": steps, "test_pred": self.probs(clf, "test").argmax(1).tolist(),
                "endev_accuracy": acc["endev"], "dev_accuracy": acc["dev"], "pool_probs": self.probs(clf, "pool")}

    def self_train(self, clf: model.Classifier, start: dict, first: dict, pick, seed: int, noisy: bool = False):
        """`--rounds` warm-started rounds from round 0: `pick(probs, remaining, clf)` chooses the pool texts
        that join the labeled set with their predicted labels (`noisy`: they train with `--noise` as xlc's
        `--student-noise`).
        Returns each round's record, the pool still unlabeled before each round's scoring, the weights each
        round changed, and each round's steps."""
        en = self.parts["train"]
        labeled_t, labeled_y = en["text"].to_list(), list(self.y("train"))
        pool_texts = self.parts["pool"]["text"].to_list()
        remaining = np.ones(len(pool_texts), dtype=bool)
        rounds, pools, states, steps = [first], [remaining.copy()], [], []
        probs = first["pool_probs"]
        for rnd in range(1, self.args.rounds + 1):
            chosen = pick(probs, remaining, clf)
            remaining[chosen] = False
            labeled_t += [pool_texts[i] for i in chosen]
            labeled_y += [int(probs[i].argmax()) for i in chosen]
            res = self.train(clf, labeled_t, np.array(labeled_y), seed + rnd, self.args.epochs,
                             pseudo=np.arange(len(labeled_t)) >= len(en),
                             student_noise=self.args.noise if noisy else 0.0)
            steps.append(res.steps)
            states.append(_changed(clf, start))
            rounds.append(self.observe(clf, rounds[-1]["steps"] + res.steps))
            picked = probs[chosen].argmax(1)
            precision = float(np.mean(picked == self.y("pool")[chosen])) if len(chosen) else None
            rounds[-1] |= {"pseudo_precision": precision,
                           "pseudo_counts": np.bincount(picked, minlength=len(self.classes)).tolist()}
            pools.append(remaining.copy())
            probs = rounds[-1]["pool_probs"]
        return rounds, pools, states, steps

    def run_seed(self, seed: int) -> dict:
        a, en = self.args, self.parts["train"]
        methods = a.methods.split(",")
        en_texts, en_y = en["text"].to_list(), self.y("train")
        pool_texts = self.parts["pool"]["text"].to_list()
        clock = time.perf_counter()
        teacher = self.fresh()
        r0 = self.train(teacher, en_texts, en_y, seed, a.epochs)
        first = self.observe(teacher, r0.steps)
        start = {k: v.clone() for k, v in teacher.model.state_dict().items()}
        runs, pools, states = {}, {}, {}
        picks = {"balanced": lambda probs, remaining, clf: balanced(probs, remaining, self.spec.kt)}
        if "bbse" in methods:
            picks["bbse"] = lambda probs, remaining, clf: by_shares(
                probs, remaining, self.spec.kt * len(self.classes),
                bbse_shares(self.probs(clf, "endev"), self.y("endev"), probs[remaining]))
        if "noisy" in methods:
            picks["noisy"] = picks["balanced"]
        for name, pick in picks.items():
            clf = teacher if name == "balanced" else self.fresh()
            clf.model.load_state_dict(start)
            runs[name], pools[name], states[name], steps = self.self_train(clf, start, first, pick, seed,
                                                                           noisy=name == "noisy")
            if name == "balanced":
                round_steps, kept = steps, clf
        clf = kept
        if "control" in methods:
            states["control"] = []
            # the same rounds on English alone: warm start, each round as many steps as balanced's
            clf.model.load_state_dict(start)
            runs["control"] = [first]
            for rnd, steps in enumerate(round_steps, start=1):
                res = self.train(clf, en_texts, en_y, seed + rnd, a.epochs, max_steps=steps, patience=0)
                states["control"].append(_changed(clf, start))
                runs["control"].append(self.observe(clf, runs["control"][-1]["steps"] + res.steps))
            pools["control"] = [pools["balanced"][0]] * len(runs["control"])
        if "average" in methods:
            for name in [m for m in ("balanced", "bbse", "noisy", "control") if m in runs]:
                runs[f"{name}-avg"], pools[f"{name}-avg"] = self.averaged(clf, states[name], runs[name]), pools[name]
        if "soft" in methods:
            student = self.fresh()
            labels = np.concatenate([np.eye(len(self.classes))[en_y], first["pool_probs"]]).astype(np.float32)
            res = self.train(student, en_texts + pool_texts, labels, seed + 100, a.distill_epochs)
            runs["soft"] = [first, self.observe(student, r0.steps + res.steps)]
            pools["soft"] = [pools["balanced"][0]] * 2
        shares = np.bincount(en_y, minlength=len(self.classes)) / len(en_y)
        for name, rounds in runs.items():
            runs[name] = [_signals(r, prev, mask, shares) for r, prev, mask in
                          zip(rounds, [None, *rounds[:-1]], pools[name], strict=True)]
        log.info("%s seed %d done in %.0f s", self.spec.name, seed, time.perf_counter() - clock)
        return runs

    def averaged(self, clf: model.Classifier, states: list[dict], rounds: list[dict]) -> list[dict]:
        """Rounds 1..k of a method with the weights of its rounds 1..k averaged, for every k (round 0 as is)."""
        keep = {k: v.clone() for k, v in clf.model.state_dict().items() if k in states[0]}
        out = [rounds[0]]
        for k in range(1, len(states) + 1):
            mean = {name: torch.stack([s[name] for s in states[:k]]).mean(0) for name in states[0]}
            clf.model.load_state_dict(mean, strict=False)
            out.append(self.observe(clf, rounds[k]["steps"]) | {
                key: rounds[k][key] for key in ("pseudo_precision", "pseudo_counts") if key in rounds[k]})
        clf.model.load_state_dict(keep, strict=False)
        return out


def bbse_shares(dev_probs: np.ndarray, dev_y: np.ndarray, pool_probs: np.ndarray) -> np.ndarray:
    """The pool's class shares by black-box shift estimation, as the `prior` selector's `proportions=bbse`
    computes them (`xlc_classprior.bbse_shares`), from held-out labeled predictions and the pool's."""
    from sklearn.metrics import confusion_matrix
    from xlc_classprior import bbse_shares as estimate

    k = pool_probs.shape[1]
    confusion = confusion_matrix(dev_y, dev_probs.argmax(1), labels=range(k))  # rows gold, columns predicted
    return estimate(confusion, np.bincount(pool_probs.argmax(1), minlength=k))


def by_shares(probs: np.ndarray, remaining: np.ndarray, total: int, shares: np.ndarray) -> np.ndarray:
    """Indices of the most confident remaining texts per predicted class, `total` in all, split by `shares`."""
    label, conf = probs.argmax(1), probs.max(1)
    chosen = []
    for c, n in enumerate(np.round(total * shares).astype(int)):
        idx = np.flatnonzero(remaining & (label == c))
        chosen += idx[np.argsort(-conf[idx], kind="stable")][:n].tolist()
    return np.array(sorted(chosen), dtype=int)


def _changed(clf: model.Classifier, start: dict) -> dict:
    """The floating-point tensors of `clf` that training changed since `start`, copied."""
    return {k: v.detach().clone() for k, v in clf.model.state_dict().items()
            if v.is_floating_point() and not torch.equal(v, start[k])}


def _signals(now: dict, before: dict | None, pool: np.ndarray, shares: np.ndarray) -> dict:
    """A round's record with its label-free pool signals, measured on the texts still in the pool."""
    probs = now["pool_probs"][pool]
    pred = probs.argmax(1)
    found = np.bincount(pred, minlength=probs.shape[1]) / max(1, len(pred))
    out = {k: v for k, v in now.items() if k != "pool_probs"}
    out["changed"] = None if before is None else float(np.mean(before["pool_probs"][pool].argmax(1) != pred))
    out["confidence"] = float(probs.max(1).mean())
    out["share_distance"] = float(0.5 * np.abs(found - shares).sum())  # total variation from English's shares
    return out


def rules(rounds: int) -> list[str]:
    """Every rule's name, with fixed-K for K = 1 .. `rounds`."""
    return [x for rule in RULES for x in ([f"fixed-{k}" for k in range(1, rounds + 1)] if rule == "fixed" else [rule])]


def choose(rule: str, rounds: list[dict], gold: np.ndarray, stable: float) -> int:
    """The round `rule` delivers."""
    if rule == "round0":
        return 0
    if rule.startswith("fixed-"):
        return min(int(rule.split("-")[1]), len(rounds) - 1)
    if rule == "stable":
        return next((i for i, r in enumerate(rounds) if i and r["changed"] < stable), len(rounds) - 1)
    key = {"english-dev": lambda r: r["endev_accuracy"], "target-dev": lambda r: r["dev_accuracy"],
           "oracle": lambda r: float(np.mean(np.array(r["test_pred"]) == gold))}[rule]
    return max(range(len(rounds)), key=lambda i: (key(rounds[i]), -i))


def summarise(screen: NoDevScreen, runs: dict[int, dict], stable: float) -> dict:
    gold = screen.y("test")
    out: dict = {"sizes": {k: v.height for k, v in screen.parts.items()}, "methods": {}, "bootstrap": {}}
    picks: dict[str, dict[str, list[np.ndarray]]] = {}
    for method in next(iter(runs.values())):
        per_rule, picks[method] = {}, {}
        for rule in rules(max(len(runs[s][method]) for s in runs) - 1):
            chosen = [choose(rule, runs[s][method], gold, stable) for s in runs]
            preds = [np.array(runs[s][method][i]["test_pred"]) for s, i in zip(runs, chosen, strict=True)]
            picks[method][rule] = preds
            per_rule[rule] = {"rounds": chosen, "accuracy": [100 * float(np.mean(p == gold)) for p in preds],
                              "macro_f1": [100 * float(f1_score(gold, p, average="macro")) for p in preds]}
            per_rule[rule] |= {"mean": float(np.mean(per_rule[rule]["accuracy"])),
                               "macro_f1_mean": float(np.mean(per_rule[rule]["macro_f1"]))}
        out["methods"][method] = {
            "rules": per_rule,
            "rounds": {s: [r | {"test_accuracy": 100 * float(np.mean(np.array(r["test_pred"]) == gold))}
                           for r in runs[s][method]] for s in runs},  # test_pred kept: rules can be added later
            "bootstrap": {f"{rule} - round0": bootstrap(gold, picks[method][rule], picks[method]["round0"])
                          for rule in per_rule if rule != "round0"},
        }
    if "control" in picks:
        last = f"fixed-{screen.args.rounds}"
        default, control = default_methods(set(picks), float(screen.args.noise))
        out["default"] = {"default": default, "control": control}
        # the control's rounds take balanced's steps: another method's rounds may take more or fewer
        out["steps"] = {m: {s: runs[s][m][-1]["steps"] for s in runs} for m in dict.fromkeys((default, control))}
        out["bootstrap"]["default - control"] = bootstrap(gold, picks[default][last], picks[control][last])
        out["bootstrap"]["balanced - control"] = bootstrap(gold, picks["balanced"][last], picks["control"][last])
        for rule in ("english-dev", "target-dev", "oracle"):
            out["bootstrap"][f"balanced - control ({rule})"] = bootstrap(
                gold, picks["balanced"][rule], picks["control"][rule])
        if "balanced-avg" in picks:
            out["bootstrap"]["balanced-avg - control"] = bootstrap(
                gold, picks["balanced-avg"][last], picks["control"][last])
            if "control-avg" in picks:
                out["bootstrap"]["balanced-avg - control-avg"] = bootstrap(
                    gold, picks["balanced-avg"][last], picks["control-avg"][last])
            out["bootstrap"]["balanced-avg - default"] = bootstrap(
                gold, picks["balanced-avg"][last], picks["balanced"][last])
        if "bbse" in picks:
            out["bootstrap"]["bbse - control"] = bootstrap(gold, picks["bbse"][last], picks["control"][last])
            out["bootstrap"]["bbse - default"] = bootstrap(gold, picks["bbse"][last], picks["balanced"][last])
            if "bbse-avg" in picks:
                out["bootstrap"]["bbse-avg - control"] = bootstrap(
                    gold, picks["bbse-avg"][last], picks["control"][last])
                out["bootstrap"]["bbse-avg - balanced-avg"] = bootstrap(
                    gold, picks["bbse-avg"][last], picks["balanced-avg"][last])
            if "bbse-avg" in picks and "control-avg" in picks:
                out["bootstrap"]["bbse-avg - control-avg"] = bootstrap(
                    gold, picks["bbse-avg"][last], picks["control-avg"][last])
        if "noisy" in picks:
            for a, b in (("noisy", "control"), ("noisy", "balanced"), ("noisy-avg", "control-avg"),
                         ("noisy-avg", "balanced-avg")):
                if a in picks and b in picks:
                    out["bootstrap"][f"{a} - {b}"] = bootstrap(gold, picks[a][last], picks[b][last])
        out["bootstrap"]["control - round0"] = out["methods"][control]["bootstrap"][f"{last} - round0"]
    return out


def default_methods(methods: set[str], noise: float) -> tuple[str, str]:
    """The methods that stand for what `xlc selftrain` delivers without --dev, and for the control delivered the
    same way: balanced with `--student-noise` (noisy, when run at xlc's default noise), its rounds 1..R averaged
    (`--select-round average`; without --methods average, the last round); else plain balanced, as before."""
    base = "noisy" if "noisy" in methods and noise == DEFAULTS.student_noise else "balanced"
    return (f"{base}-avg", "control-avg") if "control-avg" in methods else (base, "control")


def _default(ds: dict) -> tuple[str, str]:
    """The methods a data set's `default - control` compares (results written before it was recorded:
    balanced and control, the last round of each)."""
    names = ds.get("default", {"default": "balanced", "control": "control"})
    return names["default"], names["control"]


def headline(result: dict) -> list[str]:
    """The default (as `xlc selftrain` delivers without --dev) against the same-compute control and round 0."""
    rounds = int(result["settings"]["rounds"])
    last = f"fixed-{rounds}"
    lines = ["| data set | default | round 0 | control | default | default − control | "
             "default − round 0 | control − round 0 | macro-F1 round 0 / control / default | pseudo prec. | "
             "steps default / control |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, ds in result["datasets"].items():
        if "default - control" not in ds.get("bootstrap", {}):
            continue
        default, control = _default(ds)
        bal, ctl = ds["methods"][default], ds["methods"][control]
        ci = lambda b: f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]"  # noqa: E731
        prec = [r["pseudo_precision"] for rs in bal["rounds"].values() for r in rs[1:]]
        prec = [x for x in prec if x is not None]
        lines.append(f"| {name} | {default} vs {control}, {last} | {bal['rules']['round0']['mean']:.1f} | "
                     f"{ctl['rules'][last]['mean']:.1f} | "
                     f"{bal['rules'][last]['mean']:.1f} | {ci(ds['bootstrap']['default - control'])} | "
                     f"{ci(bal['bootstrap'][f'{last} - round0'])} | {ci(ds['bootstrap']['control - round0'])} | "
                     f"{bal['rules']['round0']['macro_f1_mean']:.1f} / {ctl['rules'][last]['macro_f1_mean']:.1f}"
                     f" / {bal['rules'][last]['macro_f1_mean']:.1f} | {100 * np.mean(prec):.1f}% | "
                     f"{_steps(ds, default)} / {_steps(ds, control)} |")
    return lines


def _steps(ds: dict, method: str) -> str:
    """The optimiser steps of a method's run (round 0 and every round), summed over the seeds."""
    steps = ds.get("steps", {}).get(method)
    return f"{sum(steps.values()):,}" if steps else "–"


def headline_average(result: dict) -> list[str]:
    """Weight averaging over rounds, for the default and the control, per data set."""
    last = f"fixed-{result['settings']['rounds']}"
    lines = ["| data set | default | balanced-avg | control | control-avg | balanced-avg − default | "
             "balanced-avg − control | balanced-avg − control-avg |", "|---|---|---|---|---|---|---|---|"]
    ci = lambda b: f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]"  # noqa: E731
    for name, ds in result["datasets"].items():
        if "balanced-avg - control-avg" not in ds.get("bootstrap", {}):
            continue
        acc = {m: f"{ds['methods'][m]['rules'][last]['mean']:.1f}"
               for m in ("balanced", "balanced-avg", "control", "control-avg")}
        diffs = [ci(ds["bootstrap"][f"balanced-avg - {k}"]) for k in ("default", "control", "control-avg")]
        lines.append(f"| {name} | " + " | ".join([*acc.values(), *diffs]) + " |")
    return lines


def headline_bbse(result: dict) -> list[str]:
    """bbse (the class split by black-box shift estimation) against the default and the control, per data set."""
    last = f"fixed-{result['settings']['rounds']}"
    lines = ["| data set | seeds | round 0 | default | control | bbse | bbse − control | bbse − default | "
             "bbse-avg | bbse-avg − control | bbse-avg − control-avg | pseudo prec. default / bbse |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ci = lambda b: f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]" if b else "–"  # noqa: E731

    def precision(method: dict) -> str:
        found = [r["pseudo_precision"] for rs in method["rounds"].values() for r in rs[1:]
                 if r.get("pseudo_precision") is not None]
        return f"{100 * np.mean(found):.1f}%"

    for name, ds in result["datasets"].items():
        if "bbse - control" not in ds.get("bootstrap", {}):
            continue
        m, b = ds["methods"], ds["bootstrap"]
        acc = [f"{m[k]['rules'][last]['mean']:.1f}" for k in ("balanced", "control", "bbse")]
        averaged = f"{m['bbse-avg']['rules'][last]['mean']:.1f}" if "bbse-avg" in m else "–"
        lines.append(f"| {name} | {len(m['bbse']['rounds'])} | {m['balanced']['rules']['round0']['mean']:.1f} | "
                     + " | ".join(acc) + f" | {ci(b['bbse - control'])} | {ci(b['bbse - default'])} | {averaged} | "
                     f"{ci(b.get('bbse-avg - control'))} | {ci(b.get('bbse-avg - control-avg'))} | "
                     f"{precision(m['balanced'])} / {precision(m['bbse'])} |")
    return lines


def headline_noisy(result: dict) -> list[str]:
    """noisy (balanced with input noise for the student) against balanced and the control, per data set."""
    last = f"fixed-{result['settings']['rounds']}"
    lines = ["| data set | seeds | round 0 | control-avg | balanced-avg | noisy-avg | noisy-avg − control-avg | "
             "noisy-avg − balanced-avg | noisy − control | noisy − balanced |", "|---" * 10 + "|"]
    ci = lambda b: f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]" if b else "–"  # noqa: E731
    for name, ds in result["datasets"].items():
        if "noisy - control" not in ds.get("bootstrap", {}):
            continue
        m, b = ds["methods"], ds["bootstrap"]
        acc = [f"{m[k]['rules'][last]['mean']:.1f}" if k in m else "–"
               for k in ("control-avg", "balanced-avg", "noisy-avg")]
        lines.append(f"| {name} | {len(m['noisy']['rounds'])} | {m['balanced']['rules']['round0']['mean']:.1f} | "
                     + " | ".join(acc) + " | " + " | ".join(ci(b.get(k)) for k in (
                         "noisy-avg - control-avg", "noisy-avg - balanced-avg", "noisy - control",
                         "noisy - balanced")) + " |")
    return lines


SECTIONS = (
    ("default - control", "The default against the same-compute control",
     "*default*: what `xlc selftrain` delivers without --dev: `balanced` with the student's input noise "
     "(`--student-noise`, noisy; plain balanced in runs without it), the uniform average of the weights of its "
     "rounds 1..R (-avg; the last round, where the run has no averages). *control*: the same rounds on English "
     "alone (warm start, each round as many optimiser steps as balanced's), delivered the same way. Test accuracy "
     "and macro-F1 (%), mean of the seeds; differences: paired bootstrap, seeds pooled, 95% interval; pseudo "
     "prec.: the share of correct pseudo-labels over all rounds; steps: all rounds' optimiser steps, summed over "
     "the seeds (noisy's rounds choose their epochs on the English dev set, as balanced's do, so they may take "
     "more or fewer steps than the control).", headline),
    ("balanced-avg - control-avg", "Weight averaging over rounds",
     "*-avg*: the weights of rounds 1..3 of the method averaged (uniformly) into one model. Test accuracy (%), "
     "mean of the seeds; differences: paired bootstrap, seeds pooled, 95% interval.", headline_average),
    ("bbse - control", "The class split by black-box shift estimation (bbse)",
     "*bbse*: balanced's rounds, but the Kt x classes texts of a round are split across the predicted classes by "
     "the pool's class shares as black-box shift estimation finds them (the round's confusion matrix on the "
     "held-out English dev set inverts the pool's predicted shares). Test accuracy (%), mean of the seeds; "
     "*bbse-avg*: its rounds' weights averaged; differences: paired bootstrap, seeds pooled, 95% interval; "
     "pseudo prec.: the share of correct pseudo-labels over all rounds and seeds.", headline_bbse),
    ("noisy - control", "A noisy student (noisy)",
     "*noisy*: balanced's rounds, but while a round trains, each pseudo-labeled text hides a random share "
     "(`--noise`) of its tokens from the trained top layers, drawn anew in every batch (Noisy Student's input "
     "noise on cached features; the English texts and all scoring see every token). *-avg*: rounds 1..3 "
     "averaged. Test accuracy (%), mean of the seeds; differences: paired bootstrap, seeds pooled, 95% "
     "interval.", headline_noisy),
)
"""The summary sections of the Markdown: the comparison that marks a data set as having one, the title,
what the table shows, and the table."""


def markdown(result: dict) -> str:
    lines = ["# Model selection without target labels", "",
             f"- command: `{result['command']}`", f"- settings: {json.dumps(result['settings'])}",
             f"- wall time: {result['minutes']:.1f} min on {result['machine']}", "",
             "Target test accuracy (%) of the round each rule delivers, mean over seeds (rounds chosen per "
             "seed in brackets); paired bootstrap difference to round 0 in points, 95% interval.", ""]
    for key, title, text, table in SECTIONS:  # each where some data set holds its comparison
        if any(key in ds.get("bootstrap", {}) for ds in result["datasets"].values()):
            lines += [f"## {title}", "", text, "", *table(result), ""]
    for name, ds in result["datasets"].items():
        lines += [f"## {name}", "", f"sizes: {ds['sizes']}", ""]
        for method, m in ds["methods"].items():
            lines += [f"### {method}", "", "| rule | accuracy | rounds | − round0 | 95% CI |", "|---|---|---|---|---|"]
            for rule, v in m["rules"].items():
                b = m["bootstrap"].get(f"{rule} - round0")
                diff = f"{b['diff']:+.1f} | [{b['low']:+.1f}, {b['high']:+.1f}]" if b else "| "
                lines.append(f"| {rule} | {v['mean']:.1f} | {v['rounds']} | {diff} |")
            lines += ["", "| seed | round | test acc | target dev | English dev | changed | confidence | "
                          "share distance |", "|---|---|---|---|---|---|---|---|"]
            for seed, rounds in m["rounds"].items():
                for i, r in enumerate(rounds):
                    changed = "-" if r["changed"] is None else f"{100 * r['changed']:.1f}%"
                    lines.append(f"| {seed} | {i} | {r['test_accuracy']:.1f} | {100 * r['dev_accuracy']:.1f} | "
                                 f"{100 * r['endev_accuracy']:.1f} | {changed} | {r['confidence']:.3f} | "
                                 f"{r['share_distance']:.3f} |")
            lines.append("")
        if ds.get("bootstrap"):
            lines += ["| comparison | diff | 95% CI |", "|---|---|---|"]
            lines += [f"| {k} | {b['diff']:+.1f} | [{b['low']:+.1f}, {b['high']:+.1f}] |"
                      for k, b in ds["bootstrap"].items()]
            lines.append("")
    return "\n".join(lines)


class Stored:
    """A data set's splits and classes, without a model: what `summarise` needs to grade stored rounds."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        spec = next(replace(s, pool=args.pool) for s in SETS if s.name == name)
        self.args, self.parts = args, load(spec, args.data)
        self.classes = tuple(sorted(self.parts["train"]["label"].unique().to_list()))
        self.index = {c: i for i, c in enumerate(self.classes)}
        train, endev = data_mod.split_dev(self.parts["train"], args.dev_share, seed=0)
        self.parts["train"], self.parts["endev"] = train, endev

    def y(self, role: str) -> np.ndarray:
        return np.array([self.index.get(c, -1) for c in self.parts[role]["label"].to_list()])


def merge(paths: list[Path], args: argparse.Namespace) -> dict:
    """One result from runs of other methods or seeds with the same settings: per data set, every method
    of any run, on the seeds for which some run holds each method. A method and seed in several runs must
    have reproduced exactly (the same test predictions in every round); the comparisons are recomputed."""
    found = [json.loads(path.read_text()) for path in paths]
    stored = found[0]["settings"]
    args = argparse.Namespace(**vars(args) | {"rounds": int(stored["rounds"]), "pool": int(stored["pool"]),
                                              "dev_share": float(stored["dev_share"]),
                                              "stable": float(stored["stable"])})
    # --noise changes only the noisy method, whose rounds must reproduce wherever two runs hold them
    keys = {k for r in found for k in r["settings"]} - {"methods", "out", "seeds", "sets", "merge", "noise"}
    differ = {k for k in keys if len({r["settings"].get(k) for r in found}) > 1}
    if differ:
        raise SystemExit(f"--merge: the runs differ in {', '.join(sorted(differ))}")
    noises = {float(r["settings"]["noise"]) for r in found  # a merged file holds the noise its runs agreed on
              if "noise" in r["settings"] and any("noisy" in ds["methods"] for ds in r["datasets"].values())}
    if len(noises) > 1:
        raise SystemExit(f"--merge: the noisy runs differ in --noise ({', '.join(map(str, sorted(noises)))})")
    args.noise = next(iter(noises)) if noises else getattr(args, "noise", DEFAULTS.student_noise)
    if args.out.with_suffix(".json").resolve() in {path.resolve() for path in paths}:
        raise SystemExit(f"--merge: --out {args.out} would overwrite one of the merged files; pass another --out")
    result = {"command": " ; ".join(r["command"] for r in found) + " ; python benchmarks/nodev.py --merge "
              + " ".join(map(str, paths)),
              "settings": found[0]["settings"] | {"methods": "merged"} | ({"noise": str(args.noise)} if noises else {}),
              "minutes": sum(r["minutes"] for r in found), "machine": found[0]["machine"], "datasets": {}}
    for name in dict.fromkeys(n for r in found for n in r["datasets"]):
        runs: dict[int, dict] = {}
        for r in found:
            for method, m in r["datasets"].get(name, {}).get("methods", {}).items():
                for s, rounds in m["rounds"].items():
                    before = runs.setdefault(int(s), {}).setdefault(method, rounds)
                    if [x["test_pred"] for x in before] != [x["test_pred"] for x in rounds]:
                        raise SystemExit(f"--merge: {name} {method} seed {s} did not reproduce across the runs")
        methods = {method for seed in runs.values() for method in seed}
        runs = {s: runs[s] for s in sorted(runs) if set(runs[s]) == methods}  # the seeds every method has
        if not runs:
            log.warning("--merge: %s: no seed has every method; left out", name)
            continue
        result["datasets"][name] = summarise(Stored(name, args), runs, args.stable)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    screen_arguments(p, "benchmarks/results/nodev", epochs=5, rounds=3)
    p.set_defaults(sets="en2zh_sentiment,sib200_mldoc8,xlm_t_sentiment")
    p.add_argument("--pool", type=int, default=800, help="pool texts per target language, at most")
    p.add_argument("--dev-share", type=float, default=data_mod.DEV_SHARE, help="English texts held out as dev")
    p.add_argument("--stable", type=float, default=0.03, help="the stable rule's change share")
    p.add_argument("--methods", default="control", help="besides balanced: control (the same rounds on English "
                   "alone, as many steps), bbse (balanced's rounds with the per-class counts split by "
                   "the pool's class shares estimated by black-box shift estimation on the English dev set), average "
                   "(each method's rounds 1..k with their weights averaged: balanced-avg, control-avg, bbse-avg), "
                   "noisy (balanced's rounds with input noise for the student, see --noise), "
                   "soft (one round of soft self-distillation)")
    p.add_argument("--noise", type=float, default=DEFAULTS.student_noise, help="--methods noisy: the share of a "
                   "pseudo-labeled text's tokens hidden from the trained layers in each training batch (xlc's "
                   "--student-noise; at its default, noisy is xlc's default method)")
    p.add_argument("--merge", nargs="+", type=Path, help="instead of running: merge these results files of "
                   "the same settings and seeds (e.g. runs of other --methods) into --out")
    args = p.parse_args()
    if args.merge:
        result = merge(args.merge, args)
        args.out.with_suffix(".json").write_text(dump(result))
        args.out.with_suffix(".md").write_text(markdown(result))
        return
    del args.merge  # not a setting of the run
    specs = [replace(spec, pool=args.pool) for name in args.sets.split(",") for spec in SETS if spec.name == name]
    run_screens("nodev.py", args, specs, lambda spec: NoDevScreen(spec, args),
                lambda screen, runs: summarise(screen, runs, args.stable), markdown)


if __name__ == "__main__":
    main()
