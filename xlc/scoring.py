"""Score texts with an exported model: length-bucketed batches through ONNX Runtime."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from xlc import data, files, onnx
from xlc.errors import XlcError
from xlc.modeldir import FastTokenizer, read_meta

ProgressFn = Callable[[int, int], None]


@dataclass
class Scorer:
    """One ONNX Runtime session with its tokenizer and class names; reuse it across calls."""

    session: object
    tokenizer: FastTokenizer
    classes: tuple[str, ...]
    text_prefix: str = ""

    @classmethod
    def open(cls, model_dir: Path, threads: int | None = None, provider: str = "cpu",
             int8: bool = False) -> Scorer:
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        return cls(
            onnx.session(model_dir, threads=threads, provider=provider, int8=int8),
            FastTokenizer(model_dir),
            tuple(meta["classes"]),
            meta.get("text_prefix", ""),
        )

    def probabilities(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        max_length: int = 128,
        progress: ProgressFn | None = None,
        bucket: bool = True,
    ) -> np.ndarray:
        """Class probabilities, one row per text, in input order.

        Texts are tokenised once, sorted by length and batched so that each batch is
        padded only to its own longest text; the original order is restored at the end.
        `bucket=False` batches in input order instead (for comparison only).
        """
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


@dataclass(frozen=True)
class ScoreJob:
    """`xlc score`: a model, an input table and where the scores go."""

    model: Path
    input: Path
    output: Path
    text_column: str = "text"
    id_column: str | None = None
    batch_size: int = 64
    max_length: int = 128
    threads: int | None = None
    int8: bool = False
    provider: str = "cpu"
    chunk_size: int = 20_000
    overwrite: bool = False

    def fingerprint(self, model_dir: Path) -> dict:
        """What must match for finished parts to be reused by a re-run."""
        model_file = model_dir / (onnx.INT8_FILE if self.int8 else onnx.ONNX_FILE)
        stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in (self.input, model_file) if p.exists()]
        return {
            "input": stamp[0], "model": stamp[-1] if len(stamp) > 1 else str(model_file),
            "text_column": self.text_column, "id_column": self.id_column,
            "batch_size": self.batch_size, "max_length": self.max_length, "int8": self.int8,
            "provider": self.provider, "chunk_size": self.chunk_size,
        }


@dataclass(frozen=True)
class ScoreSummary:
    rows: int
    seconds: float
    per_class: dict[str, int]
    empty_texts: int
    resumed_parts: int
    output: Path

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def exact_chunks(frame: pl.LazyFrame, size: int) -> Iterator[pl.DataFrame]:
    """Stream `frame` in chunks of exactly `size` rows (the last may be shorter)."""
    pending: list[pl.DataFrame] = []
    held = 0
    for batch in frame.collect_batches(chunk_size=size):
        pending.append(batch)
        held += batch.height
        while held >= size:
            whole = pl.concat(pending)
            yield whole.head(size)
            pending, held = [whole.slice(size)], held - size
    if held:
        yield pl.concat(pending)


def _source(job: ScoreJob) -> pl.LazyFrame:
    scan = data.scan_table(job.input)
    where = f"--input {job.input}"
    data.require_columns(scan, where, [job.text_column] + ([job.id_column] if job.id_column else []))
    if scan.collect_schema()[job.text_column] != pl.String:
        raise XlcError(f"{where}: column {job.text_column!r} does not hold text; pick it with --text-column")
    if job.id_column:
        frame = scan.select(pl.col(job.id_column).alias("id"), pl.col(job.text_column).alias("text"))
        counts = frame.select(pl.len().alias("rows"), pl.col("id").n_unique().alias("unique"),
                              pl.col("id").null_count().alias("nulls")).collect().row(0)
        if counts[0] != counts[1] or counts[2]:
            raise XlcError(f"{where}: column {job.id_column!r} has duplicate or missing ids; ids must be unique")
        return frame
    return scan.select(pl.col(job.text_column).alias("text")).with_row_index("id").with_columns(
        pl.col("id").cast(pl.Int64))


def _score_chunk(scorer: Scorer, chunk: pl.DataFrame, job: ScoreJob,
                 progress: Callable[[int], None]) -> pl.DataFrame:
    """id, label, confidence and one p_<class> column per class.

    Null, empty and whitespace-only texts are not scored: their row stays, with nulls.
    """
    valid = (chunk["text"].str.strip_chars().str.len_chars() > 0).fill_null(False).to_numpy()
    texts = chunk.filter(valid)["text"].to_list()
    probs = np.full((chunk.height, len(scorer.classes)), np.nan, dtype=np.float32)
    probs[valid] = scorer.probabilities(texts, job.batch_size, job.max_length, lambda d, _t: progress(d))
    labels = np.full(chunk.height, None, dtype=object)
    labels[valid] = np.asarray(scorer.classes, dtype=object)[probs[valid].argmax(axis=1)]
    confidence = np.full(chunk.height, np.nan, dtype=np.float32)
    confidence[valid] = probs[valid].max(axis=1)
    return pl.DataFrame([
        chunk["id"],
        pl.Series("label", labels, dtype=pl.String),
        pl.Series("confidence", confidence).fill_nan(None),
        *(pl.Series(f"p_{name}", probs[:, i]).fill_nan(None) for i, name in enumerate(scorer.classes)),
    ])


def score_file(job: ScoreJob, progress: ProgressFn | None = None) -> ScoreSummary:
    """Score a table file in bounded memory; resumable, output in input order.

    Each chunk of `chunk_size` rows is written atomically to `OUTPUT.parts/`; a re-run
    with the same model, input and options skips finished parts. At the end the parts
    are streamed into OUTPUT (temp file + rename) and the parts folder is removed.
    """
    start = time.perf_counter()
    model_dir = onnx.find_model(Path(job.model))
    scorer = Scorer.open(model_dir, threads=job.threads, provider=job.provider, int8=job.int8)
    source = _source(job)
    total = source.select(pl.len()).collect().item()
    parts = _prepare_parts(job, model_dir)
    done, resumed = 0, 0
    for k, chunk in enumerate(exact_chunks(source, job.chunk_size)):
        part = parts / f"part-{k:06d}.parquet"
        if part.exists():
            resumed += 1
        else:
            scored = _score_chunk(scorer, chunk, job,
                                  lambda d, base=done: progress(base + d, total) if progress else None)
            data.write_parquet(scored, part)
        done += chunk.height
        if progress:
            progress(done, total)
    all_parts = pl.scan_parquet(parts / "part-*.parquet")
    per_class = dict(all_parts.group_by("label").len().drop_nulls().sort("label").collect().iter_rows())
    empty = all_parts.select(pl.col("label").null_count()).collect().item() if done else 0
    tmp = job.output.with_name(f".{job.output.name}.tmp")
    try:
        if done:
            all_parts.sink_parquet(tmp)
        else:  # an empty input still gets an (empty) output with the right columns
            pl.DataFrame(schema={"id": pl.Int64, "label": pl.String, "confidence": pl.Float32}).write_parquet(tmp)
        files.commit(tmp, job.output)
    except (OSError, pl.exceptions.PolarsError) as exc:
        tmp.unlink(missing_ok=True)
        raise files.write_error(job.output, exc) from None
    shutil.rmtree(parts)
    return ScoreSummary(done, time.perf_counter() - start, per_class, empty, resumed, job.output)


def check_resumable(manifest: Path, wanted: dict[str, object], where: Path) -> None:
    """Refuse to resume parts written under other options: the error names every key that differs."""
    found = json.loads(manifest.read_text())
    wanted = json.loads(json.dumps(wanted))  # tuples become lists, as in the written manifest
    differs = sorted(k for k in wanted if found.get(k) != wanted[k])
    if differs:
        raise XlcError(
            f"{where} holds parts of an unfinished run with a different {', '.join(differs)}; "
            f"re-run with the same options to resume, or pass --overwrite to start afresh"
        )


def _prepare_parts(job: ScoreJob, model_dir: Path) -> Path:
    parts = job.output.with_name(job.output.name + ".parts")
    manifest = parts / "manifest.json"
    wanted = json.loads(json.dumps(job.fingerprint(model_dir)))
    if parts.is_dir() and manifest.is_file() and not job.overwrite:
        check_resumable(manifest, wanted, parts)
        return parts
    if job.output.exists() and not job.overwrite:
        raise XlcError(f"--output {job.output} exists; pass --overwrite to replace it")
    if job.output.suffix.lower() not in (".parquet", ".pq"):
        raise XlcError(f"--output {job.output}: scores are written as Parquet; name it *.parquet")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    files.write_json(manifest, wanted)
    return parts
