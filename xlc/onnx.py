"""Export a classifier to ONNX through Optimum and open ONNX Runtime sessions."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from xlc.errors import XlcError
from xlc.files import atomic_dir
from xlc.model import Classifier, write_meta

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"


def export(clf: Classifier, out: Path) -> Path:
    """Export `clf` to `out/model.onnx` with its tokenizer and xlc.json; atomic per folder."""
    from optimum.exporters.onnx import export as onnx_export
    from optimum.exporters.tasks import TasksManager

    config = clf.model.config
    try:
        onnx_config = TasksManager.get_exporter_config_constructor(
            "onnx", task="text-classification", model_type=config.model_type,
            library_name="transformers",
        )(config)
    except (KeyError, ValueError) as exc:
        raise XlcError(f"Optimum cannot export encoders of type {config.model_type!r}: {exc}") from exc
    clf.model.eval()
    with atomic_dir(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constants in the attention mask
        onnx_export(clf.model, onnx_config, tmp / ONNX_FILE, opset=max(17, onnx_config.DEFAULT_ONNX_OPSET))
        config.save_pretrained(tmp)
        clf.tokenizer.save_pretrained(tmp)
        write_meta(tmp, clf.classes, clf.text_prefix)
    return out


def find_model(path: Path) -> Path:
    """The folder holding model.onnx: `path` itself, or a run folder's `best/`."""
    for candidate in (path, path / "best", path / "onnx"):
        if (candidate / ONNX_FILE).is_file():
            return candidate
    raise XlcError(
        f"{path}: no {ONNX_FILE} here or in its best/ folder; pass a run folder, its best/ or "
        f"final/ folder, or a folder written by `xlc export`"
    )


def session(model_dir: Path, threads: int | None = None, provider: str = "cpu"):
    """Open one ONNX Runtime session for `model_dir/model.onnx`."""
    import onnxruntime as ort

    path = model_dir / ONNX_FILE
    if not path.is_file():
        raise XlcError(f"{path} not found; export the model first with `xlc export`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("CUDA requested but onnxruntime has no CUDAExecutionProvider; using CPU")
    return ort.InferenceSession(str(path), options, providers=providers)
