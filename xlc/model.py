"""Encoders as text classifiers: load, build, fine-tune one round, save.

A classifier is any Hugging Face encoder, mean-pooled over the attention mask, with a
fresh linear head. It is a `PreTrainedModel` whose config is the encoder's own config,
so Optimum exports it with the encoder's ONNX config (task text-classification).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from xlc import default_model
from xlc.errors import XlcError
from xlc.modeldir import META_FILE, read_meta, write_meta

log = logging.getLogger(__name__)


class MeanPoolClassifier(PreTrainedModel):
    """Encoder + mean pooling over real tokens + dropout + linear head."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PretrainedConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else _encoder_from_config(config)
        self.dropout = nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init() if encoder is None else self._init_weights(self.classifier)

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "encoder"):
            self.encoder._init_weights(module)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _encoder_from_config(config: PretrainedConfig) -> PreTrainedModel:
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler take no such argument
        return AutoModel.from_config(config)


@dataclass(frozen=True)
class Classifier:
    """A model, its tokenizer and what xlc needs to use them."""

    model: MeanPoolClassifier
    tokenizer: object
    classes: tuple[str, ...]
    text_prefix: str = ""

    def save(self, path: Path) -> None:
        """Write a Hugging Face folder (weights, config, tokenizer) plus xlc.json."""
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        write_meta(path, self.classes, self.text_prefix)


def _quiet_transformers() -> None:
    hf_logging.set_verbosity_error()


def resolve_base(model: str) -> tuple[Path, str]:
    """Map a model argument to a local folder and its text prefix."""
    if model == default_model.NAME:
        return default_model.ensure_converted(), default_model.TEXT_PREFIX
    path = Path(model)
    if not (path / "config.json").is_file():
        raise XlcError(
            f"--model {model!r}: not a local Hugging Face model folder (no config.json); "
            f"pass a folder such as a saved xlm-roberta-base, or {default_model.NAME!r}"
        )
    return path, ""


def load_tokenizer(path: Path):
    _quiet_transformers()
    return AutoTokenizer.from_pretrained(path)


def from_base(model: str, classes: Sequence[str]) -> Classifier:
    """A new classifier on a pretrained encoder (default or local folder), head untrained."""
    _quiet_transformers()
    path, prefix = resolve_base(model)
    if (path / META_FILE).is_file():  # an xlc model: keep its head if the classes agree
        clf = load(path)
        if tuple(clf.classes) == tuple(classes):
            return clf
        raise XlcError(
            f"--model {path} was trained for classes {list(clf.classes)}, the data has "
            f"{list(classes)}; start from its base encoder instead"
        )
    config = AutoConfig.from_pretrained(path)
    config.num_labels = len(classes)
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    encoder = AutoModel.from_pretrained(path, config=config, **_pooler_kwargs(config))
    torch.manual_seed(0)
    model = MeanPoolClassifier(config, encoder).eval()
    return Classifier(model, load_tokenizer(path), tuple(classes), prefix)


def _pooler_kwargs(config: PretrainedConfig) -> dict:
    return {"add_pooling_layer": False} if config.model_type in ("bert", "xlm-roberta", "roberta") else {}


def load(path: Path) -> Classifier:
    """Load a classifier written by `Classifier.save`."""
    _quiet_transformers()
    meta = read_meta(path)
    config = AutoConfig.from_pretrained(path)
    model = MeanPoolClassifier.from_pretrained(path, config=config).eval()
    return Classifier(model, load_tokenizer(path), tuple(meta["classes"]), meta.get("text_prefix", ""))


DEVICES = ("auto", "cpu", "cuda")


def _default_device() -> str:
    return os.environ.get("XLC_DEVICE") or "auto"


@dataclass(frozen=True)
class TrainSettings:
    """How one round is fine-tuned.

    device: "auto" trains on CUDA when torch sees a GPU, else on the CPU; "cuda" asks for
    the GPU (and falls back to the CPU with one warning when there is none); "cpu" never
    uses a GPU. The default comes from $XLC_DEVICE, else "auto".
    mixed_precision: on CUDA, autocast to bf16 where the GPU supports it, else fp16 with
    loss scaling. Training on the CPU is always fp32.
    """

    epochs: int = 2
    batch_size: int = 32
    max_length: int = 64
    lr: float = 2e-4
    head_lr: float = 1e-3
    warmup: float = 0.1
    freeze_embeddings: bool = True
    seed: int = 0
    device: str = field(default_factory=_default_device)
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise XlcError(f"device {self.device!r} is not one of {', '.join(DEVICES)} (see $XLC_DEVICE)")


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


def fine_tune(
    clf: Classifier,
    texts: Sequence[str],
    labels: np.ndarray,
    settings: TrainSettings,
    on_step: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """Fine-tune in place for `settings.epochs` epochs; return the mean loss per epoch.

    AdamW with separate learning rates for encoder and head, linear warm-up then decay,
    dynamic padding per batch. `on_step(step, total, loss)` reports progress. On a GPU
    (see `TrainSettings.device`) the model trains there with mixed precision and is moved
    back to the CPU afterwards, so export and saving see the same model as on a CPU run.
    """
    if len(texts) == 0:
        raise XlcError("the labelled training set is empty; pass a --train file with rows")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    device = training_device(settings.device)
    amp_dtype = _amp_dtype(device, settings.mixed_precision)
    # fp16 needs loss scaling against underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    model = clf.model
    model.to(device)
    model.train()
    embeddings = model.encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(not settings.freeze_embeddings)
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": settings.lr}, {"params": head, "lr": settings.head_lr}],
        weight_decay=0.01,
    )
    steps_per_epoch = math.ceil(len(texts) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warm = max(1, int(total * settings.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    encoded = clf.tokenizer(
        [clf.text_prefix + t for t in texts], truncation=True, max_length=settings.max_length
    )["input_ids"]
    target = torch.as_tensor(labels, dtype=torch.long)
    pad = clf.tokenizer.pad_token_id
    losses, step = [], 0
    lengths = [len(ids) for ids in encoded]
    for _ in range(settings.epochs):
        epoch_loss = 0.0
        for idx in length_grouped_batches(lengths, settings.batch_size, generator):
            ids, mask = pad_batch([encoded[i] for i in idx], pad)
            if device.type != "cpu":
                ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                out = model(input_ids=ids, attention_mask=mask, labels=target[idx].to(device))
            scaler.scale(out.loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = out.loss.item()
            epoch_loss += loss * len(idx)
            if on_step:
                on_step(step, total, loss)
        losses.append(epoch_loss / len(texts))
    model.eval()
    if device.type != "cpu":
        model.to("cpu")
        torch.cuda.empty_cache()
    return losses


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
