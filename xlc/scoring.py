"""Score texts with an exported model: length-bucketed batches through ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from xlc import onnx
from xlc.errors import XlcError
from xlc.model import load_tokenizer, read_meta

ProgressFn = Callable[[int, int], None]


@dataclass
class Scorer:
    """One ONNX Runtime session with its tokenizer and class names; reuse it across calls."""

    session: object
    tokenizer: object
    classes: tuple[str, ...]
    text_prefix: str = ""

    @classmethod
    def open(cls, model_dir: Path, threads: int | None = None, provider: str = "cpu") -> "Scorer":
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        return cls(
            onnx.session(model_dir, threads=threads, provider=provider),
            load_tokenizer(model_dir),
            tuple(meta["classes"]),
            meta.get("text_prefix", ""),
        )

    def probabilities(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        max_length: int = 128,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are tokenised once, sorted by length and batched so that each batch is
        padded only to its own longest text; the original order is restored at the end.
        """
        out = np.empty((len(texts), len(self.classes)), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.tokenizer(
            [self.text_prefix + t for t in texts], truncation=True, max_length=max_length
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
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
        self, frame: pl.DataFrame, batch_size: int = 64, max_length: int = 128,
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
