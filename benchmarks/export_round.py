"""A run's ONNX export of one round, the three ways the loop can do it: rewritten into the earlier
round's graph (a later round, `xlc.onnx.rewrite`), traced with a stand-in word-embedding table (the
round that has no graph to write into, `xlc.onnx.trace_with_stand_in`), and traced in full (every
round before either existed).

    python benchmarks/export_round.py [--model multilingual-e5-small] [--cycles 3] [--scratch DIR]

Exports round 0, then, in each of --cycles interleaved cycles (the order of the ways rotating),
changes every weight but the word-embedding table a little (as a round of training does) and times
the later round's export each way on the same weights. Reports the seconds, the per-cycle ratios
of the full trace to each other way (median [min, max]), the load average per cycle, and whether
every way wrote the same bytes; JSON and Markdown to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch

from xlc import model, onnx
from xlc.config import DEFAULTS


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def nudge(clf: model.Classifier, seed: int) -> None:
    table = model.table_name(clf.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in clf.model.named_parameters():
            if name != table:
                param.add_(torch.randn(param.shape, generator=generator) * 1e-3)


def timed(export, to: Path) -> float:
    clock = time.perf_counter()
    export(to)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="where the temp folder goes (default: $TMPDIR)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export_round"))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="export-round-", dir=args.scratch))  # ours: removed at the end
    # the graph cache of earlier runs is neither read nor written: every way does its own work
    with mock.patch.object(onnx, "cached_graphs", lambda stamp: []), \
            mock.patch.object(onnx, "remember_graph", lambda *args: None):
        run(args, scratch)


def run(args: argparse.Namespace, scratch: Path) -> None:
    try:
        clf = model.from_base(args.model, tuple("abcdefg"))
        nudge(clf, 0)
        first = scratch / "round-00"
        round0 = timed(lambda to: onnx.export(clf, to, reuse=[]), first)
        if not (first / onnx.WEIGHTS_MAP).is_file():
            print("no weights map for this model: every round is traced")
            return
        ways = {"rewritten": lambda to: onnx.export(clf, to, reuse=[first]),
                "stand-in": lambda to: _without(clf, to, first, "rewrite"),
                "traced": lambda to: _without(clf, to, first, "rewrite", "trace_with_stand_in")}
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        loads, same = [], []
        for cycle in range(args.cycles):
            nudge(clf, cycle + 1)
            order = list(ways)[cycle % len(ways):] + list(ways)[:cycle % len(ways)]
            for way in order:
                seconds[way].append(timed(ways[way], scratch / f"{way}-{cycle}"))
            loads.append(os.getloadavg()[0])
            names = sorted(p.name for p in (scratch / f"traced-{cycle}").iterdir())
            same.append(all((scratch / f"{way}-{cycle}" / n).read_bytes() == (scratch / f"traced-{cycle}" / n)
                            .read_bytes() for way in ways for n in names))
            print(f"cycle {cycle}: " + ", ".join(f"{way} {seconds[way][-1]:.2f} s" for way in ways)
                  + f", load {loads[-1]:.2f}, same bytes {same[-1]}", flush=True)
        speedup = {}
        for way in ("rewritten", "stand-in"):
            ratios = [t / r for t, r in zip(seconds["traced"], seconds[way], strict=True)]
            speedup[way] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        result = {"command": f"python benchmarks/export_round.py --model {args.model} --cycles {args.cycles}",
                  "round0_seconds": round0, "seconds": seconds, "load_average": loads,
                  "speedup_over_traced": speedup, "same_bytes": same}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _without(clf: model.Classifier, to: Path, first: Path, *ways: str) -> None:
    """The export with `ways` (functions of xlc.onnx) switched off."""
    with ExitStack() as stack:
        for way in ways:
            stack.enter_context(mock.patch.object(onnx, way, lambda *a, **k: False))
        onnx.export(clf, to, reuse=[first])


def markdown(r: dict) -> str:
    return "\n".join([
        "# A round's ONNX export: rewritten, traced with a stand-in table, traced in full", "",
        f"- command: `{r['command']}`",
        f"- round 0 (with no graph cached for the model: traced, with its weights map): {r['round0_seconds']:.2f} s",
        f"- load average per cycle: {', '.join(f'{x:.2f}' for x in r['load_average'])}",
        f"- the same bytes every way, every cycle: {all(r['same_bytes'])}", "",
        "| way | seconds per cycle |", "|---|---|",
        *(f"| {way} | {' / '.join(f'{x:.2f}' for x in v)} |" for way, v in r["seconds"].items()), "",
        *(f"- {way}: {s['median']:.1f}x faster than traced in full (median of the per-cycle ratios; "
          f"min {s['min']:.1f}x, max {s['max']:.1f}x)" for way, s in r["speedup_over_traced"].items()), ""])


if __name__ == "__main__":
    main()
