"""Peak memory of `xlc score` at 100k and 1M rows: streaming must keep it flat.

    python benchmarks/score_memory.py [--rows 100000 1000000]

Each size runs `xlc score` in its own process on a pool built from the real demo sentences
(sampled with replacement, so the length distribution is real) and reads that process's
peak RSS from wait4(). The model is the tiny 2-layer encoder with the real tokenizer: the
numbers measure xlc's streaming (read, tokenise, score, write parts), not encoder speed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from xlc import data, model, onnx

CACHE = Path(__file__).resolve().parent / ".cache" / "memory"


def tiny_onnx() -> Path:
    target = CACHE / "tiny-onnx"
    if not (target / "model.onnx").is_file():
        encoder = model.build_tiny(CACHE / "tiny-encoder")
        classes = tuple(sorted(pl.read_parquet(data.demo_path())["label"].unique()))
        onnx.export(model.from_base(str(encoder), classes), target)
    return target


def pool(rows: int) -> Path:
    path = CACHE / f"pool-{rows}.parquet"
    if not path.is_file():
        texts = pl.read_parquet(data.demo_path()).select("text")
        texts.sample(rows, with_replacement=True, seed=rows).write_parquet(path)
    return path


def run(model_dir: Path, source: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one `xlc score` process."""
    out = CACHE / f"{source.stem}.scores.parquet"
    command = [sys.executable, "-m", "xlc.cli", "score", "--quiet", "--overwrite", "--model", str(model_dir),
               "--input", str(source), "--out", str(out), "--max-length", "128"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"xlc score failed on {source}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_onnx()
    print(f"# xlc score: peak memory\n\ncommand: `python benchmarks/{Path(__file__).name} "
          f"--rows {' '.join(map(str, args.rows))}`  \nmodel: tiny 2-layer encoder (hidden 32) with the real "
          f"250k-piece tokenizer; default --chunk-size 20000\n")
    print("| rows | peak RSS (MiB) | seconds | rows/s | RSS vs first |\n|---|---|---|---|---|")
    first = None
    for rows in args.rows:
        rss, seconds = run(model_dir, pool(rows))
        first = first or rss
        print(f"| {rows:,} | {rss:.0f} | {seconds:.0f} | {rows / seconds:.0f} | {rss / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
