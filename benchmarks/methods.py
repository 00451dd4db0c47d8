"""Screen self-learning methods fast, on the shared data sets, against the same-compute control.

By default every method trains only the top encoder layers (`TrainSettings.train_layers`), so
the frozen lower layers run once per text for the whole screen: a method costs seconds to minutes
instead of the hours of full fine-tuning on 2 CPU cores. Pools are scored with the PyTorch
model on the same features (the same arithmetic as the exported ONNX model). With a GPU,
`--train-layers 0 --device cuda` screens full fine-tuning in minutes. The winner goes
into `xlc selftrain`, and benchmarks/paper.py measures it through the product.

Methods (each per seed; round 0 = English only, epochs chosen on the target dev set):
- zero-shot: round 0.
- control: English only, as many optimiser steps as the longest self-learning method of the
  seed, epochs chosen on dev: "train longer on English".
- balanced: the paper's selector: top-Kt per class, warm start, `--rounds` rounds.
- soft: one student trained on the English gold and the whole pool with the teacher's
  probabilities as soft targets (self-distillation); the teacher is round 0.
- hard: as soft, with the teacher's argmax labels.
- soft2: soft, then a second round with the first student as teacher.

    python benchmarks/methods.py --out benchmarks/results/methods   (JSON + Markdown)
    python benchmarks/methods.py --train-layers 0 --device cuda --out benchmarks/results/methods-full
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from xlc import model, stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
log = logging.getLogger("methods")


@dataclass(frozen=True)
class Set:
    name: str
    kt: int
    langs: tuple[str, ...]
    train: int = 1000
    pool: int = 2000
    test: int | None = None


SETS = (
    Set("sib200_mldoc8", kt=40, langs=("deu_Latn", "fra_Latn", "rus_Cyrl", "zho_Hans")),
    Set("en2zh_sentiment", kt=100, langs=("zh",)),
    Set("xlm_t_sentiment", kt=100, langs=("de", "es", "hi")),
)


def load(spec: Set, data: Path = DATA) -> dict[str, pl.DataFrame]:
    """English train, target pool (gold kept for precision only), dev and test."""
    cols = ("text", "label", "lang")
    if spec.name == "xlm_t_sentiment":
        folder = data / spec.name
        train, val, test = (pl.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test"))
        parts = {"train": train.filter(pl.col("lang") == "en"), "pool": train, "dev": val, "test": test}
    else:
        frame = pl.read_parquet(data / f"{spec.name}.parquet")
        src = "en" if spec.name == "en2zh_sentiment" else "eng_Latn"
        pool_split = "unlabeled" if spec.name == "en2zh_sentiment" else "train"
        parts = {"train": frame.filter((pl.col("lang") == src) & (pl.col("split") == "train")),
                 "pool": frame.filter(pl.col("split") == pool_split), "dev": frame.filter(pl.col("split") == "dev"),
                 "test": frame.filter(pl.col("split") == "test")}
    out = {}
    for role, rows in parts.items():
        if role != "train":
            rows = rows.filter(pl.col("lang").is_in(list(spec.langs)))
        limit = {"train": spec.train, "pool": spec.pool}.get(role)
        pieces = []
        for lang in sorted(rows["lang"].unique().to_list()):
            part = rows.filter(pl.col("lang") == lang).sort("text")
            if limit and part.height > limit:
                part = part.sample(n=limit, seed=0)
            pieces.append(part.select(cols))
        out[role] = pl.concat(pieces)
    return out


class Screen:
    """One data set: its splits, the shared lower-layer features, and the runs."""

    select_on = "dev"
    """The split whose accuracy chooses each training's best epoch."""

    def __init__(self, spec: Set, args: argparse.Namespace) -> None:
        self.spec, self.args = spec, args
        self.parts = load(spec, args.data)
        self.classes = tuple(sorted(self.parts["train"]["label"].unique().to_list()))
        self.index = {c: i for i, c in enumerate(self.classes)}
        base = model.from_base(args.model, self.classes)
        self.frozen = model.frozen_layers(base, args.train_layers)
        self.device = model.training_device(args.device)
        self.lower = None  # full fine-tuning: nothing to cache
        if self.frozen:
            self.lower = model.LowerLayers(base, self.frozen, args.max_length)
            clock = time.perf_counter()
            for role in ("train", "dev", "test", "pool"):
                self.lower.add(self.parts[role]["text"].to_list())
            log.info("%s: lower features of %d texts in %.0f s", spec.name, len(self.lower.features),
                     time.perf_counter() - clock)

    def y(self, role: str) -> np.ndarray:
        return np.array([self.index.get(c, -1) for c in self.parts[role]["label"].to_list()])

    def settings(self, seed: int, epochs: int, max_steps: int | None = None,
                 patience: int | None = None, student_noise: float = 0.0) -> model.TrainSettings:
        a = self.args
        return model.TrainSettings(epochs=epochs, batch_size=a.batch_size, max_length=a.max_length, lr=a.lr,
                                   head_lr=a.head_lr, seed=seed, max_steps=max_steps,
                                   epoch_patience=a.epoch_patience if patience is None else patience,
                                   train_layers=a.train_layers, student_noise=student_noise,
                                   device=a.device)

    def train(self, clf: model.Classifier, texts: list[str], labels: np.ndarray, seed: int,
              epochs: int, max_steps: int | None = None, patience: int | None = None,
              pseudo: np.ndarray | None = None, student_noise: float = 0.0) -> model.TrainResult:
        """Fine-tune `clf` in place, keeping its best epoch on `select_on` (`patience`: the screen's);
        the texts `pseudo` marks train with `student_noise` (`TrainSettings.student_noise`)."""
        if self.lower:
            self.lower.clf = clf
        return model.fine_tune(clf, texts, labels, self.settings(seed, epochs, max_steps, patience, student_noise),
                               dev=(self.parts[self.select_on]["text"].to_list(), self.y(self.select_on)),
                               lower=self.lower, pseudo=pseudo)

    def probs(self, clf: model.Classifier, role: str) -> np.ndarray:
        if self.lower:
            self.lower.clf = clf
        clf.model.to(self.device)  # fine_tune leaves the model on the CPU
        try:
            return model.predict(clf, self.parts[role]["text"].to_list(), self.args.max_length, self.lower,
                                 self.frozen, self.device, batch_size=256 if self.device.type == "cuda" else 64)
        finally:
            clf.model.to("cpu")

    def fresh(self) -> model.Classifier:
        return model.from_base(self.args.model, self.classes)

    def run_seed(self, seed: int) -> dict:
        a, en = self.args, self.parts["train"]
        en_texts, en_y = en["text"].to_list(), self.y("train")
        pool_texts = self.parts["pool"]["text"].to_list()
        results: dict[str, dict] = {}

        def record(name: str, clf: model.Classifier, steps: int, extra: dict | None = None) -> None:
            pred = self.probs(clf, "test").argmax(1)
            dev = float(np.mean(self.probs(clf, "dev").argmax(1) == self.y("dev")))
            results[name] = {"steps": steps, "test_pred": pred.tolist(), "dev_accuracy": dev, **(extra or {})}
            log.info("%s seed %d %s: test accuracy %.4f (%d steps)", self.spec.name, seed, name,
                     float(np.mean(pred == self.y("test"))), steps)

        clock = time.perf_counter()
        teacher = self.fresh()
        r0 = self.train(teacher, en_texts, en_y, seed, a.epochs)
        record("zero-shot", teacher, r0.steps, {"epochs": r0.epochs, "best_epoch": r0.best_epoch})
        teacher_state = {k: v.clone() for k, v in teacher.model.state_dict().items()}
        pool_probs = self.probs(teacher, "pool")

        # balanced: the paper's loop, warm start
        clf, steps, labeled_t, labeled_y = teacher, r0.steps, list(en_texts), list(en_y)
        remaining = np.ones(len(pool_texts), dtype=bool)
        taken: list[tuple[int, int]] = []
        probs = pool_probs
        for rnd in range(1, a.rounds + 1):
            chosen = balanced(probs, remaining, self.spec.kt)
            taken += [(int(i), int(probs[i].argmax())) for i in chosen]
            remaining[chosen] = False
            labeled_t += [pool_texts[i] for i in chosen]
            labeled_y += [int(probs[i].argmax()) for i in chosen]
            res = self.train(clf, labeled_t, np.array(labeled_y), seed + rnd, a.epochs)
            steps += res.steps
            probs = self.probs(clf, "pool")
        record("balanced", clf, steps, {"pseudo": taken})
        teacher.model.load_state_dict(teacher_state)

        # soft / hard self-distillation: a fresh student on English gold + the whole pool
        for name, soft in (("soft", True), ("hard", False)):
            if name not in a.methods.split(","):
                continue
            targets = pool_probs if soft else np.eye(len(self.classes))[pool_probs.argmax(1)]
            student = self.fresh()
            texts = en_texts + pool_texts
            labels = np.concatenate([np.eye(len(self.classes))[en_y], targets]).astype(np.float32)
            res = self.train(student, texts, labels, seed + 100, a.distill_epochs)
            record(name, student, r0.steps + res.steps)
            if soft and "soft2" in a.methods.split(","):
                second = self.fresh()
                labels2 = np.concatenate([np.eye(len(self.classes))[en_y], self.probs(student, "pool")])
                res2 = self.train(second, texts, labels2.astype(np.float32), seed + 200, a.distill_epochs)
                record("soft2", second, r0.steps + res.steps + res2.steps)

        # control: English only, as many steps as the longest method
        most = max(r["steps"] for r in results.values())
        control = self.fresh()
        res = self.train(control, en_texts, en_y, seed, a.epochs, max_steps=most)
        record("control", control, res.steps, {"epochs": res.epochs, "best_epoch": res.best_epoch})
        log.info("%s seed %d done in %.0f s", self.spec.name, seed, time.perf_counter() - clock)
        return results


def balanced(probs: np.ndarray, remaining: np.ndarray, kt: int) -> np.ndarray:
    """Indices of the kt most confident remaining texts per predicted class."""
    label, conf = probs.argmax(1), probs.max(1)
    chosen = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(remaining & (label == c))
        chosen += idx[np.argsort(-conf[idx], kind="stable")][:kt].tolist()
    return np.array(sorted(chosen), dtype=int)


def bootstrap(gold: np.ndarray, a: list[np.ndarray], b: list[np.ndarray], resamples: int = 2000) -> dict:
    """Paired bootstrap over test items, seeds pooled: mean accuracy difference a - b, 95% interval."""
    diff = np.stack([(x == gold).astype(float) - (y == gold).astype(float) for x, y in zip(a, b, strict=True)])
    found = stats.paired_bootstrap(diff.mean(axis=0), resamples)
    return {"diff": 100 * found["diff"], "low": 100 * found["low"], "high": 100 * found["high"],
            "items": found["items"]}


def summarise(screen: Screen, runs: dict[int, dict]) -> dict:
    gold = screen.y("test")
    langs = screen.parts["test"]["lang"].to_numpy()
    methods = list(next(iter(runs.values())))
    preds = {m: [np.array(runs[s][m]["test_pred"]) for s in runs] for m in methods}
    steps = {m: [runs[s][m]["steps"] for s in runs] for m in methods}
    for m in [m for m in methods if m not in ("zero-shot", "control")]:
        # what `xlc selftrain` delivers: the method's model only where it beats round 0 on dev
        picks = [m if runs[s][m].get("dev_accuracy", 0) > runs[s]["zero-shot"].get("dev_accuracy", 1)
                 else "zero-shot" for s in runs]
        preds[f"{m}+guard"] = [np.array(runs[s][pick]["test_pred"]) for s, pick in zip(runs, picks, strict=True)]
        steps[f"{m}+guard"] = [runs[s][pick]["steps"] for s, pick in zip(runs, picks, strict=True)]
    out: dict = {"classes": list(screen.classes), "sizes": {k: v.height for k, v in screen.parts.items()},
                 "methods": {}, "bootstrap": {}}
    for m, ps in preds.items():
        acc = [100 * float(np.mean(p == gold)) for p in ps]
        per_lang = {lg: float(np.mean([100 * np.mean(p[langs == lg] == gold[langs == lg]) for p in ps]))
                    for lg in sorted(set(langs))}
        out["methods"][m] = {"accuracy": acc, "mean": float(np.mean(acc)), "per_lang": per_lang, "steps": steps[m]}
    for m in preds:
        for ref in ("zero-shot", "control"):
            if m != ref:
                out["bootstrap"][f"{m} - {ref}"] = bootstrap(gold, preds[m], preds[ref])
    return out


def markdown(result: dict) -> str:
    layers = result["settings"]["train_layers"]
    how = "full fine-tuning" if layers == "0" else f"top {layers} layers trained on cached lower-layer features"
    lines = [f"# Method screen ({how})", "",
             f"- command: `{result['command']}`", f"- settings: {json.dumps(result['settings'])}",
             f"- wall time: {result['minutes']:.1f} min on {result['machine']}", "",
             "Test accuracy (%), mean over seeds; paired bootstrap differences in points, 95% interval.", ""]
    for name, ds in result["datasets"].items():
        lines += [f"## {name}", "", f"sizes: {ds['sizes']}", "", "| method | accuracy | per seed | steps |",
                  "|---|---|---|---|"]
        for m, v in ds["methods"].items():
            lines.append(f"| {m} | {v['mean']:.1f} | {' / '.join(f'{x:.1f}' for x in v['accuracy'])} | "
                         f"{' / '.join(str(s) for s in v['steps'])} |")
        lines += ["", "| comparison | diff | 95% CI |", "|---|---|---|"]
        for k, b in ds["bootstrap"].items():
            lines.append(f"| {k} | {b['diff']:+.1f} | [{b['low']:+.1f}, {b['high']:+.1f}] |")
        lines.append("")
    return "\n".join(lines)


def screen_arguments(p: argparse.ArgumentParser, out: str, epochs: int, rounds: int) -> None:
    """The options every screen on `Screen` shares (this one and benchmarks/nodev.py)."""
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--data", type=Path, default=DATA, help="the shared data sets' folder")
    p.add_argument("--sets", default=",".join(s.name for s in SETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--model", default="multilingual-e5-small")
    p.add_argument("--train-layers", type=int, default=2)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--distill-epochs", type=int, default=2)
    p.add_argument("--epoch-patience", type=int, default=2)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--device", default="cpu", choices=model.DEVICES, help="where to train and predict")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    screen_arguments(p, "benchmarks/results/methods", epochs=6, rounds=2)
    p.add_argument("--methods", default="soft", help="distillation variants besides zero-shot, balanced and "
                   "control: soft, hard, soft2")
    args = p.parse_args()
    run_screens("methods.py", args, [s for s in SETS if s.name in args.sets.split(",")],
                lambda spec: Screen(spec, args), summarise, markdown)


def dump(result: dict) -> str:
    """JSON with one key per line, but every list of numbers (test predictions: thousands) on one line."""
    text = json.dumps(result, indent=1)
    return re.sub(r"\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def run_screens(script: str, args: argparse.Namespace, specs: list[Set], make_screen: Callable[[Set], Screen],
                summarise: Callable[[Screen, dict[int, dict]], dict], markdown: Callable[[dict], str]) -> None:
    """Screen each data set of `specs`, seed by seed; after every seed, `args.out` (.json and .md) is
    rewritten with everything so far, so a stopped screen keeps its finished seeds."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    skip = ("out", "threads", "device", "data")
    result: dict = {"command": f"python benchmarks/{script} " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in skip),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("threads", "data")}, "datasets": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        screen = make_screen(spec)
        runs = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            runs[seed] = screen.run_seed(seed)
            result["datasets"][spec.name] = summarise(screen, runs)
            result["minutes"] = (time.perf_counter() - start) / 60
            result["machine"] = (torch.cuda.get_device_name() if screen.device.type == "cuda"
                                 else f"{torch.get_num_threads()} torch threads")
            args.out.with_suffix(".json").write_text(dump(result))
            args.out.with_suffix(".md").write_text(markdown(result))
        del screen
    log.info("done in %.1f min", (time.perf_counter() - start) / 60)


if __name__ == "__main__":
    main()
