"""A run's ONNX export of one round, as the loop does it: traced (round 0, and every round before) and
rewritten into the earlier round's graph (a later round, `xlc.onnx.rewrite`).

    python benchmarks/export_round.py [--model multilingual-e5-small] [--cycles 3] [--scratch DIR]

Exports round 0 in full, then, in each of --cycles interleaved cycles (the order of the two ways
alternating), changes every weight but the word-embedding table a little (as a round of training does)
and times the later round's export both ways on the same weights: rewritten, and traced as before
(`rewrite` switched off). Reports the seconds, the per-cycle ratio (median [min, max]), the load
average per cycle, and whether both ways wrote the same bytes; JSON and Markdown to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
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
    try:
        clf = model.from_base(args.model, tuple("abcdefg"))
        nudge(clf, 0)
        first = scratch / "round-00"
        round0 = timed(lambda to: onnx.export(clf, to, reuse=[]), first)
        if not (first / onnx.WEIGHTS_MAP).is_file():
            print("no weights map for this model: every round is traced")
            return
        seconds: dict[str, list[float]] = {"rewritten": [], "traced": []}
        loads, same = [], []
        for cycle in range(args.cycles):
            nudge(clf, cycle + 1)
            ways = {"rewritten": lambda to: onnx.export(clf, to, reuse=[first]),
                    "traced": lambda to: _traced(clf, to, first)}
            for way in (list(ways) if cycle % 2 == 0 else list(ways)[::-1]):
                seconds[way].append(timed(ways[way], scratch / f"{way}-{cycle}"))
            loads.append(os.getloadavg()[0])
            names = sorted(p.name for p in (scratch / f"traced-{cycle}").iterdir())
            same.append(all((scratch / f"rewritten-{cycle}" / n).read_bytes() == (scratch / f"traced-{cycle}" / n)
                            .read_bytes() for n in names))
            print(f"cycle {cycle}: rewritten {seconds['rewritten'][-1]:.2f} s, traced {seconds['traced'][-1]:.2f} s, "
                  f"load {loads[-1]:.2f}, same bytes {same[-1]}", flush=True)
        ratios = [t / r for t, r in zip(seconds["traced"], seconds["rewritten"], strict=True)]
        result = {"command": f"python benchmarks/export_round.py --model {args.model} --cycles {args.cycles}",
                  "round0_traced_seconds": round0, "seconds": seconds, "load_average": loads,
                  "speedup": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
                  "same_bytes": same}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _traced(clf: model.Classifier, to: Path, first: Path) -> None:
    with mock.patch.object(onnx, "rewrite", lambda *a, **k: False):
        onnx.export(clf, to, reuse=[first])


def markdown(r: dict) -> str:
    s = r["speedup"]
    return "\n".join([
        "# A later round's ONNX export: rewritten into round 0's graph against traced", "",
        f"- command: `{r['command']}`",
        f"- round 0, traced (its weights map built): {r['round0_traced_seconds']:.2f} s",
        f"- load average per cycle: {', '.join(f'{x:.2f}' for x in r['load_average'])}",
        f"- the same bytes both ways, every cycle: {all(r['same_bytes'])}", "",
        "| way | seconds per cycle |", "|---|---|",
        *(f"| {way} | {' / '.join(f'{x:.2f}' for x in v)} |" for way, v in r["seconds"].items()), "",
        f"Rewritten is {s['median']:.1f}x faster than traced (median of the per-cycle ratios; "
        f"min {s['min']:.1f}x, max {s['max']:.1f}x).", ""])


if __name__ == "__main__":
    main()
