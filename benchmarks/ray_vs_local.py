"""`xlc score`: the local engine against `--engine ray` on the same input, on this machine.

    .venv/bin/python benchmarks/ray_vs_local.py                 # 1,000,000 rows
    .venv/bin/python benchmarks/ray_vs_local.py --rows 100000 --workers 1 --workers 2

The pool is real sentences from the bundled SIB-200 demo (xlc/demo/sib200_mldoc8.parquet, all
languages), sampled with replacement into one Parquet file. The model is the TINY test encoder
(2 layers, hidden 32, the real 250k-piece multilingual tokenizer) exported to ONNX: scoring it
costs little beyond tokenisation, so these numbers measure the engines' overhead (reading,
batching, scheduling, writing), not encoder speed. With a real encoder (multilingual-e5-small
scores ~100-200 texts/s per core) the fixed costs shrink in proportion.

On one machine Ray cannot be faster than the local engine, which already uses every core
(ONNX Runtime threads + the tokenizer's threads); the ratio shows what Ray's machinery costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from xlc import data, model, onnx
from xlc.scoring import ScoreJob, score_file
from xlc.scoring.ray import RayOptions, score_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, action="append", default=[],
                        help="Ray actor counts to try after the default (repeatable).")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--work-dir", type=Path, help="Input and outputs go here.  [default: a temp dir]")
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

    print(f"# xlc score: local vs --engine ray, {args.rows:,} rows")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"{' '.join(sys.argv[1:]) or '(defaults)'}")
    print(f"input: one Parquet file, {args.rows:,} SIB-200 sentences sampled with replacement "
          f"(mean {chars:.0f} characters); model: the TINY test encoder (not a real one), "
          f"max_length {args.max_length}\n")
    rows: list[tuple[str, float, float]] = []

    out = work / "local.parquet"
    out.unlink(missing_ok=True)
    print(f"load average before local: {os.getloadavg()[0]:.1f}", flush=True)
    summary = score_file(ScoreJob(model_dir, pool, out, max_length=args.max_length))
    rows.append(("local (one process, ONNX Runtime threads = all cores)", summary.seconds,
                 summary.rows_per_second))
    print(f"local: {summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s", flush=True)
    local = pl.read_parquet(out)

    for workers in [None, *args.workers]:
        out = work / f"ray-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"load average before ray ({workers or 'default'} actors): {os.getloadavg()[0]:.1f}", flush=True)
        start = time.perf_counter()
        summary = score_files(ScoreJob(model_dir, pool, out, max_length=args.max_length),
                              RayOptions(workers=workers, progress_bars=False))
        seconds = time.perf_counter() - start  # includes starting the local Ray instance
        name = f"ray, {workers or 'default'} actor(s), local Ray started by the job"
        rows.append((name, seconds, summary.rows / seconds))
        scored = pl.read_parquet(out / "part-*.parquet")
        same = scored["id"].equals(local["id"]) and scored["label"].equals(local["label"])
        print(f"{name}: {seconds:.1f} s, {summary.rows / seconds:,.0f} rows/s; ids and labels equal "
              f"to local: {same}", flush=True)

    print("\n| engine | seconds | rows/s | ray / local |")
    print("|---|---:|---:|---:|")
    for name, seconds, rate in rows:
        print(f"| {name} | {seconds:.1f} | {rate:,.0f} | {rate / rows[0][2]:.2f} |")
    if not args.work_dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
