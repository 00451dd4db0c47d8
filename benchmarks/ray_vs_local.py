"""`xlc score`: the local engine against `--engine ray` on the same input, on this machine.

    python benchmarks/ray_vs_local.py [--rows 1000000] [--workers 2 ...] [--cycles 3]
        [--work-dir DIR] [--out benchmarks/results/ray_vs_local]

The pool is real sentences from the bundled SIB-200 demo (xlc/demo/sib200_mldoc8.parquet, all
languages), sampled with replacement into one Parquet file. The model is the TINY test encoder
(2 layers, hidden 32, the real 250k-piece multilingual tokenizer) exported to ONNX: scoring it
costs little beyond tokenisation, so these numbers measure the engines' overhead (reading,
batching, scheduling, writing), not encoder speed. With a real encoder (multilingual-e5-small
scores ~100-200 texts/s per core) the fixed costs shrink in proportion.

The variants (local; Ray with its default actors; Ray with each --workers count) run interleaved
in --cycles cycles, the order reversed every other cycle; each Ray variant's speed is taken
relative to the local run of the same cycle, and the median and spread of those ratios are
reported with the load average before every run. Every Ray output is checked against the local
one of its cycle (same ids, same labels). On one machine Ray cannot be much faster than the
local engine, which already uses every core (ONNX Runtime threads + the tokenizer's threads): the
ratio shows what Ray's machinery costs or saves. One local run over 1,000 of the rows, not timed,
comes first (the process's first scoring pays for imports). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import polars as pl

from xlc import data, files, model, onnx
from xlc.scoring import ScoreJob, score_file
from xlc.scoring.ray import RayOptions, score_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_speed import machine, versions  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "ray_vs_local"


def variant_name(workers: int | None, ray: bool) -> str:
    if not ray:
        return "local"
    return f"ray, {workers or 'default'} actor(s)"


def run(model_dir: Path, pool: Path, scratch: Path, max_length: int, ray: bool, workers: int | None
        ) -> tuple[float, pl.DataFrame]:
    """Score `pool` once into `scratch` (this script's own temp folder, where the previous output of the
    same engine is replaced); the seconds (for Ray: starting the local Ray instance included) and the output."""
    job = ScoreJob(model_dir, pool, scratch / ("ray" if ray else "local.parquet"), max_length=max_length)
    if ray:
        shutil.rmtree(job.output, ignore_errors=True)
    else:
        job.output.unlink(missing_ok=True)
    start = time.perf_counter()
    if ray:
        score_files(job, RayOptions(workers=workers, progress_bars=False))
        seconds = time.perf_counter() - start
        return seconds, pl.read_parquet(job.output / "part-*.parquet")
    score_file(job)
    return time.perf_counter() - start, pl.read_parquet(job.output)


def ratios(cycles: list[dict]) -> dict[str, dict]:
    """Per Ray variant: rows/s relative to the local engine, per cycle, with the median and spread."""
    out = {}
    for name in [n for n in cycles[0]["seconds"] if n != "local"]:
        per_cycle = [c["seconds"]["local"] / c["seconds"][name] for c in cycles]
        out[name] = {"per_cycle": [round(r, 3) for r in per_cycle], "median": statistics.median(per_cycle),
                     "min": min(per_cycle), "max": max(per_cycle)}
    return out


def markdown(result: dict) -> str:
    names = list(result["cycles"][0]["seconds"])
    loads = [x for c in result["cycles"] for x in c["load_average"].values()]
    lines = [f"# `xlc score`: local engine vs `--engine ray`, {result['rows']:,} rows", "",
             f"- command: `{result['command']}` ({result['date']})",
             f"- machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"{result['machine']['memory_gib']} GiB",
             f"- versions: {result['versions']}", f"- input: {result['input']}",
             f"- load average before the runs: {min(loads):.2f}-{max(loads):.2f}", "",
             "| engine | seconds per cycle | rows/s (median) | speed vs local, median [min, max] | same labels |",
             "|---|---|---:|---|---|"]
    for name in names:
        secs = [c["seconds"][name] for c in result["cycles"]]
        r = result["ratios"].get(name)
        shown = f"{r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]" if r else "1 (reference)"
        same = "-" if name == "local" else str(all(c["same_labels"][name] for c in result["cycles"]))
        lines.append(f"| {name} | {' / '.join(f'{s:.1f}' for s in secs)} | "
                     f"{result['rows'] / statistics.median(secs):,.0f} | {shown} | {same} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, action="append", default=[],
                        help="Ray actor counts to try besides the default (repeatable).")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--work-dir", type=Path, help="The model and pool are kept here for later runs, the outputs "
                        "in a temp folder inside, removed at the end.  [default: a temp dir]")
    parser.add_argument("--out", type=Path, default=OUT, help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="xlc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "tiny-onnx"
    if not (model_dir / onnx.ONNX_FILE).is_file():
        classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
        encoder = model.build_tiny(work / "tiny-encoder")
        onnx.export(model.from_base(str(encoder), classes), model_dir)
    pool = work / f"pool-{args.rows}.parquet"
    if not pool.is_file():
        texts = pl.read_parquet(data.demo_path())["text"]
        texts.sample(args.rows, with_replacement=True, seed=0).to_frame("text").write_parquet(pool)
    chars = pl.scan_parquet(pool).select(pl.col("text").str.len_chars().mean()).collect().item()

    scratch = Path(tempfile.mkdtemp(prefix="outputs-", dir=work))  # ours: the only folder outputs are removed from
    try:
        warm = scratch / "warm-up"  # not timed: the process's first scoring pays for imports and lazy setup
        warm.mkdir()
        pl.read_parquet(pool).head(1000).write_parquet(warm / "pool.parquet")
        run(model_dir, warm / "pool.parquet", warm, args.max_length, False, None)
        variants = [(False, None), (True, None), *((True, w) for w in args.workers)]
        cycles = []
        for cycle in range(args.cycles):
            record: dict = {"seconds": {}, "load_average": {}, "same_labels": {}}
            outputs = {}
            for ray, workers in (variants if cycle % 2 == 0 else variants[::-1]):
                name = variant_name(workers, ray)
                record["load_average"][name] = round(os.getloadavg()[0], 2)
                seconds, outputs[name] = run(model_dir, pool, scratch, args.max_length, ray, workers)
                record["seconds"][name] = round(seconds, 2)
                print(f"cycle {cycle} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
            local = outputs["local"]
            for name, scored in outputs.items():
                if name != "local":
                    record["same_labels"][name] = scored["id"].equals(local["id"]) and scored["label"].equals(
                        local["label"])
            record["seconds"] = {variant_name(w, r): record["seconds"][variant_name(w, r)] for r, w in variants}
            cycles.append(record)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    result = {"command": shlex.join(["python", "benchmarks/ray_vs_local.py", *sys.argv[1:]]),
              "date": date.today().isoformat(), "machine": machine(),
              "versions": versions() | {"ray": version("ray")}, "rows": args.rows,
              "input": f"one Parquet file, {args.rows:,} SIB-200 sentences sampled with replacement (mean "
                       f"{chars:.0f} characters); model: the TINY test encoder (not a real one), max_length "
                       f"{args.max_length}",
              "cycles": cycles, "ratios": ratios(cycles)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    files.write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    if not args.work_dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
