"""Where a self-training round's time goes: train, export, evaluate, score the pool, select.

    python benchmarks/round_split.py [--rounds 1] [--cycles 1] [--model NAME_OR_DIR] [--work DIR]
        [--out benchmarks/results/round_split] [-- MORE XLC SELFTRAIN OPTIONS]

Each cycle runs `xlc selftrain` on the bundled demo (its default settings, --max-rounds ROUNDS, and
any options after `--`) in a new folder, one run at a time, and reads the phase timings the loop records
in every round's metrics.json (`timings`: train, export, evaluate, score, select). A round's wall time
runs from the commit of the previous round's metrics.json (round 0: from the run's run.json) to the
commit of its own; `other` is what the phases do not cover (building the student, the label-free health
signals, pruning the previous round's models). The last round stops before selection, so it neither
scores the pool nor selects.

The runs share a graph cache of their own ($XLC_CACHE in the work folder, the converted default model
linked in from the user's cache): cycle 0 starts with none, so its round 0 traces the ONNX export;
later cycles find that graph and write round 0's weights into it, as every run after a machine's
first does (`xlc.onnx.cached_graphs`).

Targets (#17): a round's export (ONNX export and opening its session) takes at most 5 s; scoring the pool
takes less than 15% of its round.

Slow: with the default model one cycle of --rounds 1 takes about 12 minutes on 2 quiet cores (training
is ~85% of it). The run folders (~1 GB each) go into a temporary folder, removed at
the end, unless --work names one to keep them in.
Writes OUT.json and OUT.md (--out, default benchmarks/results/round_split).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np

from xlc import files
from xlc.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_speed import machine, versions  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "round_split"
PHASES = ("train", "export", "evaluate", "score", "select")
EXPORT_TARGET = 5.0
"""Seconds a round's export may take at most."""
SCORE_TARGET = 0.15
"""The share of its round that scoring the pool must stay below."""


def split(run: RunDir) -> list[dict]:
    """Each closed round of `run`: its wall time, each phase's seconds and share of it, the targets checked."""
    before = run.run_file.stat().st_mtime
    rounds = []
    for folder in run.rounds():
        if not folder.closed:
            continue
        record = json.loads(folder.metrics.read_text())
        done = folder.metrics.stat().st_mtime
        wall, before = done - before, done
        seconds = {p: float(record["timings"][p]) for p in PHASES if p in record.get("timings", {})}
        rounds.append({
            "round": folder.number, "labeled": record.get("labeled"), "pool": record.get("pool"),
            "wall_seconds": round(wall, 2), "seconds": {p: round(s, 2) for p, s in seconds.items()},
            "other_seconds": round(wall - sum(seconds.values()), 2),
            "share": {p: round(s / wall, 4) for p, s in seconds.items()},
            "export_ok": seconds["export"] <= EXPORT_TARGET if "export" in seconds else None,
            "score_ok": seconds["score"] / wall < SCORE_TARGET if "score" in seconds else None,
        })
    return rounds


def run_once(out: Path, args: argparse.Namespace, cache: Path) -> dict:
    """One `xlc selftrain` run into `out` with $XLC_CACHE `cache`, timed, and its rounds split."""
    command = [sys.executable, "-m", "xlc.cli", "selftrain", "--out", str(out), "--max-rounds", str(args.rounds),
               "--quiet", *(["--model", args.model] if args.model else []), *args.selftrain]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "XLC_CACHE": str(cache)})
    wall = time.perf_counter() - start
    rounds = split(RunDir(out))
    inside = sum(r["wall_seconds"] for r in rounds)
    return {"wall_seconds": round(wall, 1), "outside_rounds_seconds": round(wall - inside, 1),
            "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "rounds": rounds}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1, help="--max-rounds of each run (rounds after round 0)")
    p.add_argument("--cycles", type=int, default=1, help="runs, one after the other")
    p.add_argument("--model", default=None, help="the encoder (default: xlc's default model)")
    p.add_argument("--work", type=Path, default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=OUT, help="writes OUT.json and OUT.md")
    p.add_argument("selftrain", nargs=argparse.REMAINDER, help="after --: more `xlc selftrain` options")
    args = p.parse_args(argv)
    args.selftrain = args.selftrain[1:] if args.selftrain[:1] == ["--"] else args.selftrain
    if args.rounds < 0 or args.cycles < 1:
        p.error("--rounds must be at least 0 and --cycles at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(argv)
    result: dict = {
        "command": shlex.join(["python", "benchmarks/round_split.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": date.today().isoformat(), "machine": machine(), "versions": versions(),
        "targets": {"export_seconds_at_most": EXPORT_TARGET, "score_share_below": SCORE_TARGET}, "cycles": []}
    with tempfile.TemporaryDirectory(prefix="xlc-round-split-") as tmp:
        work = args.work or Path(tmp)
        cache = private_cache(work)
        for cycle in range(args.cycles):
            out = work / f"cycle-{cycle}"
            if out.exists():
                raise SystemExit(f"{out} exists (an earlier run: xlc would resume or skip it); pass a new --work")
            result["cycles"].append(run_once(out, args, cache) | {"graph_cache": "warm" if cycle else "cold"})
            print(f"cycle {cycle}: {result['cycles'][-1]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    result["summary"] = summary(result["cycles"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    files.write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return result


def private_cache(work: Path) -> Path:
    """An $XLC_CACHE without traced graphs for the runs, with the user's converted models linked in."""
    from xlc.default_model import cache_dir

    cache = work / "xlc-cache"
    if (cache / "onnx-graphs").exists():
        raise SystemExit(f"{cache} holds traced graphs of earlier runs; pass a new --work")
    cache.mkdir(parents=True, exist_ok=True)
    models = cache_dir() / "models"
    if models.is_dir() and not (cache / "models").exists():
        (cache / "models").symlink_to(models)
    return cache


def summary(cycles: list[dict]) -> list[dict]:
    """Per round number (round 0 apart for a cold and a warm graph cache), over the cycles: the median
    seconds and share of each phase, and whether every cycle met the targets."""
    out = []
    kind = lambda c, r: c.get("graph_cache", "-") if r["round"] == 0 else "-"  # noqa: E731
    for number, cache in sorted({(r["round"], kind(c, r)) for c in cycles for r in c["rounds"]}):
        rounds = [r for c in cycles for r in c["rounds"] if r["round"] == number and kind(c, r) == cache]
        phases = [p for p in PHASES if p in rounds[0]["seconds"]]
        checks = {k: [r[k] for r in rounds if r[k] is not None] for k in ("export_ok", "score_ok")}
        out.append({"round": number, "graph_cache": cache, "cycles": len(rounds),
                    "wall_seconds": float(np.median([r["wall_seconds"] for r in rounds])),
                    "seconds": {p: float(np.median([r["seconds"][p] for r in rounds])) for p in phases},
                    "share": {p: float(np.median([r["share"][p] for r in rounds])) for p in phases},
                    "other_seconds": float(np.median([r["other_seconds"] for r in rounds])),
                    **{k: all(v) if v else None for k, v in checks.items()}})
    return out


def markdown(r: dict) -> str:
    m = r["machine"]

    def check(ok: bool | None) -> str:
        return "-" if ok is None else "yes" if ok else "NO"

    lines = ["# A self-training round's time, phase by phase", "",
             f"- command: `{r['command']}` ({r['date']})",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
             f"- targets: export <= {EXPORT_TARGET:g} s per round; pool scoring < {SCORE_TARGET:.0%} of its round "
             "(the last round does not score the pool)",
             "- runs: " + "; ".join(f"{c['wall_seconds']:.0f} s, {c['outside_rounds_seconds']:.0f} s of it outside "
                                    f"the rounds, load {c['load_average_before']:.1f} before, "
                                    f"{c['load_average_after']:.1f} after" for c in r["cycles"]),
             "- graph cache: " + ", ".join(f"cycle {i} {c.get('graph_cache', 'not recorded')}"
                                           for i, c in enumerate(r["cycles"]))
             + " (cold: round 0 traces its export; warm: it writes its weights into the graph a run traced)", "",
             "Seconds (share of the round's wall time); the median over the cycles:", "",
             "| round | graph cache | cycles | wall s | " + " | ".join(PHASES) + " | other | export <= 5 s | "
             "score < 15% |", "|---:|---|---:|---:|" + "---:|" * len(PHASES) + "---:|---|---|"]
    for s in r["summary"]:
        cells = [f"{s['seconds'][p]:.1f} ({s['share'][p]:.1%})" if p in s["seconds"] else "-" for p in PHASES]
        lines.append(f"| {s['round']} | {s.get('graph_cache', '-')} | {s.get('cycles', '-')} | "
                     f"{s['wall_seconds']:.1f} | " + " | ".join(cells)
                     + f" | {s['other_seconds']:.1f} | {check(s['export_ok'])} | {check(s['score_ok'])} |")
    if len(r["cycles"]) > 1:
        lines += ["", "Each cycle:", "", "| cycle | graph cache | round | labeled | pool | wall s | "
                  + " | ".join(PHASES) + " |", "|---:|---|---:|---:|---:|---:|" + "---:|" * len(PHASES)]
        for i, c in enumerate(r["cycles"]):
            for x in c["rounds"]:
                phases = [f"{x['seconds'][p]:.1f}" if p in x["seconds"] else "-" for p in PHASES]
                lines.append(f"| {i} | {c.get('graph_cache', '-')} | {x['round']} | {x['labeled']} | {x['pool']} | "
                             f"{x['wall_seconds']:.1f} | " + " | ".join(phases) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
