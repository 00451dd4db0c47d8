"""Encoders as text classifiers: load, build, fine-tune one round, save.

A classifier is any Hugging Face encoder, mean-pooled over the attention mask, with a
fresh linear head. It is a `PreTrainedModel` whose config is the encoder's own config,
so Optimum exports it with the encoder's ONNX config (task text-classification).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from xlc import default_model, files, modeldir, modeling_xlc
from xlc.config import DEFAULTS, SelfTrainConfig
from xlc.errors import XlcError, first_line
from xlc.modeldir import META_FILE, read_meta
from xlc.modeling_xlc import XlcForSequenceClassification

log = logging.getLogger(__name__)


class MeanPoolClassifier(XlcForSequenceClassification):
    """Encoder + mean pooling over real tokens + dropout + linear head (see `xlc.modeling_xlc`),
    and the top layers alone on cached features for --train-layers."""

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int,
              labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """Run encoder layers `start`.. on hidden states from the layers below, then classify."""
        extended = self.encoder.get_extended_attention_mask(attention_mask, attention_mask.shape)
        for layer in encoder_layers(self.encoder)[start:]:
            hidden = layer(hidden, attention_mask=extended)[0]
        return self.classify(hidden, attention_mask, labels)


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layer stack of a BERT-family encoder (BERT, XLM-R, RoBERTa, E5)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise XlcError(
            f"--train-layers: the encoder ({type(encoder).__name__}) has no BERT-style layer stack; "
            f"use --train-layers 0 to fine-tune all layers"
        )
    return layers



@dataclass(frozen=True)
class Classifier:
    """A model, its tokenizer and what xlc needs to use them."""

    model: MeanPoolClassifier
    tokenizer: object
    classes: tuple[str, ...]
    text_prefix: str = ""
    max_length: int | None = None
    """The --max-length it was trained with (stored in xlc.json, the scoring default); None until trained."""

    def save(self, path: Path, reuse: Sequence[Path] | None = None) -> None:
        """Write a Hugging Face folder (weights, config, tokenizer with the text prefix built in) plus xlc.json.

        `reuse` (a run's rounds): earlier model folders. The word-embedding table then goes into a
        file of its own, hard-linked to an earlier folder's byte-identical one (see `save_weights`).
        """
        path.mkdir(parents=True, exist_ok=True)
        if reuse is None:
            self.model.save_pretrained(path)
        else:
            save_weights(self.model, path, reuse)
        built_in = save_tokenizer(self.tokenizer, path, self.text_prefix)
        modeldir.write_meta(path, self.classes, self.text_prefix, self.max_length, built_in)
        remote_code(path)


TABLE_FILE = "model-word-embeddings.safetensors"
"""A run's checkpoints: the word-embedding table (frozen by default, so the same bytes every round)."""
REST_FILE = "model-rest.safetensors"
"""A run's checkpoints: every other weight (encoder layers, position embeddings, head)."""


def table_name(model: PreTrainedModel) -> str:
    """The state-dict name of the model's word-embedding table."""
    table = model.get_input_embeddings().weight
    return next(name for name, param in model.named_parameters() if param is table)


def save_weights(model: MeanPoolClassifier, path: Path, reuse: Sequence[Path]) -> None:
    """Save the weights as a two-file checkpoint that Transformers loads as it loads any sharded one
    (model.safetensors.index.json maps each weight to its file): the word-embedding table in
    `TABLE_FILE`, hard-linked to the first `reuse` folder's byte-identical table instead of written
    again, and everything else in `REST_FILE`."""
    from safetensors import safe_open
    from safetensors.torch import save
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    name = table_name(model)
    rest = model.state_dict()
    table = rest.pop(name).detach().contiguous().cpu()
    model.save_pretrained(path, state_dict=rest, max_shard_size="1000GB")  # one file: renamed below
    os.replace(path / SAFE_WEIGHTS_NAME, path / REST_FILE)
    blob = save({name: table}, metadata={"format": "pt"})
    linked = files.write_or_link(path / TABLE_FILE, blob, [folder / TABLE_FILE for folder in reuse])
    if linked is not None:
        log.debug("%s: the word-embedding table is %s's (hard link)", path, linked.parent)
    with safe_open(path / REST_FILE, "pt") as written:  # what save_pretrained kept of `rest`
        kept = list(written.keys())
    size = sum(rest[k].numel() * rest[k].element_size() for k in kept) + table.numel() * table.element_size()
    weight_map = {**dict.fromkeys(kept, REST_FILE), name: TABLE_FILE}
    index = {"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))}
    (path / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def average_weights(states: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of state dicts (e.g. a run's round models), as a running mean.

    Floating-point tensors are averaged; a tensor equal to the mean so far is left as it is, so one
    equal in every state dict (the frozen word-embedding table) keeps its bits exactly. Other
    tensors (integer buffers) are the last state dict's.
    """
    mean: dict[str, torch.Tensor] = {}
    for count, state in enumerate(states, start=1):
        for name, value in state.items():
            value = value.detach()
            if count == 1 or not value.is_floating_point():
                mean[name] = value.clone()
            elif not torch.equal(value, mean[name]):
                mean[name] += (value - mean[name]) / count
    return mean


REMOTE_CLASS = f"{XlcForSequenceClassification.__module__.rsplit('.', 1)[-1]}.{XlcForSequenceClassification.__name__}"


def remote_code(path: Path) -> None:
    """Make a saved folder loadable by Transformers' Auto classes: modeling_xlc.py and an auto_map."""
    shutil.copyfile(modeling_xlc.__file__, path / "modeling_xlc.py")
    config_file = path / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["architectures"] = [XlcForSequenceClassification.__name__]
    config["auto_map"] = {"AutoModelForSequenceClassification": REMOTE_CLASS}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _quiet_transformers() -> None:
    hf_logging.set_verbosity_error()


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Transformers' "Loading checkpoint shards" bar off while the block runs (xlc shows its own progress)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def resolve_base(model: str) -> tuple[Path, str]:
    """Map a model argument to a local folder and its text prefix: the default model, a local
    folder, or a Hugging Face id (`org/name`) from the Hugging Face cache (downloaded when online)."""
    if model == default_model.NAME:
        return default_model.ensure_converted(), default_model.TEXT_PREFIX
    path = Path(model)
    fix = f"pass a folder such as a saved xlm-roberta-base, a Hugging Face id, or {default_model.NAME!r}"
    if not path.exists() and HUB_ID.fullmatch(model):
        path = from_hub(model)
    if not path.exists():
        raise XlcError(f"--model {model!r}: no such folder; {fix}")
    if not path.is_dir():
        raise XlcError(f"--model {model!r}: a file, not a model folder; {fix}")
    if not (path / "config.json").is_file():
        raise XlcError(f"--model {model!r}: not a local Hugging Face model folder (no config.json in {path}); {fix}")
    prompt = prompt_prefix(path)
    return path, prompt if prompt is not None else default_prefix(model)


HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")
"""What xlc takes of a Hugging Face repository: config, tokenizer, safetensors weights (no other formats)."""


def from_hub(model_id: str) -> Path:
    """The local snapshot of a Hugging Face model: from the cache, else downloaded (unless offline)."""
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(model_id, allow_patterns=list(HUB_FILES), local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or cached incompletely): try the network
        pass
    try:
        return Path(snapshot_download(model_id, allow_patterns=list(HUB_FILES)))
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated repository, ...
        reason = first_line(exc) or type(exc).__name__
        raise XlcError(f"--model {model_id!r}: not a local folder, not in the Hugging Face cache "
                       f"({constants.HF_HUB_CACHE}), and the download failed ({reason}); download it where there "
                       f"is internet (huggingface-cli download {model_id}) and copy the cache here, or pass the "
                       f"model's folder") from None


ST_CONFIG = "config_sentence_transformers.json"


def prompt_prefix(folder: Path) -> str | None:
    """The text prefix a sentence-transformers folder declares (its default prompt, else its "query"
    prompt), or None when it declares none."""
    try:
        found = json.loads((folder / ST_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prompts = found.get("prompts") if isinstance(found, dict) else None
    if not isinstance(prompts, dict):
        return None
    prompt = prompts.get(found.get("default_prompt_name") or "query")
    return prompt if isinstance(prompt, str) else None


def default_prefix(model: str) -> str:
    """The text prefix an encoder expects: "query: " for E5 models (by name), else none."""
    return default_model.TEXT_PREFIX if "e5" in Path(model).name.lower().replace("_", "-").split("-") else ""


WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


def check_base(model: str) -> Path:
    """The folder of a --model that can be fine-tuned, checked without loading its weights.

    Refused with what is missing and where: no folder, no config.json, a config that is not
    an encoder's, no weights file, no tokenizer, a damaged xlc.json.
    """
    path, _ = resolve_base(model)
    try:
        found = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise XlcError(f"--model {model!r}: {path / 'config.json'} is not valid JSON ({exc}); copy the model "
                       f"folder again") from None
    if not (isinstance(found, dict) and found.get("model_type")):
        raise XlcError(f"--model {model!r}: {path / 'config.json'} names no model_type; pass the folder of a "
                       f"Hugging Face encoder (its config.json says e.g. \"model_type\": \"bert\")")
    _quiet_transformers()
    with loading(path / "config.json", "config"):
        config = AutoConfig.from_pretrained(path)
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if config.is_encoder_decoder or config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise XlcError(f"--model {model!r}: its config.json describes a {config.model_type!r} model, not a text "
                       f"encoder (BERT, XLM-R, E5 and the like); pass an encoder's folder")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise XlcError(f"--model {model!r}: no weights in {path} (model.safetensors or pytorch_model.bin); "
                       f"copy the model's weight files there")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise XlcError(f"--model {model!r}: no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}); "
                       f"copy the model's tokenizer files there")
    if (path / META_FILE).is_file():
        read_meta(path)
    return path


@contextlib.contextmanager
def loading(path: Path, what: str) -> Iterator[None]:
    """Name the file and what failed when Hugging Face cannot read a model's `what` (config, weights, tokenizer)."""
    try:
        yield
    except XlcError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # SafetensorError is not one of them
        raise _load_error(path, what, exc) from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        raise _load_error(path, what, exc) from None


def _load_error(path: Path, what: str, exc: BaseException) -> XlcError:
    from xlc.files import advice

    lines = str(exc).strip().splitlines()
    reason = getattr(exc, "strerror", None) or (lines[0] if lines else type(exc).__name__)
    if len(reason) > 200:
        reason = reason[:200] + "..."
    code = getattr(exc, "errno", None)
    hint = advice(exc) if code is not None else "the model folder is incomplete or damaged: copy it again"
    return XlcError(f"{path}: cannot load the model's {what} ({reason}); {hint}")


def save_tokenizer(tokenizer: Any, path: Path, prefix: str = "") -> bool:
    """Save `tokenizer` without the truncation and padding its last call left in it: the saved
    files depend on the tokenizer alone, not on what a shared one (`load_tokenizer`) was used for.
    `prefix`: the text prefix, built into the saved tokenizer.json (`modeldir.prefix_built_in`; the
    tokenizer in memory is as before afterwards). True when it is built in (False: no prefix, or
    no tokenizer.json written)."""
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    if not prefix:
        tokenizer.save_pretrained(path)
        return False
    with modeldir.prefix_built_in(backend, prefix):
        tokenizer.save_pretrained(path)
    return (path / modeldir.TOKENIZER_FILE).is_file()


def load_tokenizer(path: Path, built_in: str = ""):
    """The folder's tokenizer, loaded once per process and content of its tokenizer files (every
    round's folder holds the same ones): callers share it and must not change it. `built_in`: the
    text prefix built into it (`modeldir.built_in_prefix`), taken out again, since xlc puts the
    prefix before each text itself."""
    _quiet_transformers()
    key = modeldir.content_key(Path(path), (*TOKENIZER_FILES, "special_tokens_map.json", "added_tokens.json"))

    def load() -> Any:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if built_in:
            modeldir.take_out_prefix(tokenizer.backend_tokenizer, built_in, path)
        return tokenizer

    return modeldir.shared("transformers", f"{key}:{built_in}", load)


def from_base(model: str, classes: Sequence[str], text_prefix: str | None = None) -> Classifier:
    """A new classifier on a pretrained encoder (see `resolve_base`), head untrained.

    `text_prefix` goes before every text; None: what the model expects (`default_prefix`).
    """
    _quiet_transformers()
    path, prefix = resolve_base(model)
    prefix = prefix if text_prefix is None else text_prefix
    if (path / META_FILE).is_file():  # an xlc model: keep its head if the classes agree
        clf = load(path)
        if tuple(clf.classes) == tuple(classes):
            return clf
        raise XlcError(
            f"--model {path} was trained for classes {list(clf.classes)}, the data has "
            f"{list(classes)}; start from its base encoder instead"
        )
    with loading(path / "config.json", "config"):
        config = AutoConfig.from_pretrained(path)
    config.num_labels = len(classes)
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    # eager attention, as `load` builds it: a resumed run must train the same kernels (sdpa and
    # eager differ in the last bits, and on some CPUs that changed round 1 after a resume)
    with loading(path, "weights"):
        encoder = AutoModel.from_pretrained(path, config=config, attn_implementation="eager",
                                            **_pooler_kwargs(config))
    torch.manual_seed(0)
    model = MeanPoolClassifier(config, encoder).eval()
    with loading(path, "tokenizer"):
        tokenizer = load_tokenizer(path)
    return Classifier(model, tokenizer, tuple(classes), prefix)


def _pooler_kwargs(config: PretrainedConfig) -> dict:
    return {"add_pooling_layer": False} if config.model_type in ("bert", "xlm-roberta", "roberta") else {}


def load(path: Path) -> Classifier:
    """Load a classifier written by `Classifier.save`."""
    _quiet_transformers()
    meta = read_meta(path)
    with loading(path / "config.json", "config"):
        config = AutoConfig.from_pretrained(path)
    with loading(path, "weights"), _no_progress_bar():  # a run's checkpoints have two files ("shards")
        model = MeanPoolClassifier.from_pretrained(path, config=config).eval()
    with loading(path, "tokenizer"):
        tokenizer = load_tokenizer(path, modeldir.built_in_prefix(meta))
    return Classifier(model, tokenizer, tuple(meta["classes"]), meta.get("text_prefix", ""),
                      meta.get("max_length"))


DEVICES = ("auto", "cpu", "cuda")


def _default_device() -> str:
    return os.environ.get("XLC_DEVICE") or "auto"


@dataclass(frozen=True)
class TrainSettings:
    """How one round is fine-tuned; the defaults are `xlc selftrain`'s (`xlc.config.DEFAULTS`)."""

    epochs: int = DEFAULTS.epochs
    """With dev data, the most epochs: the model is scored on dev after each epoch and the best
    epoch's weights are kept (the paper's protocol); without, exactly this many."""
    batch_size: int = DEFAULTS.batch_size
    max_length: int = DEFAULTS.max_length
    lr: float = DEFAULTS.lr
    head_lr: float = DEFAULTS.head_lr
    warmup: float = DEFAULTS.warmup
    freeze_embeddings: bool = DEFAULTS.freeze_embeddings
    seed: int = DEFAULTS.seed
    max_steps: int | None = DEFAULTS.max_steps
    """Optimiser steps in all, overriding `epochs` (the data is cycled; the last epoch may be
    partial): how the same-compute control is run."""
    epoch_patience: int = 0
    """With dev data, stop after this many epochs without a better dev accuracy (0: never stop
    early). Not `xlc selftrain`'s default: a round fine-tuned on its own never stops early."""
    student_noise: float = DEFAULTS.student_noise
    """Noisy Student's input noise: while training, each text marked pseudo-labeled (`fine_tune`'s
    `pseudo`) hides this share of its tokens from attention and pooling, drawn anew in every batch
    (see `hide_tokens`). Gold texts and all scoring see every token; 0 is off."""
    train_layers: int = DEFAULTS.train_layers
    """0 trains every layer; k trains only the top k encoder layers and the head. The layers below
    are then frozen, so their output for a text never changes: it is computed once (see
    `LowerLayers`) and every epoch runs only the top k layers."""
    device: str = field(default_factory=_default_device)
    """Where to train: "auto" on CUDA when torch sees a GPU, else on the CPU; "cuda" asks for the
    GPU (and falls back to the CPU with one warning when there is none); "cpu" never uses a GPU.
    The default comes from $XLC_DEVICE, else "auto"."""
    mixed_precision: bool = True
    """On CUDA, autocast to bf16 where the GPU supports it, else fp16 with loss scaling. Training
    on the CPU is always fp32."""

    @classmethod
    def from_config(cls, config: SelfTrainConfig, **changes: Any) -> TrainSettings:
        """The settings of `config` for every field the two share, with `changes` on top."""
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{**shared, **changes})

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise XlcError(f"device {self.device!r} is not one of {', '.join(DEVICES)} (see $XLC_DEVICE)")


@dataclass(frozen=True)
class TrainResult:
    """What one round's fine-tuning did."""

    losses: list[float]          # mean training loss per epoch
    steps: int                   # optimiser steps taken (all epochs, also those after the best)
    epochs: int                  # epochs trained
    best_epoch: int              # the epoch whose weights were kept (1-based)
    dev_accuracy: list[float] = field(default_factory=list)  # after each epoch, when dev data was given


def training_device(requested: str) -> torch.device:
    """The device to train on: CUDA if requested (or "auto") and available, else the CPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        _warn_no_gpu()
    return torch.device("cpu")


@functools.cache
def _warn_no_gpu() -> None:
    """Say once per process that a GPU was asked for and is absent."""
    built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    log.warning(
        "GPU requested (device 'cuda') but torch %s (%s) sees no CUDA device; training on the CPU",
        torch.__version__, built,
    )


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; None (no autocast) on the CPU or when disabled."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def frozen_layers(clf: Classifier, train_layers: int) -> int:
    """How many lower encoder layers `train_layers` leaves frozen (0 when all train)."""
    if train_layers <= 0:
        return 0
    return max(0, len(encoder_layers(clf.model.encoder)) - train_layers)


class LowerLayers:
    """The output of a classifier's frozen lower layers, computed once per text.

    When only the top layers train, the embeddings and the layers below them give the same
    output for a text in every epoch and round, so each text goes through them once. Texts
    come in groups (the labeled set, then each round's pseudo-labels); a group is encoded in
    a fixed order and batching, so a resumed run that adds the same groups gets bit-identical
    features.
    """

    def __init__(self, clf: Classifier, layers: int, max_length: int, batch_size: int = 64) -> None:
        self.clf, self.layers, self.max_length, self.batch_size = clf, layers, max_length, batch_size
        self.features: dict[str, torch.Tensor] = {}

    def add(self, texts: Sequence[str]) -> None:
        """Encode the texts not seen before (no gradient, dropout off)."""
        new = sorted(set(texts) - self.features.keys())
        if not new:
            return
        tok = self.clf.tokenizer
        ids = tok([self.clf.text_prefix + t for t in new], truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(new)), key=lambda i: len(ids[i]))
        encoder = self.clf.model.encoder
        where = next(encoder.parameters()).device
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch, mask = pad_batch([ids[i] for i in rows], tok.pad_token_id)
                hidden = encoder.embeddings(input_ids=batch.to(where))
                extended = encoder.get_extended_attention_mask(mask.to(where), mask.shape)
                for layer in encoder_layers(encoder)[: self.layers]:
                    hidden = layer(hidden, attention_mask=extended)[0]
                hidden = hidden.cpu()
                for row, i in enumerate(rows):
                    self.features[new[i]] = hidden[row, : len(ids[i])].clone()
        encoder.train(was_training)

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (zero-padded to the longest text) and the attention mask."""
        feats = [self.features[t] for t in texts]
        width = max(f.shape[0] for f in feats)
        hidden = torch.zeros((len(feats), width, feats[0].shape[1]), dtype=feats[0].dtype)
        mask = torch.zeros((len(feats), width), dtype=torch.long)
        for row, f in enumerate(feats):
            hidden[row, : f.shape[0]] = f
            mask[row, : f.shape[0]] = 1
        return hidden, mask


def fine_tune(
    clf: Classifier,
    texts: Sequence[str],
    labels: np.ndarray,
    settings: TrainSettings,
    on_step: Callable[[int, int, float], None] | None = None,
    dev: tuple[Sequence[str], np.ndarray] | None = None,
    lower: LowerLayers | None = None,
    pseudo: Sequence[bool] | None = None,
) -> TrainResult:
    """Fine-tune in place; with `dev` (texts, label indices) keep the best epoch on it.

    `labels` holds a class index per text, or (2-D) a probability per text and class: soft
    targets such as a teacher model's, trained with cross-entropy against the distribution.

    AdamW with separate learning rates for encoder and head, linear warm-up then decay,
    dynamic padding per batch. `on_step(step, total, loss)` reports progress. With
    `settings.train_layers`, only the top layers train, on features from `lower` (made here
    when not given; pass one to reuse it across rounds). `pseudo` marks the pseudo-labeled texts,
    which train with `settings.student_noise` (see `hide_tokens`). On a GPU (see
    `TrainSettings.device`) the model trains there with mixed precision and is moved back to
    the CPU afterwards, so export and saving see the same model as on a CPU run.
    """
    if len(texts) == 0:
        raise XlcError("the labeled training set is empty; pass a --train file with rows")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    frozen = frozen_layers(clf, settings.train_layers)
    if frozen:
        lower = lower or LowerLayers(clf, frozen, settings.max_length)
        lower.add(texts)
        if dev is not None:
            lower.add(dev[0])
    else:
        lower = None
    device = training_device(settings.device)
    amp_dtype = _amp_dtype(device, settings.mixed_precision)
    # fp16 needs loss scaling against underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    model = clf.model
    model.to(device)
    trainable = _set_trainable(model, settings, frozen)
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in trainable if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": settings.lr}, {"params": head, "lr": settings.head_lr}],
        weight_decay=0.01,
    )
    steps_per_epoch = math.ceil(len(texts) / settings.batch_size)
    total = settings.max_steps or steps_per_epoch * settings.epochs
    warm = max(1, int(total * settings.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    encoded = clf.tokenizer(
        [clf.text_prefix + t for t in texts], truncation=True, max_length=settings.max_length
    )["input_ids"]
    soft = np.ndim(labels) == 2  # class probabilities (a teacher's), not class indices
    target = torch.as_tensor(labels, dtype=torch.float32 if soft else torch.long)
    pad = clf.tokenizer.pad_token_id
    losses: list[float] = []
    dev_accuracy: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    lengths = [len(ids) for ids in encoded]
    noisy = np.zeros(len(texts), dtype=bool) if pseudo is None else np.asarray(pseudo, dtype=bool)
    if noisy.shape != (len(texts),):
        raise ValueError(f"pseudo marks {noisy.shape[0]} texts, not the {len(texts)} to train on")
    noise = torch.Generator().manual_seed(settings.seed)  # apart from the batch order's: rate 0 changes nothing
    step = 0
    while step < total:
        model.train()
        epoch_loss, seen = 0.0, 0
        for idx in length_grouped_batches(lengths, settings.batch_size, generator):
            if step == total:
                break
            with _autocast(device, amp_dtype):
                if lower is not None:
                    hidden, mask = lower.batch([texts[i] for i in idx])
                    mask = hide_tokens(mask, noisy[idx], settings.student_noise, noise)
                    out = model.upper(hidden.to(device), mask.to(device), frozen, labels=target[idx].to(device))
                else:
                    ids, mask = pad_batch([encoded[i] for i in idx], pad)
                    mask = hide_tokens(mask, noisy[idx], settings.student_noise, noise)
                    ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
                    out = model(input_ids=ids, attention_mask=mask, labels=target[idx].to(device))
            scaler.scale(out.loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = out.loss.item()
            epoch_loss += loss * len(idx)
            seen += len(idx)
            if on_step:
                on_step(step, total, loss)
        losses.append(epoch_loss / max(1, seen))
        if dev is not None:
            accuracy = float(np.mean(predict(clf, dev[0], settings.max_length, lower, frozen, device).argmax(1)
                                     == np.asarray(dev[1])))
            dev_accuracy.append(accuracy)
            if best is None or accuracy > best[0]:
                best = (accuracy, len(losses), {n: p.detach().clone() for n, p in model.named_parameters()
                                                if p.requires_grad})
            elif settings.epoch_patience and len(losses) - best[1] >= settings.epoch_patience:
                break
    if best is not None and best[1] != len(losses):
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in best[2].items():
                params[name].copy_(value)
    model.eval()
    if device.type != "cpu":
        model.to("cpu")
        torch.cuda.empty_cache()
    return TrainResult(losses, step, len(losses), best[1] if best else len(losses), dev_accuracy)


def hide_tokens(mask: torch.Tensor, rows: np.ndarray, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Noisy Student's input noise on a batch's attention mask: each row where `rows` is True hides
    each of its tokens with probability `rate` (the first token always stays, so no text is left
    empty). Draws nothing when no row is marked or `rate` is 0, so the random stream then stays put."""
    marked = np.flatnonzero(rows).tolist()
    if not marked or rate == 0:
        return mask
    drop = torch.rand((len(marked), mask.shape[1]), generator=generator) < rate
    drop[:, 0] = False
    mask[marked] = mask[marked] * ~drop
    return mask


def _set_trainable(model: MeanPoolClassifier, settings: TrainSettings, frozen: int) -> list[nn.Parameter]:
    """Mark what trains this round (embeddings and the lower `frozen` layers do not)."""
    model.requires_grad_(True)
    model.encoder.get_input_embeddings().weight.requires_grad_(not settings.freeze_embeddings)
    if frozen:
        model.encoder.embeddings.requires_grad_(False)
        for layer in encoder_layers(model.encoder)[:frozen]:
            layer.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def predict(clf: Classifier, texts: Sequence[str], max_length: int, lower: LowerLayers | None = None,
            frozen: int = 0, device: torch.device | None = None, batch_size: int = 64) -> np.ndarray:
    """Class probabilities from the PyTorch model (eval mode), rows in `texts` order."""
    model = clf.model
    was_training = model.training
    model.eval()
    device = device or torch.device("cpu")
    if lower is None:
        encoded = clf.tokenizer([clf.text_prefix + t for t in texts], truncation=True,
                                max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            if lower is not None:
                hidden, mask = lower.batch([texts[i] for i in rows])
                logits = model.upper(hidden.to(device), mask.to(device), frozen).logits
            else:
                ids, mask = pad_batch([encoded[i] for i in rows], clf.tokenizer.pad_token_id)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            probs[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    return probs


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator, group: int = 16
) -> list[list[int]]:
    """Shuffled batches of similar length: less padding, still random.

    Shuffle, cut into windows of `group` batches, sort each window by length, cut it
    into batches, then shuffle the order of all batches.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * group
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one; return ids and attention mask."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def build_tiny(path: Path, tokenizer_from: Path | None = None, layers: int = 2, hidden: int = 32) -> Path:
    """Write a small random BERT encoder with the real multilingual tokenizer (for tests)."""
    from transformers import BertConfig, BertModel

    tokenizer = default_model.build_tokenizer() if tokenizer_from is None else load_tokenizer(tokenizer_from)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def timer() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
