"""int8 scoring that keeps the labels: quantisation variants against fp32, side by side.

For each variant the trained model is quantised with ONNX Runtime and scored on the same real
texts as the fp32 model. It reports label agreement with fp32, how sure fp32 was where a label
changed, and, for the cascade (int8, then fp32 again for the texts whose int8 top-2 margin is
below a threshold), the share re-scored and the agreement it reaches. With --cycles, each
variant's scoring time is measured in interleaved cycles: median ratio to fp32, min-max, load.

    python benchmarks/int8.py --model RUN/best --texts 2000 --cycles 3 --out benchmarks/results/int8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from xlc import onnx, rundir
from xlc.scoring import Scorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MARGINS = (0.05, 0.1, 0.2, 0.3)


def shared_texts(n: int, data: Path = DATA) -> pl.DataFrame:
    """Target-language texts of the three shared sets (`text`, `set`), n in a fixed random order."""
    frames = {"sib200": pl.read_parquet(data / "sib200_mldoc8.parquet").filter(pl.col("lang") != "eng_Latn"),
              "en2zh": pl.read_parquet(data / "en2zh_sentiment.parquet").filter(pl.col("lang") == "zh"),
              "tweets": pl.read_parquet(data / "xlm_t_sentiment" / "test.parquet").filter(pl.col("lang") != "en")}
    texts = pl.concat([f.select(pl.col("text").cast(pl.String), set=pl.lit(name)) for name, f in frames.items()])
    return texts.sample(min(n, texts.height), seed=0)


Quantise = Callable[[Path, Path], None]


def dynamic(**options: object) -> Quantise:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised per tensor at run time."""
    def run(source: Path, target: Path) -> None:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if options.pop("ffn_output_fp32", False):
            options["nodes_to_exclude"] = ffn_output_matmuls(source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT}, **options)  # type: ignore[arg-type]
    return run


def ffn_output_matmuls(model: Path) -> list[str]:
    """The MatMul nodes of each layer's FFN output projection (their inputs carry the outliers)."""
    import onnx as onnx_lib

    graph = onnx_lib.load(str(model), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name
            and "attention" not in n.name]


VARIANTS: dict[str, Callable[[], Quantise]] = {
    "xlc today (MatMul+Gather, per tensor)": lambda: dynamic(),
    "MatMul only, per tensor": lambda: dynamic(op_types_to_quantize=["MatMul"]),
    "MatMul only, per channel": lambda: dynamic(op_types_to_quantize=["MatMul"], per_channel=True),
    "MatMul per channel, FFN output fp32": lambda: dynamic(op_types_to_quantize=["MatMul"], per_channel=True,
                                                           ffn_output_fp32=True),
    "MatMul per channel, reduced range": lambda: dynamic(op_types_to_quantize=["MatMul"], per_channel=True,
                                                         reduce_range=True),
}


def variant_dir(model_dir: Path, work: Path, name: str, quantise: Quantise) -> Path:
    """A copy of the model folder whose model.onnx is the quantised variant."""
    out = work / f"v{len(list(work.iterdir()))}"
    out.mkdir()
    for f in model_dir.iterdir():
        if f.is_file() and f.name not in (onnx.ONNX_FILE, onnx.INT8_FILE) and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)
    quantise(model_dir / onnx.ONNX_FILE, out / onnx.ONNX_FILE)
    return out


def agreement(fp32: np.ndarray, q: np.ndarray, sets: np.ndarray) -> dict:
    same = fp32.argmax(1) == q.argmax(1)
    top2 = np.sort(fp32, axis=1)[:, -2:]
    fp32_margin = top2[:, 1] - top2[:, 0]
    qs = np.sort(q, axis=1)[:, -2:]
    q_margin = qs[:, 1] - qs[:, 0]
    cascade = {}
    for t in MARGINS:
        unsure = q_margin < t
        cascade[str(t)] = {"rescored": float(unsure.mean()), "agreement": float((same | unsure).mean())}
    changed = ~same
    return {"agreement": float(same.mean()), "changed": int(changed.sum()),
            "agreement_per_set": {k: float(same[sets == k].mean()) for k in sorted(set(sets))},
            "max_abs_prob_diff": float(np.abs(fp32 - q).max()),
            "fp32_margin_of_changed_max": float(fp32_margin[changed].max()) if changed.any() else 0.0,
            "int8_margin_of_changed_max": float(q_margin[changed].max()) if changed.any() else 0.0,
            "cascade": cascade}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="a run folder or exported model folder")
    p.add_argument("--texts", type=int, default=2000)
    p.add_argument("--cycles", type=int, default=0, help="timed interleaved cycles (0: agreement only)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/int8"))
    args = p.parse_args()
    model_dir = rundir.find_model(args.model)
    frame = shared_texts(args.texts)
    texts, sets = frame["text"].to_list(), frame["set"].to_numpy()
    result: dict = {"command": "python benchmarks/int8.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "texts": len(texts), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"fp32": model_dir}
        for name, options in VARIANTS.items():
            dirs[name] = variant_dir(model_dir, Path(tmp), name, options())
        scorers = {name: Scorer.open(d, threads=args.threads) for name, d in dirs.items()}
        probs = {name: s.probabilities(texts, args.batch_size) for name, s in scorers.items()}
        for name in VARIANTS:
            result["variants"][name] = agreement(probs["fp32"], probs[name], sets)
            result["variants"][name]["size_mb"] = (dirs[name] / onnx.ONNX_FILE).stat().st_size / 2**20
            print(f"{name}: agreement {result['variants'][name]['agreement']:.4f}", flush=True)
        result["fp32_size_mb"] = (model_dir / onnx.ONNX_FILE).stat().st_size / 2**20
        if args.cycles:
            times: dict[str, list[float]] = {n: [] for n in dirs}
            loads = []
            for _ in range(args.cycles):
                for name, scorer in scorers.items():
                    start = time.perf_counter()
                    scorer.probabilities(texts, args.batch_size)
                    times[name].append(time.perf_counter() - start)
                loads.append(os.getloadavg()[0])
            for name in VARIANTS:
                ratios = [f / q for f, q in zip(times["fp32"], times[name], strict=True)]
                result["variants"][name]["speedup"] = {"median": float(np.median(ratios)), "min": min(ratios),
                                                       "max": max(ratios), "seconds": times[name]}
            result["fp32_seconds"] = times["fp32"]
            result["load_average"] = loads
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = ["# int8 variants against fp32", "", f"- command: `{r['command']}`", f"- texts: {r['texts']}",
             f"- fp32 model: {r['fp32_size_mb']:.0f} MB", ""]
    if "load_average" in r:
        lines.append(f"- load average per cycle: {', '.join(f'{x:.1f}' for x in r['load_average'])}")
        lines.append("")
    lines += ["| variant | agreement | per set | changed | max fp32 margin of a changed label | size MB | "
              "speed-up vs fp32 (median [min, max]) | cascade: re-scored / agreement at margin "
              + ", ".join(map(str, MARGINS)) + " |",
              "|---|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        speed = v.get("speedup")
        sp = f"{speed['median']:.2f}x [{speed['min']:.2f}, {speed['max']:.2f}]" if speed else "not timed"
        cascade = "; ".join(f"{c['rescored']:.1%} / {c['agreement']:.2%}" for c in v["cascade"].values())
        per_set = ", ".join(f"{k} {x:.2%}" for k, x in v["agreement_per_set"].items())
        lines.append(f"| {name} | {v['agreement']:.2%} | {per_set} | {v['changed']} | "
                     f"{v['fp32_margin_of_changed_max']:.2f} | {v['size_mb']:.0f} | {sp} | {cascade} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
