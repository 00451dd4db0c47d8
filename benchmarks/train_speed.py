"""A round's training: full fine-tuning against the top layers on cached features (`--train-layers`).

Two measurements, side by side in one invocation:

1. speed: one round's training (the lower-layer pass over every text, as if all were new, plus
   `--epochs` epochs) for each variant, interleaved over `--cycles` cycles; the ratio full /
   variant is taken per cycle, and its median and spread are reported with the load average.
2. accuracy: round 0 (English only, epochs chosen on the target dev set) for each variant and
   seed, on the shared data sets, test accuracy on the target languages.

    python benchmarks/train_speed.py                  # writes benchmarks/results/train_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from methods import SETS, load  # the same slices as the method screen

from xlc import model


def round_seconds(name: str, classes: tuple[str, ...], texts: list[str], y: np.ndarray, layers: int,
                  args: argparse.Namespace) -> float:
    clf = model.from_base(name, classes)
    settings = model.TrainSettings(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
                                   train_layers=layers, device="cpu")
    start = time.perf_counter()
    model.fine_tune(clf, texts, y, settings)  # builds the lower-layer features of every text first
    return time.perf_counter() - start


def speed(args: argparse.Namespace, variants: list[int]) -> dict:
    spec = next(s for s in SETS if s.name == "sib200_mldoc8")
    train = load(spec)["train"].head(args.speed_texts)
    classes = tuple(sorted(train["label"].unique().to_list()))
    texts, y = train["text"].to_list(), np.array([classes.index(c) for c in train["label"].to_list()])
    for v in variants:  # warm-up, not timed: first calls pay for lazy initialisation
        clf = model.from_base(args.model, classes)
        model.fine_tune(clf, texts[:8], y[:8], model.TrainSettings(max_steps=1, batch_size=8, train_layers=v,
                                                                   max_length=args.max_length, device="cpu"))
    times: dict[int, list[float]] = {v: [] for v in variants}
    loads = []
    for cycle in range(args.cycles):
        for v in variants:
            times[v].append(round_seconds(args.model, classes, texts, y, v, args))
            loads.append(os.getloadavg()[0])
            print(f"cycle {cycle} train_layers {v}: {times[v][-1]:.1f} s", flush=True)
    out = {"texts": len(texts), "epochs": args.epochs, "seconds": times, "load_average": loads, "ratio": {}}
    for v in variants:
        if v:
            per_cycle = [f / t for f, t in zip(times[0], times[v], strict=True)]
            out["ratio"][v] = {"median": statistics.median(per_cycle), "min": min(per_cycle),
                               "max": max(per_cycle)}
    return out


def accuracy(args: argparse.Namespace, variants: list[int]) -> dict:
    out: dict = {}
    for spec in SETS:
        if spec.name not in args.sets.split(","):
            continue
        parts = load(spec)
        classes = tuple(sorted(parts["train"]["label"].unique().to_list()))
        index = {c: i for i, c in enumerate(classes)}

        def y(role: str) -> np.ndarray:
            return np.array([index.get(c, -1) for c in parts[role]["label"].to_list()])  # noqa: B023

        rows: dict[int, list[float]] = {v: [] for v in variants}
        for seed in (int(s) for s in args.seeds.split(",")):
            for v in variants:
                clf = model.from_base(args.model, classes)
                settings = model.TrainSettings(epochs=args.max_epochs, batch_size=args.batch_size,
                                               max_length=args.max_length, train_layers=v, seed=seed,
                                               epoch_patience=2, device="cpu")
                result = model.fine_tune(clf, parts["train"]["text"].to_list(), y("train"), settings,
                                         dev=(parts["dev"]["text"].to_list(), y("dev")))
                pred = model.predict(clf, parts["test"]["text"].to_list(), args.max_length).argmax(1)
                rows[v].append(100 * float(np.mean(pred == y("test"))))
                print(f"{spec.name} seed {seed} train_layers {v}: {rows[v][-1]:.1f} "
                      f"(best epoch {result.best_epoch} of {result.epochs})", flush=True)
        out[spec.name] = {str(v): {"per_seed": acc, "mean": float(np.mean(acc))} for v, acc in rows.items()}
    return out


def markdown(result: dict) -> str:
    lines = ["# Training speed: full fine-tuning vs the top layers on cached features", "",
             f"- command: `{result['command']}`", f"- machine: {result['machine']}"]
    if s := result.get("speed"):
        lines += [f"- load average during the speed cycles: {min(s['load_average']):.2f}-"
                  f"{max(s['load_average']):.2f}", "",
                  f"## Speed: one round's training ({s['texts']} texts, {s['epochs']} epochs, lower-layer pass "
                  "over every text included)", "",
                  "| train layers | seconds per cycle | speed-up vs full (median [min, max] of per-cycle ratios) |",
                  "|---|---|---|"]
        for v, secs in s["seconds"].items():
            ratio = s["ratio"].get(v)
            shown = f"{ratio['median']:.2f}x [{ratio['min']:.2f}, {ratio['max']:.2f}]" if ratio else "1 (reference)"
            lines.append(f"| {v or 'all (full)'} | {' / '.join(f'{x:.1f}' for x in secs)} | {shown} |")
    else:
        lines.append("- speed: not measured in this run (--skip-speed; accuracy does not depend on the load)")
    if result.get("accuracy"):
        lines += ["", "## Accuracy: round 0, English only, epochs chosen on the target dev set", "",
                  "| data set | train layers | test accuracy, mean | per seed |", "|---|---|---|---|"]
        for name, by in result["accuracy"].items():
            for v, r in by.items():
                lines.append(f"| {name} | {v if v != '0' else 'all (full)'} | {r['mean']:.1f} | "
                             f"{' / '.join(f'{x:.1f}' for x in r['per_seed'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed"))
    p.add_argument("--model", default="multilingual-e5-small")
    p.add_argument("--variants", default="0,4,2", help="train layers to compare; 0 = full fine-tuning")
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--speed-texts", type=int, default=320)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--sets", default="sib200_mldoc8,en2zh_sentiment")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-speed", action="store_true",
                   help="accuracy only (it does not depend on the load, so it may run beside other work)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [int(v) for v in args.variants.split(",")]
    flags = ("out", "skip_accuracy", "skip_speed", "threads")
    result = {"command": "python benchmarks/train_speed.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in flags)
        + "".join(f" --{k.replace('_', '-')}" for k in ("skip_accuracy", "skip_speed") if getattr(args, k)),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__} with {torch.get_num_threads()} threads"}
    if not args.skip_speed:
        result["speed"] = speed(args, variants)
    if not args.skip_accuracy:
        result["accuracy"] = accuracy(args, variants)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
