"""The Scorer: an exported model scoring texts in length-bucketed batches through ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from xlc import inference, onnx
from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE, MIN_LENGTH
from xlc.modeldir import META_FILE, FastTokenizer, built_in_prefix, max_positions, read_meta

ProgressFn = Callable[[int, int], None]


@dataclass
class Scorer:
    """One ONNX Runtime session with its tokenizer and class names; reuse it across calls."""

    session: object
    tokenizer: FastTokenizer
    classes: tuple[str, ...]
    text_prefix: str = ""
    max_positions: int | None = None
    """The most tokens the model reads (its position embeddings); None when unknown."""
    trained_max_length: int | None = None
    """The max length the model was trained with (from xlc.json); None for a folder that does not say."""

    @classmethod
    def open(cls, model_dir: Path, threads: int | None = None, provider: str = "cpu",
             int8: bool = False, graph: bool = False) -> Scorer:
        """The folder's model and tokenizer. `graph`: through its weights graph (`onnx.session`; a run's rounds)."""
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        session = onnx.session(model_dir, threads=threads, provider=provider, int8=int8, graph=graph)
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(meta["classes"]):
            raise XlcError(f"{model_dir}: the model outputs {width} scores per text but {META_FILE} names "
                           f"{len(meta['classes'])} classes; the model folder is damaged: export it again")
        tokenizer = FastTokenizer(model_dir, built_in_prefix(meta))
        return cls(session, tokenizer, tuple(meta["classes"]), meta.get("text_prefix", ""),
                   max_positions(model_dir), meta.get("max_length"))

    def max_length_for(self, given: int | None = None) -> int:
        """The max length to score with (`given`, else the model's training length, else the fallback), checked."""
        length = inference.resolve_max_length(given, self.trained_max_length)
        self.check_max_length(length)
        return length

    def check_max_length(self, max_length: int) -> None:
        """Refuse a --max-length the model cannot read (above its position embeddings)."""
        limit = self.max_positions or 1_000_000
        if not MIN_LENGTH <= max_length <= limit:
            raise XlcError(f"--max-length {max_length}: this model reads between {MIN_LENGTH} and {limit} tokens "
                           f"per text; pass --max-length {min(max(max_length, MIN_LENGTH), limit)}")

    def probabilities(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        max_length: int | None = None,
        progress: ProgressFn | None = None,
        bucket: bool = True,
    ) -> np.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are tokenised once, sorted by length and batched so that each batch is
        padded only to its own longest text; the original order is restored at the end.
        `max_length` None: the model's own (`max_length_for`).
        `bucket=False` batches in input order instead (for comparison only).
        """
        max_length = self.max_length_for(max_length)
        inference.check(flags=False, batch_size=batch_size)
        out = np.empty((len(texts), len(self.classes)), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.tokenizer.encode([self.text_prefix + t for t in texts], max_length)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable") if bucket else np.arange(len(ids))
        wants = {i.name for i in self.session.get_inputs()}
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            batch = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                batch[j, : lengths[r]] = ids[r]
                mask[j, : lengths[r]] = 1
            feed = {"input_ids": batch, "attention_mask": mask}
            if "token_type_ids" in wants:
                feed["token_type_ids"] = np.zeros_like(batch)
            logits = self.session.run(None, feed)[0]
            if logits.shape[-1] != len(self.classes):
                raise XlcError(f"the model outputs {logits.shape[-1]} scores per text for {len(self.classes)} "
                               f"classes; the model folder is damaged: export it again")
            out[rows] = softmax(logits)
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        if not np.isfinite(out).all():
            raise XlcError(
                "the model produced NaN or infinite scores; it is broken (diverged training?): "
                "retrain with a lower --lr"
            )
        return out

    def score(
        self, frame: pl.DataFrame, batch_size: int = BATCH_SIZE, max_length: int | None = None,
        progress: ProgressFn | None = None,
    ) -> pl.DataFrame:
        """`frame` (with a `text` column) plus label, confidence and probs columns."""
        probs = self.probabilities(frame["text"].to_list(), batch_size, max_length, progress)
        return frame.with_columns(predictions(probs, self.classes))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def predictions(probs: np.ndarray, classes: Sequence[str]) -> list[pl.Series]:
    """The label, confidence and probs columns for a probability matrix."""
    best = probs.argmax(axis=1)
    return [
        pl.Series("label", np.asarray(classes, dtype=object)[best], dtype=pl.String),
        pl.Series("confidence", probs[np.arange(len(best)), best], dtype=pl.Float32),
        pl.Series("probs", probs, dtype=pl.Array(pl.Float32, len(classes))),
    ]
