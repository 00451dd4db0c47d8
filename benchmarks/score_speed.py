"""Scoring speed, side by side in one run: PyTorch eager vs ONNX Runtime, with and without
length bucketing, int8 and graph optimisation; int8/fp32 agreement; tokens/s vs a roofline.

    python benchmarks/score_speed.py [--model RUN_OR_MODEL_DIR] [--texts 2000]

Without --model, a head is fine-tuned on the bundled demo first (one epoch, default model).
Prints a Markdown table; each speed is also given as a ratio to the first line.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

import xlc
from xlc import data, model, onnx, rundir
from xlc.scoring import Scorer

CACHE = Path(__file__).resolve().parent / ".cache"


def trained_model(path: str | None) -> Path:
    if path:
        return rundir.find_model(Path(path))
    run = rundir.RunDir(CACHE / "speed-run")
    if not (run.best / onnx.ONNX_FILE).is_file():
        shutil.rmtree(run.path, ignore_errors=True)
        xlc.selftrain(out=run.path, max_rounds=0, epochs=1, demo_langs=("deu_Latn",))
    return run.best


def real_texts(n: int) -> list[str]:
    """Real sentences and reviews of natural lengths, in a fixed random order."""
    frames = [pl.read_parquet(data.demo_path()).select("text")]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "en2zh_sentiment.parquet"
    if shared.is_file():
        frames.append(pl.read_parquet(shared).select("text"))
    return pl.concat(frames).sample(n, with_replacement=n > sum(f.height for f in frames), seed=0)["text"].to_list()


def eager(clf: model.Classifier, texts: list[str], batch_size: int, max_length: int, sort: bool) -> np.ndarray:
    ids = clf.tokenizer([clf.text_prefix + t for t in texts], truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable") if sort else np.arange(len(ids))
    out = np.empty((len(texts), len(clf.classes)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch, mask = model.pad_batch([ids[r] for r in rows], clf.tokenizer.pad_token_id)
            out[rows] = torch.softmax(clf.model(input_ids=batch, attention_mask=mask).logits, -1).numpy()
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def matmul_gflops() -> float:
    """Measured fp32 GEMM rate of this machine (torch, all threads): the compute roofline."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    model_dir = trained_model(args.model)
    work = CACHE / "speed-variants"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(model_dir, work / "fp32", ignore=shutil.ignore_patterns("*.safetensors"))
    onnx.quantize_int8(work / "fp32")
    shutil.copytree(work / "fp32", work / "o2", ignore=shutil.ignore_patterns("*.int8.onnx"))
    onnx.optimize(work / "o2", "O2")

    texts = real_texts(args.texts)
    clf = model.load(model_dir)
    torch.set_num_threads(os.cpu_count() or 1)
    tokens = sum(min(len(x), args.max_length) for x in clf.tokenizer(
        [clf.text_prefix + t for t in texts], truncation=True, max_length=args.max_length)["input_ids"])
    bs, ml = args.batch_size, args.max_length
    fp32, int8, o2 = Scorer.open(work / "fp32"), Scorer.open(work / "fp32", int8=True), Scorer.open(work / "o2")
    runs = [
        ("PyTorch eager, input order (naive)", lambda: eager(clf, texts, bs, ml, sort=False)),
        ("PyTorch eager, length-sorted", lambda: eager(clf, texts, bs, ml, sort=True)),
        ("ORT fp32, input order", lambda: fp32.probabilities(texts, bs, ml, bucket=False)),
        ("ORT fp32, length-bucketed (xlc default)", lambda: fp32.probabilities(texts, bs, ml)),
        ("ORT fp32 + O2 graph optimisation, bucketed", lambda: o2.probabilities(texts, bs, ml)),
        ("ORT dynamic int8, bucketed (--int8)", lambda: int8.probabilities(texts, bs, ml)),
    ]
    results = {}
    for name, fn in runs:
        fn() if "eager" not in name else None  # warm up sessions (eager needs none)
        results[name] = timed(fn)
    gflops = matmul_gflops()
    encoder_params = sum(p.numel() for n, p in clf.model.named_parameters() if "word_embeddings" not in n)
    roofline = gflops * 1e9 / (2 * encoder_params)  # tokens/s if every token cost only its matmuls

    base = results[runs[0][0]][1]
    print(f"# xlc scoring speed\n\ncommand: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__}; model {model_dir} ({encoder_params / 1e6:.1f} M non-embedding parameters)  ")
    print(f"{len(texts)} real texts, {tokens} tokens after truncation, batch {bs}, max_length {ml}\n")
    print("| variant | seconds | texts/s | tokens/s | vs naive eager |\n|---|---|---|---|---|")
    for name, (_, seconds) in results.items():
        print(f"| {name} | {seconds:.1f} | {len(texts) / seconds:.0f} | {tokens / seconds:.0f} | "
              f"{base / seconds:.2f}x |")
    p32, p8 = results[runs[3][0]][0], results[runs[5][0]][0]
    po2, peager = results[runs[4][0]][0], results[runs[1][0]][0]
    print(f"\n- int8 vs fp32: labels agree on {100 * (p32.argmax(1) == p8.argmax(1)).mean():.2f}% of texts; "
          f"max probability difference {np.abs(p32 - p8).max():.4f}")
    print(f"- O2 vs fp32: labels agree on {100 * (p32.argmax(1) == po2.argmax(1)).mean():.2f}%; "
          f"ORT fp32 vs PyTorch: max probability difference {np.abs(p32 - peager).max():.2e}")
    print(f"- roofline: torch fp32 GEMM runs at {gflops:.0f} GFLOP/s here; at 2 FLOP per parameter per token "
          f"that caps the encoder at ~{roofline:.0f} tokens/s (attention and softmax not counted)")


if __name__ == "__main__":
    main()
