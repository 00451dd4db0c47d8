"""Score texts with an exported model: length-bucketed batches through ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from xlc import data, files, inference, onnx, rundir
from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE, CHUNK_SIZE, MIN_LENGTH
from xlc.modeldir import META_FILE, FastTokenizer, max_positions, read_meta

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
             int8: bool = False) -> Scorer:
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        session = onnx.session(model_dir, threads=threads, provider=provider, int8=int8)
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(meta["classes"]):
            raise XlcError(f"{model_dir}: the model outputs {width} scores per text but {META_FILE} names "
                           f"{len(meta['classes'])} classes; the model folder is damaged: export it again")
        return cls(session, FastTokenizer(model_dir), tuple(meta["classes"]), meta.get("text_prefix", ""),
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


@dataclass(frozen=True)
class ScoreJob:
    """`xlc score`: a model, an input table and where the scores go.

    max_length None: the model's own (`for_model`).
    """

    model: Path
    input: Path
    output: Path
    text_column: str = "text"
    id_column: str | None = None
    batch_size: int = BATCH_SIZE
    max_length: int | None = None
    threads: int | None = None
    int8: bool = False
    provider: str = "cpu"
    chunk_size: int = CHUNK_SIZE
    overwrite: bool = False

    def __post_init__(self) -> None:
        inference.check(batch_size=self.batch_size, max_length=self.max_length, chunk_size=self.chunk_size,
                        threads=self.threads)

    def for_model(self, model_dir: Path) -> ScoreJob:
        """This job with its max length settled for the model in `model_dir` (what a re-run must match)."""
        trained = read_meta(model_dir).get("max_length")
        return dataclasses.replace(self, max_length=inference.resolve_max_length(self.max_length, trained))

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


def _source(job: ScoreJob) -> tuple[pl.LazyFrame, int]:
    """The input as id and text columns, checked, and its row count; a broken file is a one-line error."""
    scan = data.scan_table(job.input)
    where = f"--input {job.input}"
    try:
        data.require_columns(scan, where, [job.text_column] + ([job.id_column] if job.id_column else []))
        if scan.collect_schema()[job.text_column] not in (pl.String, pl.Null):
            raise XlcError(f"{where}: column {job.text_column!r} does not hold text; pick it with --text-column")
        text = pl.col(job.text_column).cast(pl.String).alias("text")
        if job.id_column:
            frame = scan.select(pl.col(job.id_column).alias("id"), text)
            counts = frame.select(pl.len().alias("rows"), pl.col("id").n_unique().alias("unique"),
                                  pl.col("id").null_count().alias("nulls")).collect().row(0)
            if counts[0] != counts[1] or counts[2]:
                raise XlcError(f"{where}: column {job.id_column!r} has duplicate or missing ids; "
                               f"ids must be unique")
            return frame, counts[0]
        frame = scan.select(text).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
        return frame, frame.select(pl.len()).collect().item()
    except pl.exceptions.PolarsError as exc:
        raise data.read_error(job.input, exc) from None


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
        pl.Series("label", labels.tolist(), dtype=pl.String),
        pl.Series("confidence", confidence).fill_nan(None),
        *(pl.Series(f"p_{name}", probs[:, i]).fill_nan(None) for i, name in enumerate(scorer.classes)),
    ])


def score_file(job: ScoreJob, progress: ProgressFn | None = None) -> ScoreSummary:
    """Score a table file in bounded memory; resumable, output in input order.

    Each chunk of `chunk_size` rows is written atomically to `OUTPUT.parts/`; a re-run
    with the same model, input and options skips finished parts. At the end the parts
    are streamed into OUTPUT (temp file + rename) and the parts folder is removed.
    While it runs, `.OUTPUT.lock` beside the output keeps a second process off it.
    An input without rows gives an output without rows (and no parts folder).
    """
    start = time.perf_counter()
    model_dir = rundir.find_model(Path(job.model))
    source, total = _source(job)  # bad input fails before the model is opened (or quantised)
    job = job.for_model(model_dir)
    with ExitStack() as stack:
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(files.locked(lock_file(job.output), f"--output {job.output}"))
        except OSError as exc:
            raise files.write_error(job.output, exc) from None
        scorer = Scorer.open(model_dir, threads=job.threads, provider=job.provider, int8=job.int8)
        scorer.max_length_for(job.max_length)  # refused before any part is written
        if not total:
            _check_output(job)
            empty = pl.DataFrame(schema={"id": source.collect_schema()["id"], "label": pl.String,
                                         "confidence": pl.Float32,
                                         **{f"p_{name}": pl.Float32 for name in scorer.classes}})
            data.write_with(job.output, empty.write_parquet)
            return ScoreSummary(0, time.perf_counter() - start, {}, 0, 0, job.output)
        parts = _prepare_parts(job, model_dir)
        done, resumed = 0, 0
        try:
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
        except pl.exceptions.PolarsError as exc:  # a broken row further in the file
            raise data.read_error(job.input, exc) from None
        all_parts = pl.scan_parquet(parts / "part-*.parquet")
        per_class = dict(all_parts.group_by("label").len().drop_nulls().sort("label").collect().iter_rows())
        empty_texts = all_parts.select(pl.col("label").null_count()).collect().item()
        data.write_with(job.output, all_parts.sink_parquet)
        shutil.rmtree(parts)
    return ScoreSummary(done, time.perf_counter() - start, per_class, empty_texts, resumed, job.output)


def lock_file(output: Path) -> Path:
    """The lock file beside a score output: held while a process writes that output."""
    return output.with_name(f".{output.name}.lock")


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


def _check_output(job: ScoreJob) -> None:
    if job.output.exists() and not job.overwrite:
        raise XlcError(f"--output {job.output} exists; pass --overwrite to replace it")
    if job.output.is_dir():
        raise XlcError(f"--output {job.output} is a folder; name a *.parquet file")
    if job.output.suffix.lower() not in (".parquet", ".pq"):
        raise XlcError(f"--output {job.output}: scores are written as Parquet; name it *.parquet")


def _prepare_parts(job: ScoreJob, model_dir: Path) -> Path:
    """The marked parts folder: resumed when its manifest matches, else made afresh."""
    parts = job.output.with_name(job.output.name + ".parts")
    manifest = parts / "manifest.json"
    wanted = json.loads(json.dumps(job.fingerprint(model_dir)))
    if parts.is_dir() and manifest.is_file() and not job.overwrite:
        check_resumable(manifest, wanted, parts)
        return parts
    _check_output(job)
    if parts.exists() and not (parts.is_dir() and (files.is_marked(parts) or manifest.is_file())):
        raise XlcError(f"{parts}: is in the way of the parts of --output {job.output} and was not written by "
                       f"xlc; move it or choose another output name")
    try:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        files.mark(parts, "score parts")
        files.write_json(manifest, wanted)
    except OSError as exc:
        raise files.write_error(parts, exc) from None
    return parts
