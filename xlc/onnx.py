"""Export a classifier to ONNX through Optimum and open ONNX Runtime sessions."""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xlc import files, modelcard, modeldir
from xlc.errors import XlcError, first_line
from xlc.files import atomic_dir

if TYPE_CHECKING:
    from xlc.model import Classifier

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
ONNX_DATA = "model.onnx_data"
"""Beside model.onnx in a run's models: its weights other than the word-embedding table (`split`)."""
INT8_FILE = "model.int8.onnx"
INT8_LOCK = ".int8.lock"
OPTIMIZE_LEVELS = ("O1", "O2", "O3")


def export(clf: Classifier, out: Path, kind: str = "model", overwrite: bool = False,
           card: Callable[[dict], str] | None = None, reuse: Sequence[Path] | None = None) -> Path:
    """Export `clf` to `out/model.onnx` with its tokenizer and xlc.json; atomic per folder.

    xlc.json keeps the classes, text prefix and training max length, so the export scores as the run did;
    the prefix is also built into the tokenizer (`modeldir.finish`), so Optimum alone scores as xlc does.

    An existing `out` is replaced only when xlc wrote it as a `kind` folder, or with `overwrite`
    (`files.check_replaceable`). `card`: makes the model card (`modelcard`) from the export's xlc.json,
    written as README.md.
    `reuse` (a run's rounds): earlier ONNX folders to share the word-embedding table with (`split`).
    """
    from optimum.exporters.onnx import export as onnx_export
    from optimum.exporters.tasks import TasksManager

    from xlc.model import save_tokenizer, table_name

    config = clf.model.config
    try:
        onnx_config = TasksManager.get_exporter_config_constructor(
            "onnx", task="text-classification", model_type=config.model_type,
            library_name="transformers",
        )(config)
    except (KeyError, ValueError) as exc:
        raise XlcError(f"Optimum cannot export encoders of type {config.model_type!r}: {exc}") from exc
    clf.model.eval()
    with atomic_dir(out, kind, "--out" if kind == "export" else "", overwrite) as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constants in the attention mask
        onnx_export(clf.model, onnx_config, tmp / ONNX_FILE, opset=max(17, onnx_config.DEFAULT_ONNX_OPSET))
        if reuse is not None:
            split(tmp, table_name(clf.model), reuse)
        config.save_pretrained(tmp)
        _drop_remote_code(tmp / "config.json")  # no PyTorch model here: nothing for trust_remote_code to build
        save_tokenizer(clf.tokenizer, tmp)
        meta = modeldir.finish(tmp, clf.classes, clf.text_prefix, clf.max_length)
        if card is not None:
            modelcard.write(tmp, card(meta))
    return out


MAX_INLINE = 1 << 30
"""The largest word-embedding table `split` keeps inside model.onnx (a protobuf holds at most 2 GiB)."""


def split(folder: Path, table: str, reuse: Sequence[Path]) -> None:
    """Rewrite `folder`'s export as model.onnx with the word-embedding initializer `table` inside and
    every other weight in model.onnx_data (ONNX external data, the name Optimum looks for).

    With the table frozen, model.onnx is then the same bytes every round (the graph and the table;
    tested), and it is hard-linked to the first `reuse` folder's identical model.onnx instead of
    written again. model.onnx_data, which changes every round, is never hard-linked: the onnx
    library refuses to read external data with more than one link ("hardlink attack").
    A model without such a table, or with one too large for a protobuf, keeps Optimum's files.
    """
    import onnx
    from onnx.external_data_helper import set_external_data, write_external_data_tensors

    path, data = folder / ONNX_FILE, folder / ONNX_DATA
    proto = onnx.load(path)  # with any external data Optimum wrote for a model over 2 GiB
    inside = [t for t in proto.graph.initializer if t.name == table]
    if len(inside) != 1 or inside[0].ByteSize() > MAX_INLINE:
        return
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    for tensor in proto.graph.initializer:  # the weights; integer shapes and indices stay in the graph
        if tensor.name != table and tensor.data_type in floats and tensor.HasField("raw_data"):
            set_external_data(tensor, ONNX_DATA)
            tensor.data_location = onnx.TensorProto.EXTERNAL
    for stale in (path, data):  # Optimum's files (all their data is in `proto` now)
        stale.unlink(missing_ok=True)
    write_external_data_tensors(proto, str(folder))
    linked = files.write_or_link(path, proto.SerializeToString(), [f / ONNX_FILE for f in reuse])
    if linked is not None:
        log.debug("%s: the graph and word-embedding table are %s's (hard link)", folder, linked.parent)


def _drop_remote_code(config_file: Path) -> None:
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.pop("auto_map", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def optimize(model_dir: Path, level: str) -> None:
    """Rewrite model.onnx with ONNX Runtime graph fusions (Optimum's O1/O2/O3 presets)."""
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    if level not in OPTIMIZE_LEVELS:
        raise XlcError(f"--optimize {level!r}: choose one of {', '.join(OPTIMIZE_LEVELS)}")
    optimizer = ORTOptimizer.from_pretrained(model_dir, file_names=[ONNX_FILE])
    scratch = model_dir.with_name(model_dir.name + "-optimized")
    with atomic_dir(scratch, "scratch") as tmp:
        optimizer.optimize(getattr(AutoOptimizationConfig, level)(), save_dir=tmp)
        optimized = next(tmp.glob("*.onnx"))
        files.commit(optimized, model_dir / ONNX_FILE)
    if files.is_marked(scratch):
        shutil.rmtree(scratch)


def quantize_int8(model_dir: Path) -> Path:
    """Write model.int8.onnx beside model.onnx: dynamic int8 weights for MatMul and Gather.

    Under a lock on the folder: a second process waits for the first and uses its file.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = model_dir / INT8_FILE
    try:
        with files.locked(model_dir / INT8_LOCK, f"{model_dir} (int8 quantisation)", wait=True):
            if target.is_file():  # written by the process we waited for
                return target
            with files.atomic_file(target) as tmp:
                try:
                    quantize_dynamic(model_dir / ONNX_FILE, tmp, weight_type=QuantType.QInt8,
                                     extra_options={"DefaultTensorType": TensorProto.FLOAT})  # fused graphs too
                except Exception as exc:
                    if files.is_io_error(exc):
                        raise files.write_error(target, exc) from None
                    raise XlcError(f"{model_dir / ONNX_FILE}: cannot be quantised to int8 ({first_line(exc)}); "
                                   f"the model folder is damaged: export it again") from None
    except OSError as exc:
        raise XlcError(f"{model_dir}: cannot write {INT8_FILE} there ({exc.strerror or exc}); "
                       f"{files.advice(exc)}, e.g. `xlc export --int8 --out NEW` from the run folder, "
                       f"or score without --int8") from None
    return target


def session(model_dir: Path, threads: int | None = None, provider: str = "cpu", int8: bool = False):
    """Open one ONNX Runtime session for `model_dir/model.onnx` (or its int8 twin).

    provider: "cpu", "cuda", or "auto" (CUDA when onnxruntime-gpu sees a GPU).
    """
    import onnxruntime as ort

    path = model_dir / (INT8_FILE if int8 else ONNX_FILE)
    if int8 and not path.is_file() and (model_dir / ONNX_FILE).is_file():
        log.info("quantising %s to int8 (once; kept as %s)", model_dir / ONNX_FILE, INT8_FILE)
        quantize_int8(model_dir)
    if not path.is_file():
        raise XlcError(f"{path} not found; export the model first with `xlc export`")
    options = ort.SessionOptions()
    cores = os.cpu_count() or 1
    if threads and threads > cores:  # ORT's spinning threads would crawl on fewer cores
        log.warning("--threads %d: this machine has %d CPU core(s); ONNX Runtime uses %d", threads, cores, cores)
    options.intra_op_num_threads = min(threads or cores, cores)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if provider == "cuda" and not has_cuda:
        log.warning("--provider cuda: this onnxruntime has no CUDA support (install xlc[gpu] on a "
                    "machine with a GPU); scoring on CPU")
    elif provider in ("cuda", "auto") and has_cuda:
        providers.insert(0, "CUDAExecutionProvider")
    elif provider not in ("cpu", "auto", "cuda"):
        raise XlcError(f"--provider {provider!r}: choose cpu, cuda or auto")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT's own exception types: truncated file, bad graph, refused external data
        raise XlcError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)}); the model folder is "
                       f"damaged or incomplete: export it again") from None
