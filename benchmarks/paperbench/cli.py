"""Command line of the paper benchmark: argument parsing, profile choice, `main` and logging setup."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xlc.errors import XlcError

from .meta import hardware, relative, runs_minutes, versions
from .plan import plan
from .profiles import BUDGET, DATA_DIR, FULL, METHODS, POWERED, ROOT, SMOKE, Bench, Profile, result_stem
from .render import deviations, render_markdown, write_plots
from .runs import check_plugin_selectors, check_work, run_logreg, run_unit
from .splits import unit_groups
from .stats import collect

log = logging.getLogger("xlc.bench")
DESCRIPTION = "Reproduce the comparison of Dong & de Melo (2019) on the shared data sets with xlc."


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny random model on the bundled demo slice")
    mode.add_argument("--full", action="store_true", help="the paper's protocol (a GPU machine)")
    mode.add_argument("--powered", action="store_true", help="larger slices, round 0 to its best epoch, "
                      "cached lower layers: ~3 hours on 2 CPU cores")
    ap.add_argument("--plan", action="store_true", help="print the plan and its time estimate, run nothing")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"shared data sets [default: {DATA_DIR}]")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where paper.md, paper.json and the plots go [default: benchmarks/results]")
    ap.add_argument("--work", type=Path, help="run folders (resumable) [default: runs/paper-<profile>]")
    ap.add_argument("--datasets", help="comma-separated subset of the profile's data sets")
    ap.add_argument("--seeds", help="comma-separated seeds [default: the profile's]")
    ap.add_argument("--methods", help="comma-separated subset of "
                    f"{', '.join(METHODS)} [default: the profile's; all but default, except --powered]")
    ap.add_argument("--model", help="encoder for every run [default: multilingual-e5-small; --smoke: tiny]")
    ap.add_argument("--lr", type=float, help="encoder learning rate [default: the profile's]")
    ap.add_argument("--epochs", type=int, help="epochs per round [default: the profile's: budget 2, full 3]")
    ap.add_argument("--selector-seeds", type=int, help="run throttling and thresholded on the first N "
                    "seeds only, 0 = all [default: the profile's: budget 1, full all]")
    ap.add_argument("--threads", type=int, help="CPU threads [default: all]")
    ap.add_argument("--keep-models", action="store_true", help="keep each run's models (~2 GB per run)")
    return ap.parse_args(argv)


def choose_profile(args: argparse.Namespace) -> Profile:
    profile = SMOKE if args.smoke else FULL if args.full else POWERED if args.powered else BUDGET
    if args.datasets:
        wanted = [x.strip() for x in args.datasets.split(",") if x.strip()]
        known = {d.name for d in profile.data}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise XlcError(f"--datasets: unknown {unknown}; this profile has {', '.join(sorted(known))}")
        profile = replace(profile, data=tuple(d for d in profile.data if d.name in wanted))
    if args.seeds:
        profile = replace(profile, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.lr:
        profile = replace(profile, lr=args.lr)
    if args.epochs:
        profile = replace(profile, epochs=args.epochs)
    if args.selector_seeds is not None:
        profile = replace(profile, selector_seeds=args.selector_seeds or None)
    return profile


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    profile = choose_profile(args)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else profile.methods
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise XlcError(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    check_plugin_selectors(methods)
    work = args.work or ROOT / "runs" / f"paper-{profile.name}"
    work.mkdir(parents=True, exist_ok=True)
    model_name = args.model or profile.model
    if model_name == "tiny":
        from xlc.model import build_tiny

        tiny = work / "tiny-encoder"
        if not (tiny / "config.json").is_file():
            build_tiny(tiny)
        model_name = str(tiny)
    threads = args.threads or profile.threads
    if threads:
        import torch

        torch.set_num_threads(threads)  # the logistic-regression embeddings too
    bench = Bench(profile, args.data_dir, work, args.out, model_name, methods, args.keep_models, threads)

    from xlc.model import load_tokenizer, resolve_base

    base, prefix = resolve_base(model_name)
    tokenizer = load_tokenizer(base)
    all_splits, total = plan(bench, tokenizer, prefix)
    if args.plan:
        return None
    check_work(bench, all_splits)

    for spec in profile.data:
        splits = all_splits[spec.name]
        if "logreg" in methods and profile.logreg:
            run_logreg(bench, spec, splits)
        for seed in profile.seeds:
            for group in unit_groups(profile, splits):
                run_unit(bench, spec, splits, seed, group)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(profile)
    result: dict[str, Any] = {
        "profile": {k: v for k, v in asdict(profile).items() if k != "data"},
        "deviations": deviations(profile),
        "datasets": {},
    }
    for spec in profile.data:
        ds = collect(bench, spec, all_splits[spec.name])
        ds["plots"] = write_plots(args.out, stem, spec.name, ds)
        result["datasets"][spec.name] = ds
    result["meta"] = {
        "command": " ".join([Path(sys.executable).name, *(sys.argv if argv is None else
                                                          ["benchmarks/paper.py", *argv])]),
        "model": args.model or profile.model, "started": started.isoformat(timespec="seconds"),
        "wall_minutes": (time.perf_counter() - clock) / 60, "estimate_minutes": total / 60,
        "runs_minutes": runs_minutes(result["datasets"].values(), work),
        "hardware": hardware(), "versions": versions(), "work": relative(work),
    }
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(render_markdown(result))
    log.info("wrote %s (%.1f minutes)", args.out / f"{stem}.md", result["meta"]["wall_minutes"])
    return result


def setup_logging() -> None:
    """Progress lines with the time of day on stderr; library chatter silenced."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("transformers", "optimum", "torch", "onnxruntime", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
