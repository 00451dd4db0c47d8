"""Export a classifier to ONNX through Optimum and open ONNX Runtime sessions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xlc import files, modelcard, modeldir
from xlc.errors import XlcError, first_line
from xlc.files import atomic_dir

if TYPE_CHECKING:
    from xlc.model import Classifier

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
ONNX_DATA = "model.onnx_data"
"""Beside model.onnx in a run's models: its weights other than the word-embedding table (`split`)."""
WEIGHTS_MAP = "onnx_weights.json"
"""Beside model.onnx_data in a run's rounds: which PyTorch weight each of its tensors holds, and where,
so that a later round writes its weights there instead of exporting again (`rewrite`)."""
WEIGHTS_GRAPH = "onnx_weights.graph"
"""Beside it: model.onnx's graph reading its table from model.onnx (external data at the table's
offset) and its other weights from model.onnx_data. It opens in milliseconds where model.onnx takes
seconds to parse, so a rewritten round is checked through it (`rewrite`). Not named .onnx: tools
that look for one ONNX file in the folder must find model.onnx alone."""
INT8_FILE = "model.int8.onnx"
INT8_LOCK = ".int8.lock"
OPTIMIZE_LEVELS = ("O1", "O2", "O3")


def export(clf: Classifier, out: Path, kind: str = "model", overwrite: bool = False,
           card: Callable[[dict], str] | None = None, reuse: Sequence[Path] | None = None) -> Path:
    """Export `clf` to `out/model.onnx` with its tokenizer and xlc.json; atomic per folder.

    xlc.json keeps the classes, text prefix and training max length, so the export scores as the run did;
    the prefix is also built into the tokenizer (`model.save_tokenizer`), so Optimum alone scores as xlc does.

    An existing `out` is replaced only when xlc wrote it as a `kind` folder, or with `overwrite`
    (`files.check_replaceable`). `card`: makes the model card (`modelcard`) from the export's xlc.json,
    written as README.md.
    `reuse` (a run's rounds): earlier ONNX folders to share the word-embedding table with (`split`);
    where one of them holds a weights map (`WEIGHTS_MAP`), the model is not traced again (`rewrite`).
    The graphs of earlier runs (`cached_graphs`) come after them, so that a run's round 0 is not
    traced either once a run of the same encoder has been.
    """
    from optimum.exporters.onnx import export as onnx_export
    from optimum.exporters.tasks import TasksManager

    from xlc.model import save_tokenizer

    config = clf.model.config
    try:
        onnx_config = TasksManager.get_exporter_config_constructor(
            "onnx", task="text-classification", model_type=config.model_type,
            library_name="transformers",
        )(config)
    except (KeyError, ValueError) as exc:
        raise XlcError(f"Optimum cannot export encoders of type {config.model_type!r}: {exc}") from exc
    opset = max(17, onnx_config.DEFAULT_ONNX_OPSET)
    for key, value in (onnx_config.values_override or {}).items():  # as Optimum's exporter sets them (use_cache):
        setattr(config, key, value)  # the same graph stamp and config.json whether traced or not (`rewrite`)
    clf.model.eval()
    stamp = graph_stamp(clf, opset)
    earlier = None if reuse is None else [*reuse, *cached_graphs(stamp)]
    with atomic_dir(out, kind, "--out" if kind == "export" else "", overwrite) as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constants in the attention mask
        if not (earlier is not None and (rewrite(clf, tmp, earlier, stamp)
                                         or trace_with_stand_in(clf, onnx_config, tmp, opset, earlier, stamp))):
            onnx_export(clf.model, onnx_config, tmp / ONNX_FILE, opset=opset)
            table = None if earlier is None else _map(clf, tmp, earlier, stamp)
            if table is not None:
                remember_graph(tmp, stamp, table)
        config.save_pretrained(tmp)
        _drop_remote_code(tmp / "config.json")  # no PyTorch model here: nothing for trust_remote_code to build
        built_in = save_tokenizer(clf.tokenizer, tmp, clf.text_prefix)
        meta = modeldir.write_meta(tmp, clf.classes, clf.text_prefix, clf.max_length, built_in)
        if card is not None:
            modelcard.write(tmp, card(meta))
    return out


MAX_INLINE = 1 << 30
"""The largest word-embedding table `split` keeps inside model.onnx (a protobuf holds at most 2 GiB)."""
FLOATS = (1, 10, 16, 11)
"""ONNX's float tensor types (TensorProto FLOAT, FLOAT16, BFLOAT16, DOUBLE): the weights `split` moves out."""


def split(folder: Path, table: str, reuse: Sequence[Path],
          weights: Mapping[str, np.ndarray] | None = None, stand_in: bool = False) -> dict[str, Any] | None:
    """Rewrite `folder`'s export as model.onnx with the word-embedding initializer `table` inside and
    every other weight in model.onnx_data (ONNX external data, the name Optimum looks for).

    With the table frozen, model.onnx is then the same bytes every round (the graph and the table;
    tested), and it is hard-linked to the first `reuse` folder's identical model.onnx instead of
    written again. model.onnx_data, which changes every round, is never hard-linked: the onnx
    library refuses to read external data with more than one link ("hardlink attack").
    A model without such a table, or with one too large for a protobuf, keeps Optimum's files.
    `stand_in`: the export was traced with a stand-in of the table's first rows (`trace_with_stand_in`);
    the table in `weights` goes in its place.

    `weights` (the model's float weights by state-dict name, `model_weights`): writes `WEIGHTS_GRAPH` and
    returns the export's layout for its weights map (`WEIGHTS_MAP`), or None where the files are not
    just the graph plus copies of `weights` (`_sources`).
    """
    import onnx
    from onnx.external_data_helper import set_external_data, write_external_data_tensors

    path, data = folder / ONNX_FILE, folder / ONNX_DATA
    proto = onnx.load(path)  # with any external data Optimum wrote for a model over 2 GiB
    inside = [t for t in proto.graph.initializer if t.name == table]
    if stand_in:
        if weights is None or len(inside) != 1 or inside[0].data_type != onnx.TensorProto.FLOAT \
                or not inside[0].HasField("raw_data") or list(inside[0].dims[1:]) != list(weights[table].shape[1:]):
            return None
        inside[0].dims[0] = weights[table].shape[0]
        inside[0].raw_data = _bytes(weights[table]).tobytes()
    if len(inside) != 1 or inside[0].ByteSize() > MAX_INLINE:
        return None
    external = [t for t in proto.graph.initializer  # the weights; integer shapes and indices stay in the graph
                if t.name != table and t.data_type in FLOATS and t.HasField("raw_data")]
    sources = None
    if weights is not None and len(external) == sum(
            t.name != table and t.data_type in FLOATS for t in proto.graph.initializer):
        sources = _sources(proto, external, {k: v for k, v in weights.items() if k != table})
    for tensor in external:
        set_external_data(tensor, ONNX_DATA)
        tensor.data_location = onnx.TensorProto.EXTERNAL
    for stale in (path, data):  # Optimum's files (all their data is in `proto` now)
        stale.unlink(missing_ok=True)
    write_external_data_tensors(proto, str(folder))
    blob = proto.SerializeToString()
    linked = files.write_or_link(path, blob, [f / ONNX_FILE for f in reuse])
    if linked is not None:
        log.debug("%s: the graph and word-embedding table are %s's (hard link)", folder, linked.parent)
    if not sources or weights is None:  # no map: nothing matched, or nothing besides the table
        return None
    where = _find(path, blob, _bytes(weights[table]))
    if where is None:
        return None
    set_external_data(inside[0], ONNX_FILE, offset=where, length=weights[table].nbytes)
    inside[0].ClearField("raw_data")
    inside[0].data_location = onnx.TensorProto.EXTERNAL
    (folder / WEIGHTS_GRAPH).write_bytes(proto.SerializeToString())
    tensors = []
    for tensor in external:
        info = {entry.key: entry.value for entry in tensor.external_data}
        weight, transposed = sources[tensor.name]
        tensors.append({"tensor": tensor.name, "weight": weight, "transposed": transposed, "shape": list(tensor.dims),
                        "offset": int(info.get("offset", 0)), "length": int(info["length"])})
    return {"format": MAP_FORMAT, "table": {"weight": table, "offset": where, "length": weights[table].nbytes},
            "size": data.stat().st_size, "tensors": tensors}


STAND_IN_ROWS = 1024
"""Rows of the word-embedding table that `trace_with_stand_in` traces in its place."""


def trace_with_stand_in(clf: Classifier, onnx_config: Any, folder: Path, opset: int, reuse: Sequence[Path],
                        stamp: str) -> bool:
    """A traced export with its weights map (`split`) in `folder`, made fast: the tracer gets a stand-in of
    the first `STAND_IN_ROWS` rows of the word-embedding table, and the real table is written into the graph
    afterwards. PyTorch's exporter copies the whole table through its passes several times; the graph
    does not depend on the table's length. Kept, and its graph cached (`remember_graph`), only where it
    scores `GUARD_TEXTS` as the PyTorch model does; otherwise `folder` is left without ONNX files and
    False says to trace in full.
    """
    import torch
    from optimum.exporters.onnx import export as onnx_export

    embeddings, config = clf.model.get_input_embeddings(), clf.model.config
    real, vocab = embeddings.weight, config.vocab_size
    if real.shape[0] < 2 * STAND_IN_ROWS or (clf.tokenizer.pad_token_id or 0) >= STAND_IN_ROWS:
        return False
    try:
        embeddings.weight = torch.nn.Parameter(real.detach()[:STAND_IN_ROWS].clone(), requires_grad=False)
        config.vocab_size = STAND_IN_ROWS  # the ids of Optimum's dummy inputs stay in the stand-in
        onnx_export(clf.model, onnx_config, folder / ONNX_FILE, opset=opset)
        traced = True
    except Exception as exc:  # the exporter's own errors: the full trace says them, if they are real
        log.debug("%s: tracing with a stand-in table failed (%s)", folder, first_line(exc))
        traced = False
    finally:
        embeddings.weight, config.vocab_size = real, vocab
    table = _map(clf, folder, reuse, stamp, stand_in=True) if traced else None
    if table is not None:  # without a map (weights of equal values, a table too large) the full trace decides
        gap = _score_gap(clf, folder)
        if gap < GUARD_TOLERANCE:
            remember_graph(folder, stamp, table)
            return True
        log.debug("%s: the export traced with a stand-in table scores up to %.2g apart from PyTorch", folder, gap)
    _drop_onnx_files(folder)
    return False


def _map(clf: Classifier, folder: Path, reuse: Sequence[Path], stamp: str, stand_in: bool = False) -> memoryview | None:
    """`split` `folder`'s traced export and write its weights map for graph `stamp`; the bytes of the
    model's word-embedding table (for `remember_graph`), or None where the export got no map."""
    from xlc.model import table_name

    weights, table = model_weights(clf), table_name(clf.model)
    layout = split(folder, table, reuse, weights, stand_in=stand_in)
    if layout is None:
        return None
    _write_map(folder, {**layout, "graph": stamp})
    return _bytes(weights[table])


def _drop_onnx_files(folder: Path) -> None:
    """Remove the ONNX files an export wrote into `folder` (its own temp folder), so that it exports again."""
    for name in (ONNX_FILE, ONNX_DATA, WEIGHTS_MAP, WEIGHTS_GRAPH):
        (folder / name).unlink(missing_ok=True)


# ---- a later round's export: the earlier round's graph, this round's weights --------------------

MAP_FORMAT = 1
GUARD_TEXTS = ("The match ended in a draw after extra time.", "Der Bundestag hat das Gesetz beschlossen.",
               "Le gouvernement annonce de nouvelles mesures.", "El precio del petróleo subió ayer.",
               "市场今天上涨。")
"""Scored by the PyTorch model and by its rewritten ONNX model (`rewrite`) before the latter is kept."""
GUARD_TOLERANCE = 1e-4
"""The largest difference in a class probability allowed there (fp32 noise is ~1e-7)."""


def model_weights(clf: Classifier) -> dict[str, np.ndarray]:
    """The model's weights by state-dict name (parameters, not buffers), as numpy arrays on the CPU."""
    return {name: param.detach().cpu().numpy() for name, param in clf.model.named_parameters()}


def graph_stamp(clf: Classifier, opset: int) -> str:
    """A digest of what the traced graph depends on besides the weights: the model's config (but for
    the names it is saved under and the class names), its attention kernels, the opset and the exporting
    packages' versions."""
    from importlib.metadata import version

    from xlc import __version__

    config = {k: v for k, v in clf.model.config.to_dict().items()
              if k not in ("_name_or_path", "architectures", "auto_map", "transformers_version", "id2label",
                           "label2id")}  # the class names are in config.json, not in the graph; their number is
    facts = {"config": config, "labels": clf.model.config.num_labels,
             "attention": getattr(clf.model.config, "_attn_implementation", None),
             "opset": opset, "xlc": __version__,
             "packages": {name: version(name) for name in ("torch", "transformers", "optimum", "onnx")}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def rewrite(clf: Classifier, folder: Path, reuse: Sequence[Path], stamp: str) -> bool:
    """Write `clf`'s ONNX model into `folder` without tracing it: an earlier round's model.onnx (the
    graph and the word-embedding table, hard-linked) and this round's weights in model.onnx_data at
    the places its weights map names, which is what a full export would write. True when done.

    Only with an earlier folder in `reuse` whose map was made for the same graph (`stamp`, `graph_stamp`) and
    whose model.onnx holds `clf`'s table (a trained table differs: exported in full), and only when
    the written model (its graph, `WEIGHTS_GRAPH`, on the folder's model.onnx table and model.onnx_data)
    scores `GUARD_TEXTS` as the PyTorch model does; otherwise `folder` is left without ONNX files and
    the caller exports in full.
    """
    from xlc.model import table_name

    found, table = model_weights(clf), table_name(clf.model)
    for earlier in reuse:
        layout = _read_map(earlier)
        if layout is None or layout.get("graph") != stamp or not _fits(layout, found, table) \
                or not (earlier / WEIGHTS_GRAPH).is_file():
            continue
        spot = layout["table"]
        if not files.same_bytes(earlier / ONNX_FILE, _bytes(found[table]), spot["offset"]):
            log.debug("%s: its word-embedding table is not this model's; exporting in full", earlier)
            continue
        with open(folder / ONNX_DATA, "wb") as handle:
            for entry in sorted(layout["tensors"], key=lambda e: e["offset"]):
                value = found[entry["weight"]]
                handle.seek(entry["offset"])
                handle.write(_bytes(value.T if entry["transposed"] else value))
            handle.truncate(layout["size"])
        for name in (ONNX_FILE, WEIGHTS_GRAPH):  # the same bytes every round
            files.link_or_copy(earlier / name, folder / name)
        _write_map(folder, layout)
        gap = _score_gap(clf, folder)
        if gap < GUARD_TOLERANCE:
            log.debug("%s: weights written into %s's graph (scores within %.1g of PyTorch)", folder, earlier, gap)
            return True
        log.warning("%s: the ONNX model written from %s's weights map scores up to %.2g apart from the "
                    "PyTorch model; exporting it in full", folder, earlier, gap)
        _drop_onnx_files(folder)
        return False
    return False


GRAPHS = "onnx-graphs"
"""Under the cache folder ($XLC_CACHE): traced graphs with their tables and weights maps, by graph stamp."""


def graph_cache() -> Path:
    from xlc.default_model import cache_dir

    return cache_dir() / GRAPHS


def cached_graphs(stamp: str) -> list[Path]:
    """The folders an earlier run's traced export left for graphs of `stamp` (`remember_graph`), one per
    word-embedding table; `rewrite` checks that a folder's table is the model's before using it."""
    try:
        return sorted(p for p in (graph_cache() / stamp).iterdir() if (p / WEIGHTS_MAP).is_file())
    except OSError:
        return []


def remember_graph(folder: Path, stamp: str, table: memoryview) -> None:
    """Keep `folder`'s graph, table (whose bytes `table` holds) and weights map, a traced export with its
    map (`split`), in the cache for later runs: hard links, so no extra disk while the run folder exists
    (a copy across file systems). Published with one rename, never replacing an entry: a second run that
    traced the same graph at the same time keeps the first one's. A cache that cannot be written only
    costs later runs the trace."""
    digest = hashlib.sha256(table).hexdigest()[:16]
    entry = graph_cache() / stamp / digest
    tmp = None
    try:
        if (entry / WEIGHTS_MAP).is_file():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", suffix=".tmp", dir=entry.parent))  # this process's own
        for name in (ONNX_FILE, WEIGHTS_GRAPH, WEIGHTS_MAP):
            files.link_or_copy(folder / name, tmp / name)
        tmp.rename(entry)  # fails where another run published it meanwhile
        tmp = None
    except OSError as exc:
        log.debug("%s: cannot keep the traced graph there (%s); later runs trace their round 0", graph_cache(),
                  exc.strerror or exc)
    finally:
        if tmp is not None:  # not published: only this process's own temp folder goes
            shutil.rmtree(tmp, ignore_errors=True)


def _sources(proto: Any, tensors: Iterable[Any], found: Mapping[str, np.ndarray]) -> dict[str, tuple[str, bool]] | None:
    """The weight in `found` each ONNX tensor holds, as it is or transposed (how exported Linear weights
    are stored, as `onnx::MatMul_N`): None unless each tensor holds exactly one weight's values, each
    weight is held somewhere, and no float constant in the graph holds more than a scalar (a weight
    folded into something else). Values decide, not names: the exporter merges weights of equal values
    into one tensor, which a later round with different values would not."""
    import onnx

    if any(v.dtype != np.float32 for v in found.values()) or any(
            attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in FLOATS and np.prod(attr.t.dims) > 1
            for node in proto.graph.node for attr in node.attribute):
        return None
    holders: dict[tuple[tuple[int, ...], bytes], set[tuple[str, bool]]] = {}
    for name, value in found.items():
        for transposed in (False, True) if value.ndim == 2 else (False,):
            shaped = value.T if transposed else value
            key = (tuple(shaped.shape), hashlib.sha256(_bytes(shaped)).digest())
            holders.setdefault(key, set()).add((name, transposed))
    sources = {}
    for tensor in tensors:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            return None
        held = holders.get((tuple(tensor.dims), hashlib.sha256(tensor.raw_data).digest()), set())
        if len({name for name, _ in held}) != 1:
            log.debug("ONNX tensor %s holds %s; no weights map", tensor.name,
                      "no weight's values" if not held else "the values of several weights")
            return None
        sources[tensor.name] = min(held)  # a symmetric matrix: as it is
    if set(found) - {name for name, _ in sources.values()}:
        return None
    return sources


def _fits(layout: dict, found: Mapping[str, np.ndarray], table: str) -> bool:
    """Whether `layout` (a weights map) places weights that `found` holds, in its shapes and sizes."""
    try:
        spot = layout["table"]
        if layout.get("format") != MAP_FORMAT or spot["weight"] != table or spot["length"] != found[table].nbytes:
            return False
        end = 0
        for entry in layout["tensors"]:
            value = found.get(entry["weight"])
            if value is None or value.dtype != np.float32 or (entry["transposed"] and value.ndim != 2):
                return False
            shape = value.shape[::-1] if entry["transposed"] else value.shape
            if list(shape) != entry["shape"] or value.nbytes != entry["length"] or entry["offset"] < 0:
                return False
            end = max(end, entry["offset"] + entry["length"])
        covered = {entry["weight"] for entry in layout["tensors"]} | {table}
        return covered == set(found) and end <= layout["size"]
    except (KeyError, TypeError, AttributeError):
        return False


def _score_gap(clf: Classifier, folder: Path) -> float:
    """The largest difference between the class probabilities of `GUARD_TEXTS` from `folder`'s ONNX
    model (ONNX Runtime on `WEIGHTS_GRAPH`) and from `clf`'s PyTorch model."""
    import onnxruntime as ort
    import torch

    from xlc.model import pad_batch

    tokenizer: Any = clf.tokenizer
    ids, mask = pad_batch(tokenizer(list(GUARD_TEXTS), truncation=True, max_length=64)["input_ids"],
                          tokenizer.pad_token_id)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # opens faster; weights are checked
    try:
        session = ort.InferenceSession(str(folder / WEIGHTS_GRAPH), options, providers=["CPUExecutionProvider"])
        feed = {"input_ids": ids.numpy().astype(np.int64), "attention_mask": mask.numpy().astype(np.int64)}
        if "token_type_ids" in {i.name for i in session.get_inputs()}:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        logits = session.run(None, feed)[0]
    except Exception as exc:  # ORT's own exception types
        log.debug("%s: ONNX Runtime cannot run it (%s)", folder, first_line(exc))
        return float("inf")
    device = next(clf.model.parameters()).device
    with torch.no_grad():
        expected = clf.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
    got = torch.softmax(torch.from_numpy(logits).float(), dim=-1)
    return float((got - torch.softmax(expected, dim=-1)).abs().max())


def _bytes(value: np.ndarray) -> memoryview:
    """The bytes of `value` in C order (a copy only where it is not already laid out so)."""
    return np.ascontiguousarray(value).data.cast("B")


def _find(path: Path, blob: bytes, part: memoryview) -> int | None:
    """Where `part` starts in `blob`, the bytes of the file `path`, or None."""
    head = part[:64]
    start = blob.find(head)
    while start >= 0 and not files.same_bytes(path, part, start):
        start = blob.find(head, start + 1)
    return start if start >= 0 else None


def _read_map(folder: Path) -> dict | None:
    try:
        layout = json.loads((folder / WEIGHTS_MAP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return layout if isinstance(layout, dict) else None


def _write_map(folder: Path, layout: dict) -> None:
    (folder / WEIGHTS_MAP).write_text(json.dumps(layout, indent=1) + "\n", encoding="utf-8")


def _drop_remote_code(config_file: Path) -> None:
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.pop("auto_map", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def optimize(model_dir: Path, level: str) -> None:
    """Rewrite model.onnx with ONNX Runtime graph fusions (Optimum's O1/O2/O3 presets): one self-contained
    file, or with its weights in model.onnx_data where they are too large for one protobuf. A weights
    graph and map beside it (a run's round, `split`) go: they describe the model.onnx replaced."""
    import onnx
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    if level not in OPTIMIZE_LEVELS:
        raise XlcError(f"--optimize {level!r}: choose one of {', '.join(OPTIMIZE_LEVELS)}")
    optimizer = ORTOptimizer.from_pretrained(model_dir, file_names=[ONNX_FILE])
    scratch = model_dir.with_name(model_dir.name + "-optimized")
    with atomic_dir(scratch, "scratch") as tmp:
        optimizer.optimize(getattr(AutoOptimizationConfig, level)(), save_dir=tmp)
        proto = onnx.load(next(tmp.glob("*.onnx")))  # with any external data the optimizer wrote beside it
        large = sum(t.ByteSize() for t in proto.graph.initializer) > MAX_INLINE
        (tmp / "out").mkdir()
        onnx.save_model(proto, tmp / "out" / ONNX_FILE, save_as_external_data=large, location=ONNX_DATA)
        if large:
            files.commit(tmp / "out" / ONNX_DATA, model_dir / ONNX_DATA)
        files.commit(tmp / "out" / ONNX_FILE, model_dir / ONNX_FILE)
    stale = [WEIGHTS_GRAPH, WEIGHTS_MAP, *([] if large else [ONNX_DATA])]  # of the model.onnx replaced
    for name in stale:
        (model_dir / name).unlink(missing_ok=True)
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


def session(model_dir: Path, threads: int | None = None, provider: str = "cpu", int8: bool = False,
            graph: bool = False):
    """Open one ONNX Runtime session for `model_dir/model.onnx` (or its int8 twin).

    provider: "cpu", "cuda", or "auto" (CUDA when onnxruntime-gpu sees a GPU).
    `graph`: open the folder's `WEIGHTS_GRAPH` where it has one: the same model, whose word-embedding
    table ONNX Runtime then reads as external data instead of parsing it out of model.onnx (0.2 s
    instead of 1.7 s for the default model). Only for a folder that xlc's export just wrote (a run's
    round), where the two agree by construction: a model.onnx replaced since would not match it.
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
    if graph and not int8 and (model_dir / WEIGHTS_GRAPH).is_file():
        try:
            return ort.InferenceSession(str(model_dir / WEIGHTS_GRAPH), options, providers=providers)
        except Exception as exc:  # ORT's own exception types
            log.debug("%s: ONNX Runtime cannot open it (%s); opening %s", model_dir / WEIGHTS_GRAPH,
                      first_line(exc), ONNX_FILE)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT's own exception types: truncated file, bad graph, refused external data
        raise XlcError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)}); the model folder is "
                       f"damaged or incomplete: export it again") from None
