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
import functools
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from xlc import onnx, rundir
from xlc.scoring import Scorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MARGINS = (0.05, 0.1, 0.2, 0.3)
TARGET = 0.995
CALIBRATION = 256


def shared_texts(n: int, data: Path = DATA) -> pl.DataFrame:
    """Target-language texts of the three shared sets (`text`, `set`), n in a fixed random order."""
    frames = {"sib200": pl.read_parquet(data / "sib200_mldoc8.parquet").filter(pl.col("lang") != "eng_Latn"),
              "en2zh": pl.read_parquet(data / "en2zh_sentiment.parquet").filter(pl.col("lang") == "zh"),
              "tweets": pl.read_parquet(data / "xlm_t_sentiment" / "test.parquet").filter(pl.col("lang") != "en")}
    texts = pl.concat([f.select(pl.col("text").cast(pl.String), set=pl.lit(name)) for name, f in frames.items()])
    return texts.sample(min(n, texts.height), seed=0)


def pool_texts(n: int, left_out: pl.DataFrame, data: Path = DATA) -> list[str]:
    """n calibration texts from the same target-language pool, none of them among the scored ones."""
    texts = shared_texts(10**9, data).filter(~pl.col("text").is_in(left_out["text"].implode()))
    return texts.sample(min(n, texts.height), seed=1)["text"].to_list()


Quantise = Callable[[Path, Path, list[str]], None]
"""(model.onnx, target, calibration pool texts)"""


def dynamic(smooth: float | None = None, u8u8: bool = False, **options: object) -> Quantise:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised per tensor at run time.

    smooth: SmoothQuant's alpha, applied first (`smoothed`); u8u8: uint8 weights (no u8s8 saturation on
    CPUs without VNNI).
    """
    def run(source: Path, target: Path, pool: list[str]) -> None:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source, given = prepared(source, target, pool, smooth, options)
        quantize_dynamic(source, target, weight_type=QuantType.QUInt8 if u8u8 else QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT}, **given)  # type: ignore[arg-type]
    return run


def static(method: str = "MinMax", smooth: float | None = None, **options: object) -> Quantise:
    """ONNX Runtime static QDQ quantisation of the MatMuls with weights, activation ranges calibrated on the pool."""
    def run(source: Path, target: Path, pool: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        source, given = prepared(source, target, pool, smooth, options)
        quantize_static(source, target, CalibrationReader(source, pool),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"MatMulConstBOnly": True, "CalibPercentile": 99.99}, **given)  # type: ignore[arg-type]
    return run


def prepared(source: Path, target: Path, pool: list[str], smooth: float | None,
             options: dict[str, object]) -> tuple[Path, dict[str, object]]:
    """The model to quantise (SmoothQuant's rescaled copy when `smooth` is given) and the quantiser's
    options, `ffn_output_fp32` turned into the FFN output MatMuls to leave out."""
    given = {k: v for k, v in options.items() if k != "ffn_output_fp32"}
    if options.get("ffn_output_fp32"):
        given["nodes_to_exclude"] = ffn_output_matmuls(source)
    if smooth is not None:
        source = smoothed(source, target.with_name("smoothed.onnx"), smooth, pool)
    return source, given


def smooth_only(alpha: float) -> Quantise:
    """SmoothQuant's rescaling alone, in fp32: must score as the original model does."""
    def run(source: Path, target: Path, pool: list[str]) -> None:
        smoothed(source, target, alpha, pool)
    return run


class CalibrationReader:
    """Feeds the calibration pool texts to quantize_static, batched as the Scorer batches them."""

    def __init__(self, model: Path, pool: list[str], batch_size: int = 32) -> None:
        import onnx as onnx_lib

        wants = {i.name for i in onnx_lib.load(str(model), load_external_data=False).graph.input}
        self.batches = ({k: v for k, v in f.items() if k in wants} for f in feeds(model.parent, pool, batch_size))

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def feeds(model_dir: Path, texts: list[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """ONNX inputs for `texts` in length-sorted batches, tokenised as `Scorer.probabilities` does."""
    from xlc.modeldir import FastTokenizer, built_in_prefix, read_meta

    meta = read_meta(model_dir)
    tokenizer = FastTokenizer(model_dir, built_in_prefix(meta))
    ids = sorted(tokenizer.encode([meta.get("text_prefix", "") + t for t in texts], meta.get("max_length") or 128),
                 key=len)
    for start in range(0, len(ids), batch_size):
        rows = ids[start : start + batch_size]
        batch = np.full((len(rows), max(map(len, rows))), tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros_like(batch)
        for j, r in enumerate(rows):
            batch[j, : len(r)], mask[j, : len(r)] = r, 1
        yield {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)}


@functools.cache
def channel_maxima(model_dir: Path, texts: tuple[str, ...]) -> dict[str, np.ndarray]:
    """max |x| per input channel of each Linear on `texts` (PyTorch checkpoint, forward hooks), by module name."""
    import torch

    from xlc import model as xlc_model

    clf = xlc_model.load(model_dir)
    maxima: dict[str, np.ndarray] = {}

    def hook(name: str):
        def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).numpy()
            maxima[name] = np.maximum(maxima[name], x) if name in maxima else x
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in clf.model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    try:
        xlc_model.predict(clf, list(texts), clf.max_length or 128, batch_size=32)
    finally:
        for h in handles:
            h.remove()
    return maxima


def module_name(matmul: str) -> str:
    """The PyTorch module of an exported MatMul node's name: /encoder/layer.0/.../MatMul -> encoder.layer.0...."""
    return matmul.removesuffix("/MatMul").lstrip("/").replace("/", ".")


def smoothed(source: Path, target: Path, alpha: float, pool: list[str]) -> Path:
    """SmoothQuant on the ONNX graph: x W = (x / s) (s W), s_j = max|x_j|^a / max|W_j|^(1-a), per input channel.

    BERT is post-LayerNorm: the LayerNorm output is also the residual, so 1/s cannot be folded into it; a
    Mul by 1/s is inserted before each group of MatMuls sharing an input (Q/K/V share one). The maxima
    come from the PyTorch checkpoint beside model.onnx, on the calibration pool texts.
    """
    import onnx as onnx_lib
    from onnx import helper, numpy_helper

    maxima = channel_maxima(source.parent, tuple(pool))
    model = onnx_lib.load(str(source))
    weights = {w.name: w for w in model.graph.initializer}
    groups: dict[str, list] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights and module_name(node.name) in maxima:
            groups[node.input[0]].append(node)
    muls = {}
    for tensor, nodes in groups.items():
        x = maxima[module_name(nodes[0].name)]
        ws = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]  # ONNX MatMul weight: [in, out]
        w = np.max([np.abs(m).max(1) for m in ws], axis=0)
        s = (np.maximum(x, 1e-5) ** alpha / np.maximum(w, 1e-5) ** (1 - alpha)).astype(np.float32)
        for n, m in zip(nodes, ws, strict=True):
            weights[n.input[1]].CopyFrom(numpy_helper.from_array(m * s[:, None], n.input[1]))
            n.input[0] = tensor + "_smoothed"
        model.graph.initializer.append(numpy_helper.from_array(1 / s, tensor + "_smooth_scale"))
        muls[tensor] = helper.make_node("Mul", [tensor, tensor + "_smooth_scale"], [tensor + "_smoothed"],
                                        name=tensor + "_smooth")
    nodes = list(model.graph.node)
    del model.graph.node[:]
    for node in nodes:  # each Mul right after the node that makes its input: the graph stays sorted
        model.graph.node.append(node)
        model.graph.node.extend(muls[o] for o in node.output if o in muls)
    onnx_lib.save(model, str(target))
    return target


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
    "MatMul per channel, u8u8": lambda: dynamic(op_types_to_quantize=["MatMul"], per_channel=True, u8u8=True),
    "SmoothQuant 0.5 in fp32 (check: same probabilities)": lambda: smooth_only(0.5),
    "SmoothQuant 0.5, MatMul per channel": lambda: dynamic(0.5, op_types_to_quantize=["MatMul"], per_channel=True),
    "SmoothQuant 0.5, MatMul per channel, reduced range": lambda: dynamic(0.5, op_types_to_quantize=["MatMul"],
                                                                          per_channel=True, reduce_range=True),
    "SmoothQuant 0.5, MatMul per channel, u8u8": lambda: dynamic(0.5, u8u8=True, op_types_to_quantize=["MatMul"],
                                                                 per_channel=True),
    "SmoothQuant 0.5, MatMul per channel, u8u8, FFN output fp32": lambda: dynamic(
        0.5, u8u8=True, op_types_to_quantize=["MatMul"], per_channel=True, ffn_output_fp32=True),
    "static QDQ, MinMax": lambda: static("MinMax"),
    "static QDQ, percentile 99.99": lambda: static("Percentile"),
}


def variant_dir(model_dir: Path, work: Path, quantise: Quantise, pool: list[str]) -> Path:
    """A copy of the model folder (less the PyTorch weights) whose model.onnx is the quantised variant."""
    out = work / f"v{len(list(work.iterdir()))}"
    out.mkdir()
    for f in model_dir.iterdir():
        if f.is_file() and f.name not in (onnx.ONNX_FILE, onnx.INT8_FILE) and not f.name.startswith(".") \
                and f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    quantise(model_dir / onnx.ONNX_FILE, out / onnx.ONNX_FILE, pool)
    return out


def needed(same: np.ndarray, unsure: np.ndarray, target: float = TARGET) -> float:
    """The share to re-score in fp32, most unsure first, for the agreement to reach `target`."""
    fixed = np.cumsum(~same[np.argsort(-unsure, kind="stable")])  # changed labels among the k most unsure
    reached = np.flatnonzero(same.mean() + fixed / len(same) >= target - 1e-12)
    return float((reached[0] + 1) / len(same)) if same.mean() < target else 0.0


def signals(q: np.ndarray) -> dict[str, np.ndarray]:
    """Unsureness of each int8 result (higher: re-score first)."""
    top2 = np.sort(q, axis=1)[:, -2:]
    return {"margin": top2[:, 0] - top2[:, 1], "top probability": -top2[:, 1],
            "log-odds of the top two": np.log(top2[:, 0]) - np.log(top2[:, 1])}


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
            "cascade": cascade,
            "rescored_for_target": {k: needed(same, u) for k, u in signals(q).items()}}


def pairs(probs: dict[str, np.ndarray], names: list[str]) -> list[dict]:
    """Cascade on two int8 variants: re-score first where their labels differ, then by the first one's margin."""
    best = sorted(names, key=lambda n: -(probs[n].argmax(1) == probs["fp32"].argmax(1)).mean())[:3]
    out = []
    for a in best:
        for b in best:
            if a != b:
                same = probs["fp32"].argmax(1) == probs[a].argmax(1)
                differ = probs[a].argmax(1) != probs[b].argmax(1)
                unsure = np.where(differ, 2.0, signals(probs[a])["margin"])
                out.append({"first": a, "second": b, "differ": float(differ.mean()),
                            "changed_found_by_differ": float((differ & ~same).sum() / max((~same).sum(), 1)),
                            "rescored_for_target": needed(same, unsure)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="a run folder or exported model folder")
    p.add_argument("--texts", type=int, default=2000)
    p.add_argument("--cycles", type=int, default=0, help="timed interleaved cycles (0: agreement only)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--calibration", type=int, default=CALIBRATION, help="pool texts for SmoothQuant and static")
    p.add_argument("--only", nargs="*", default=None, help="these variants (names as in VARIANTS) only")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/int8"))
    args = p.parse_args()
    model_dir = rundir.find_model(args.model)
    frame = shared_texts(args.texts)
    texts, sets = frame["text"].to_list(), frame["set"].to_numpy()
    pool = pool_texts(args.calibration, frame)
    variants = {k: v for k, v in VARIANTS.items() if args.only is None or k in args.only}
    result: dict = {"command": "python benchmarks/int8.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(repr, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v is not None and k != "out"),
        "texts": len(texts), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"fp32": model_dir}
        for name, options in variants.items():
            start = time.perf_counter()
            try:
                dirs[name] = variant_dir(model_dir, Path(tmp), options(), pool)
            except Exception as exc:  # one failing lever should not lose the others' results
                result.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"
                print(f"{name}: failed: {exc}", flush=True)
                continue
            print(f"{name}: made in {time.perf_counter() - start:.0f} s", flush=True)
        variants = {k: v for k, v in variants.items() if k in dirs}
        scorers = {name: Scorer.open(d, threads=args.threads) for name, d in dirs.items()}
        probs = {name: s.probabilities(texts, args.batch_size) for name, s in scorers.items()}
        for name in variants:
            result["variants"][name] = agreement(probs["fp32"], probs[name], sets)
            result["variants"][name]["size_mb"] = (dirs[name] / onnx.ONNX_FILE).stat().st_size / 2**20
            print(f"{name}: agreement {result['variants'][name]['agreement']:.4f}", flush=True)
        result["pairs"] = pairs(probs, [n for n in variants if "check" not in n])
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
            for name in variants:
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
    lines += [f"- failed: {k}: {e}" for k, e in r.get("failed", {}).items()] + ([""] if r.get("failed") else [])
    lines += ["| variant | agreement | per set | changed | max fp32 margin of a changed label | max abs prob diff | "
              "size MB | "
              "speed-up vs fp32 (median [min, max]) | cascade: re-scored / agreement at margin "
              + ", ".join(map(str, MARGINS)) + " |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        speed = v.get("speedup")
        sp = f"{speed['median']:.2f}x [{speed['min']:.2f}, {speed['max']:.2f}]" if speed else "not timed"
        cascade = "; ".join(f"{c['rescored']:.1%} / {c['agreement']:.2%}" for c in v["cascade"].values())
        per_set = ", ".join(f"{k} {x:.2%}" for k, x in v["agreement_per_set"].items())
        lines.append(f"| {name} | {v['agreement']:.2%} | {per_set} | {v['changed']} | "
                     f"{v['fp32_margin_of_changed_max']:.2f} | {v['max_abs_prob_diff']:.1e} | {v['size_mb']:.0f} | "
                     f"{sp} | {cascade} |")
    signal_names = list(next(iter(r["variants"].values()))["rescored_for_target"])
    lines += ["", f"Cascade signals: share re-scored in fp32, most unsure first, to reach {TARGET:.1%} agreement", "",
              "| variant | " + " | ".join(signal_names) + " |", "|---|" + "---|" * len(signal_names)]
    for name, v in r["variants"].items():
        lines.append(f"| {name} | " + " | ".join(f"{x:.1%}" for x in v["rescored_for_target"].values()) + " |")
    if "pairs" in r:
        lines += ["", "Two int8 variants: re-score first where their labels differ, then by the first one's margin", "",
                  "| first | second | labels differ | changed labels among them | re-scored for the target |",
                  "|---|---|---|---|---|"]
    for c in r.get("pairs", []):
        lines.append(f"| {c['first']} | {c['second']} | {c['differ']:.1%} | {c['changed_found_by_differ']:.0%} | "
                     f"{c['rescored_for_target']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
