"""Scoring speed, side by side and interleaved: PyTorch eager, ONNX Runtime (bucketing, offline graph
optimisation O1-O3, int8) and two anchors (a sentence-transformers-style PyTorch loop, OpenVINO).

    python benchmarks/score_speed.py --model RUN_OR_MODEL_DIR [--texts 600] [--cycles 3] [--only KEY ...]

Every variant scores the same --texts real target-language texts (those of `int8.shared_texts`: the
three shared data sets) once per cycle, in turn, over --cycles cycles, so that a change of load hits
the variants of a cycle alike. Before the first cycle each variant is prepared (copied, optimised,
quantised, compiled: not timed) and warmed up on two batches. Per variant: seconds per cycle, texts/s
and tokens/s (real tokens after truncation, median cycle), the speed-up over the naive eager baseline
and over ORT fp32 bucketed (the ratio of their seconds in each cycle: median [min, max]), and label
agreement and the largest absolute probability difference against ORT fp32 bucketed (on cycle 0's
probabilities), so that a fast but wrong variant shows. The load average is recorded after each cycle.

Variants (`--only` keys; ORT fp32 bucketed, the reference, always runs):
- eager-naive: PyTorch eager (`torch.no_grad`), batches in input order: the baseline.
- eager-sorted: the same, length-sorted batches.
- st-anchor: the loop `SentenceTransformer.encode` runs, emulated (sentence-transformers is not a
  dependency): texts sorted by character length, longest first; each batch tokenised with padding by the
  Hugging Face tokenizer; `torch.inference_mode()`; SDPA attention, as `AutoModel` loads BERT by default
  (xlc's own PyTorch model uses eager attention); bf16 autocast only where the CPU has native bf16
  (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo), else fp32, and the results say why.
- ort-input-order, ort-bucketed: ONNX Runtime fp32 through `Scorer.probabilities`, without and with its
  length bucketing (xlc's default).
- ort-o1, ort-o2, ort-o3: Optimum's offline graph optimisation presets (`xlc.onnx.optimize`) on copies,
  bucketed. The Scorer's sessions already apply ONNX Runtime's own online optimisation at
  ORT_ENABLE_ALL, which includes most of the same fusions: the offline levels are measured on top of it.
- ort-int8: dynamic int8 (what `xlc score --int8` uses), quantised into a copy, bucketed.
- openvino: OpenVINO's runtime on the same model.onnx (it reads ONNX itself, `Core().compile_model`:
  optimum-intel is not needed), at its default precision on this CPU (recorded), length-sorted batches.
  An optional benchmark dependency: `pip install 'xlc[bench]'`; without it the variant is reported as
  not installed.
- ort-online-basic (only when named in --only): the fp32 model with ONNX Runtime's online optimisation
  at ORT_ENABLE_BASIC, to see what ORT_ENABLE_ALL gives by itself.

All variants but st-anchor go through `Scorer.probabilities` (the PyTorch and OpenVINO models behind
its session interface), so they tokenise, batch and restore order alike and differ only in the engine
and the batch order; every timing includes tokenisation.

The default --texts 600 keeps a 3-cycle run of every variant near 10 minutes on 2 idle cores with the
default model (multilingual-e5-small, 21.5 M non-embedding parameters, --max-length 64): ORT fp32 bucketed
took 34 s for 2,000 of these texts (benchmarks/results/int8.json), which puts one cycle of the ten
variants near 150 s, the naive eager baseline the largest part; preparing them adds 2-3 minutes. All
variants score the same texts, so every ratio compares like with like. Without PyTorch weights beside
the ONNX model (an `xlc export` folder) the eager variants and the anchor are reported as not run.

Writes OUT.json and OUT.md (--out, default benchmarks/results/score_speed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from xlc import files, model, onnx, rundir
from xlc.errors import XlcError
from xlc.scoring import Scorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8 import shared_texts  # noqa: E402  (the same texts as the int8 benchmark)

OUT = Path(__file__).resolve().parent / "results" / "score_speed"
BASELINE, REFERENCE = "eager-naive", "ort-bucketed"
NAMES = {
    "eager-naive": "PyTorch eager, input order (naive baseline)",
    "eager-sorted": "PyTorch eager, length-sorted batches",
    "st-anchor": "anchor: sentence-transformers-style PyTorch loop",
    "ort-input-order": "ORT fp32, input order",
    "ort-bucketed": "ORT fp32, length-bucketed (xlc default)",
    "ort-o1": "ORT fp32 + offline O1, bucketed",
    "ort-o2": "ORT fp32 + offline O2, bucketed",
    "ort-o3": "ORT fp32 + offline O3, bucketed",
    "ort-int8": "ORT dynamic int8, bucketed (xlc score --int8)",
    "openvino": "anchor: OpenVINO on the same ONNX, length-sorted batches",
    "ort-online-basic": "ORT fp32, online optimisation ORT_ENABLE_BASIC only, bucketed",
}
DEFAULT = [k for k in NAMES if k != "ort-online-basic"]
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
PACKAGES = ("xlc", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "openvino",
            "tokenizers", "numpy")
NOT_INSTALLED = "not installed (pip install 'xlc[bench]')"

Probabilities = Callable[[Sequence[str]], np.ndarray]


class Unavailable(Exception):
    """A variant that cannot run here (a missing package, no PyTorch weights): reported with the reason."""


# ---- engines behind the Scorer's session interface ------------------------------------------------

class TorchSession:
    """The PyTorch classifier behind the ORT session calls `Scorer.probabilities` makes (`get_inputs`, `run`)."""

    def __init__(self, module: object) -> None:
        self.module = module

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="input_ids"), SimpleNamespace(name="attention_mask")]

    def run(self, _outputs: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            logits = self.module(input_ids=torch.from_numpy(feed["input_ids"]),  # type: ignore[operator]
                                 attention_mask=torch.from_numpy(feed["attention_mask"])).logits
        return [logits.float().numpy()]


class OpenVinoSession:
    """An OpenVINO model compiled for the CPU from model.onnx, behind the same two calls."""

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            import openvino
        except ImportError:
            raise Unavailable(NOT_INSTALLED) from None
        core = openvino.Core()
        self.compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads} if threads else {})
        self.request = self.compiled.create_infer_request()
        self.names = [i.get_any_name() for i in self.compiled.inputs]
        self.output = self.compiled.output(0)

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=n) for n in self.names]

    def run(self, _outputs: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(self.request.infer({n: feed[n] for n in self.names})[self.output])]

    def precision(self) -> str:
        found = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return found.to_string() if hasattr(found, "to_string") else str(found)


# ---- the variants ----------------------------------------------------------------------------------

@dataclass
class Bench:
    """What the variants share: the model, the reference scorer, the settings, a scratch folder."""

    model_dir: Path
    source: Path
    """--model as given (a run folder or a model folder): where the PyTorch weights are looked for."""
    work: Path
    reference: Scorer
    batch_size: int
    max_length: int
    threads: int | None
    notes: dict = dataclasses.field(default_factory=dict)
    """Facts a variant learns while it is prepared (precision, attention, bf16), by key."""

    @functools.cached_property
    def classifier(self) -> model.Classifier:
        try:
            return model.load(rundir.find_checkpoint(self.source))
        except XlcError as exc:
            raise Unavailable(f"no PyTorch weights: {exc}") from None

    def scorer_on(self, session: object) -> Scorer:
        return dataclasses.replace(self.reference, session=session)

    def bucketed(self, scorer: Scorer, bucket: bool = True) -> Probabilities:
        return lambda texts: scorer.probabilities(texts, self.batch_size, self.max_length, bucket=bucket)

    def copy(self, name: str) -> Path:
        """The model folder without PyTorch weights or int8 file, in one self-contained model.onnx
        (`xlc.onnx.optimize` keeps only the .onnx file it writes, so external data is taken in)."""
        import onnx as onnx_lib

        target = self.work / name
        target.mkdir()
        for f in self.model_dir.iterdir():
            if f.is_file() and not f.name.startswith(".") and f.suffix != ".safetensors" \
                    and f.name not in (onnx.ONNX_FILE, onnx.ONNX_DATA, onnx.INT8_FILE):
                shutil.copy2(f, target / f.name)
        if (self.model_dir / onnx.ONNX_DATA).is_file():
            onnx_lib.save(onnx_lib.load(str(self.model_dir / onnx.ONNX_FILE)), str(target / onnx.ONNX_FILE))
        else:
            shutil.copy2(self.model_dir / onnx.ONNX_FILE, target / onnx.ONNX_FILE)
        return target


def eager(bench: Bench, bucket: bool) -> Probabilities:
    return bench.bucketed(bench.scorer_on(TorchSession(bench.classifier.model)), bucket)


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and why (from /proc/cpuinfo's flags)."""
    found = [f for f in BF16_FLAGS if f in cpu_flags()]
    if found:
        return True, f"bf16 autocast: the CPU has {', '.join(found)}"
    return False, (f"fp32, bf16 not used: the CPU has neither {' nor '.join(BF16_FLAGS)} (autocast to bf16 "
                   f"would be emulated, and slower)")


def sdpa_model(clf: model.Classifier) -> tuple[object, str]:
    """`clf`'s model with SDPA attention, as `AutoModel.from_pretrained` would load the encoder, and the
    attention used; xlc's own model when the encoder has no SDPA version."""
    from transformers import AutoModel

    try:
        try:
            encoder = AutoModel.from_config(copy.deepcopy(clf.model.config), attn_implementation="sdpa",
                                            add_pooling_layer=False)
        except TypeError:  # encoders without a pooler
            encoder = AutoModel.from_config(copy.deepcopy(clf.model.config), attn_implementation="sdpa")
        encoder.load_state_dict(clf.model.encoder.state_dict())
    except (ValueError, ImportError, RuntimeError) as exc:
        return clf.model, f"eager (SDPA not available: {str(exc)[:120]})"
    twin = type(clf.model)(copy.deepcopy(clf.model.config), encoder)  # the head is xlc's own: mean pooling
    twin.classifier.load_state_dict(clf.model.classifier.state_dict())
    return twin.eval(), str(encoder.config._attn_implementation)


def sentence_transformers_style(bench: Bench) -> Probabilities:
    """SentenceTransformer.encode's loop: sort by characters (longest first), tokenise each batch with
    padding, run under inference_mode (bf16 autocast only on native bf16), restore the order."""
    import torch

    clf = bench.classifier
    module, attention = sdpa_model(clf)
    bf16, why = native_bf16()
    bench.notes["st-anchor"] = f"attention {attention}; {why}"
    tokenizer, prefix, size, length = clf.tokenizer, clf.text_prefix, bench.batch_size, bench.max_length

    def score(texts: Sequence[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), len(clf.classes)), dtype=np.float32)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                features = tokenizer([prefix + texts[r] for r in rows], padding=True, truncation=True,  # type: ignore[operator]
                                     max_length=length, return_tensors="pt")
                logits = module(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).logits
                out[rows] = torch.softmax(logits.float(), -1).numpy()
        return out
    return score


def offline(bench: Bench, level: str) -> Probabilities:
    folder = bench.copy(level)
    onnx.optimize(folder, level)
    return bench.bucketed(Scorer.open(folder, threads=bench.threads))


def dynamic_int8(bench: Bench) -> Probabilities:
    folder = bench.copy("int8")
    onnx.quantize_int8(folder)
    return bench.bucketed(Scorer.open(folder, threads=bench.threads, int8=True))


def openvino(bench: Bench) -> Probabilities:
    session = OpenVinoSession(bench.model_dir / onnx.ONNX_FILE, bench.threads)
    bench.notes["openvino"] = f"inference precision {session.precision()}"
    return bench.bucketed(bench.scorer_on(session))


def online_basic(bench: Bench) -> Probabilities:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(bench.threads or os.cpu_count() or 1, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(bench.model_dir / onnx.ONNX_FILE), options, providers=["CPUExecutionProvider"])
    return bench.bucketed(bench.scorer_on(session))


PREPARE: dict[str, Callable[[Bench], Probabilities]] = {
    "eager-naive": lambda b: eager(b, bucket=False),
    "eager-sorted": lambda b: eager(b, bucket=True),
    "st-anchor": sentence_transformers_style,
    "ort-input-order": lambda b: b.bucketed(b.reference, bucket=False),
    "ort-bucketed": lambda b: b.bucketed(b.reference),
    "ort-o1": lambda b: offline(b, "O1"),
    "ort-o2": lambda b: offline(b, "O2"),
    "ort-o3": lambda b: offline(b, "O3"),
    "ort-int8": dynamic_int8,
    "openvino": openvino,
    "ort-online-basic": online_basic,
}


# ---- facts about the run ---------------------------------------------------------------------------

@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return frozenset(line.split(":", 1)[-1].split())


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                    if x.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "flags": {f: f in cpu_flags() for f in CPU_FLAGS},
            "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def onnx_mb(folder: Path, name: str = onnx.ONNX_FILE) -> float:
    size = (folder / name).stat().st_size
    if name == onnx.ONNX_FILE and (folder / onnx.ONNX_DATA).is_file():
        size += (folder / onnx.ONNX_DATA).stat().st_size
    return round(size / 2**20, 1)


def padded_tokens(lengths: np.ndarray, batch_size: int, bucket: bool) -> int:
    """Token positions the model computes (each batch padded to its longest text) in input or sorted order."""
    order = np.sort(lengths) if bucket else lengths
    return int(sum(len(b) * b.max() for b in np.split(order, range(batch_size, len(order), batch_size))))


def spread(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


# ---- the run ---------------------------------------------------------------------------------------

def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="a run folder or an exported model folder")
    p.add_argument("--texts", type=int, default=600)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--only", nargs="+", choices=list(NAMES), default=None,
                   help="these variants only (ORT fp32 bucketed, the reference, always runs)")
    p.add_argument("--threads", type=int, default=None, help="default: every core")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="default: the model's own (as Scorer uses it)")
    p.add_argument("--out", type=Path, default=OUT, help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    if args.texts < 1 or args.cycles < 1:
        p.error("--texts and --cycles must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    import torch

    args = parse(argv)
    keys = [k for k in NAMES if k in (args.only or DEFAULT) or k == REFERENCE]
    model_dir = rundir.find_model(args.model)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    texts = shared_texts(args.texts)["text"].to_list()
    reference = Scorer.open(model_dir, threads=args.threads)
    max_length = reference.max_length_for(args.max_length)
    lengths = np.array([len(x) for x in reference.tokenizer.encode([reference.text_prefix + t for t in texts],
                                                                   max_length)])
    result: dict = {
        "command": shlex.join(["python", "benchmarks/score_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(), "versions": versions(), "threads": args.threads or os.cpu_count(),
        "model": {"path": str(model_dir), "onnx_mb": onnx_mb(model_dir), "classes": len(reference.classes)},
        "texts": len(texts), "tokens": int(lengths.sum()),
        "padded_tokens": {"input order": padded_tokens(lengths, args.batch_size, False),
                          "length-sorted": padded_tokens(lengths, args.batch_size, True)},
        "batch_size": args.batch_size, "max_length": max_length, "cycles": args.cycles,
        "bf16": dict(zip(("native", "why"), native_bf16(), strict=True)),
        "baseline": BASELINE, "reference": REFERENCE, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="xlc-score-speed-") as tmp:
        bench = Bench(model_dir, args.model, Path(tmp), reference, args.batch_size, max_length, args.threads)
        scorers = prepare(bench, keys, texts, result)
        with contextlib.suppress(Unavailable):
            encoder = bench.classifier.model.encoder
            result["model"]["non_embedding_params_m"] = round(sum(
                p.numel() for n, p in encoder.named_parameters() if "word_embeddings" not in n) / 1e6, 2)
        measure(scorers, texts, args.cycles, result)
    result["notes"] = bench.notes
    summarise(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    files.write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return result


def prepare(bench: Bench, keys: list[str], texts: list[str], result: dict) -> dict[str, Probabilities]:
    """Each variant made and warmed up (not timed); one that cannot run is recorded with the reason."""
    scorers = {}
    warm = texts[: 2 * bench.batch_size]
    for key in keys:
        entry = result["variants"][key] = {"name": NAMES[key]}
        start = time.perf_counter()
        try:
            scorer = PREPARE[key](bench)
            scorer(warm)
        except Unavailable as exc:
            entry["status"] = str(exc)
        except Exception as exc:  # one variant that fails should not lose the others' results
            entry["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            entry["status"] = "ok"
            scorers[key] = scorer
        entry["prepare_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{key}: {entry['status']} ({entry['prepare_seconds']} s to prepare)", file=sys.stderr, flush=True)
    sizes = {"ort-bucketed": onnx_mb(bench.model_dir), "ort-int8": None}
    for level in ("o1", "o2", "o3"):
        if (bench.work / level.upper() / onnx.ONNX_FILE).is_file():
            sizes[f"ort-{level}"] = onnx_mb(bench.work / level.upper())
    if (bench.work / "int8" / onnx.INT8_FILE).is_file():
        sizes["ort-int8"] = onnx_mb(bench.work / "int8", onnx.INT8_FILE)
    for key, mb in sizes.items():
        if key in result["variants"] and mb is not None:
            result["variants"][key]["onnx_mb"] = mb
    return scorers


def measure(scorers: dict[str, Probabilities], texts: list[str], cycles: int, result: dict) -> None:
    """Every variant on all texts once per cycle, in turn; cycle 0's probabilities kept for agreement."""
    seconds: dict[str, list[float]] = {k: [] for k in scorers}
    probs: dict[str, np.ndarray] = {}
    result["load_average_before"] = round(os.getloadavg()[0], 2)
    result["load_average"] = []
    for cycle in range(cycles):
        for key, scorer in scorers.items():
            start = time.perf_counter()
            out = scorer(texts)
            seconds[key].append(time.perf_counter() - start)
            probs.setdefault(key, out)
            print(f"cycle {cycle} {key}: {seconds[key][-1]:.1f} s", file=sys.stderr, flush=True)
        result["load_average"].append(round(os.getloadavg()[0], 2))
    for key in scorers:
        entry = result["variants"][key]
        entry["seconds"] = [round(s, 3) for s in seconds[key]]
        if REFERENCE in probs:
            same = probs[key].argmax(1) == probs[REFERENCE].argmax(1)
            entry["agreement"] = float(same.mean())
            entry["max_abs_prob_diff"] = float(np.abs(probs[key] - probs[REFERENCE]).max())


def summarise(result: dict) -> None:
    """texts/s and tokens/s at the median cycle; per-cycle speed-ups over the baseline and the reference."""
    variants = result["variants"]
    for entry in variants.values():
        if "seconds" not in entry:
            continue
        median = float(np.median(entry["seconds"]))
        entry["texts_per_s"] = round(result["texts"] / median, 1)
        entry["tokens_per_s"] = round(result["tokens"] / median, 1)
        for label, base in (("vs_baseline", BASELINE), ("vs_reference", REFERENCE)):
            if "seconds" in variants.get(base, {}):
                entry[label] = spread([b / s for b, s in zip(variants[base]["seconds"], entry["seconds"], strict=True)])


def markdown(r: dict) -> str:
    m = r["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on) or "none of " + ", ".join(CPU_FLAGS)
    lines = [
        "# xlc scoring speed: engines, batch order, graph optimisation, int8 and anchors", "",
        f"- command: `{r['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable), {m['memory_gib']} GiB; "
        f"CPU flags: {flags}; threads {r['threads']}; sentence-transformers-style anchor: {r['bf16']['why']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        f"- model: {r['model']['path']} ({r['model']['onnx_mb']:.0f} MB ONNX"
        + (f", {r['model']['non_embedding_params_m']} M non-embedding parameters"
           if "non_embedding_params_m" in r["model"] else "") + f", {r['model']['classes']} classes)",
        f"- {r['texts']} real texts, {r['tokens']:,} tokens after truncation (padded: "
        f"{r['padded_tokens']['input order']:,} in input order, {r['padded_tokens']['length-sorted']:,} "
        f"length-sorted); batch {r['batch_size']}, max_length {r['max_length']}",
        f"- {r['cycles']} interleaved cycles; load average before {r['load_average_before']:.1f}, after each "
        f"cycle: {', '.join(f'{x:.1f}' for x in r['load_average'])}", "",
        "Speed-ups are the ratio of seconds in each cycle (median [min, max]); agreement and the probability "
        "difference are against ORT fp32 bucketed.", "",
        "| variant | seconds per cycle | texts/s | tokens/s | vs naive eager | vs ORT fp32 bucketed | "
        "label agreement | max abs prob diff | ONNX MB |",
        "|---|---|---:|---:|---|---|---:|---:|---:|"]

    def ratio(x: dict | None) -> str:
        return f"{x['median']:.2f}x [{x['min']:.2f}, {x['max']:.2f}]" if x else "-"

    for entry in r["variants"].values():
        if "seconds" not in entry:
            lines.append(f"| {entry['name']} | {entry['status']} | | | | | | | |")
            continue
        lines.append(
            f"| {entry['name']} | {', '.join(f'{s:.1f}' for s in entry['seconds'])} | {entry['texts_per_s']:.0f} | "
            f"{entry['tokens_per_s']:,.0f} | {ratio(entry.get('vs_baseline'))} | {ratio(entry.get('vs_reference'))} | "
            f"{entry.get('agreement', float('nan')):.2%} | {entry.get('max_abs_prob_diff', float('nan')):.1e} | "
            f"{entry.get('onnx_mb', '')} |")
    lines += ["", "Notes:", ""]
    lines += [f"- {NAMES[k]}: {v}" for k, v in r["notes"].items()]
    lines.append("- ORT sessions (xlc's and the O1-O3 copies) apply ONNX Runtime's online graph optimisation at "
                 "ORT_ENABLE_ALL; the offline levels come on top of it.")
    lines.append("- Preparing (copy, optimise, quantise, compile, warm-up; not timed), seconds: "
                 + ", ".join(f"{k} {v['prepare_seconds']}" for k, v in r["variants"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
