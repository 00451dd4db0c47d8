"""`xlc score` on this machine: one table file, scored in chunks into one Parquet file, resumable."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from xlc import data, files, rundir
from xlc.errors import XlcError
from xlc.modeldir import read_meta
from xlc.scoring import job as shared
from xlc.scoring.job import ScoreJob, ScoreSummary
from xlc.scoring.scorer import ProgressFn, Scorer

ENGINE = "local"


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
    # bad input fails before the model is opened (or quantised)
    (source,) = shared.plan_sources(job, [Path(job.input)], read_meta(model_dir)["classes"])
    rows = shared.id_and_text(data.scan_table(job.input), job.text_column, job.id_column,
                              carried=source.carried).drop("_row")
    _check_format(job, rows)
    total = source.rows
    job = job.for_model(model_dir)
    with ExitStack() as stack:
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(files.locked(shared.lock_file(job.output), f"--out {job.output}"))
        except OSError as exc:
            raise files.write_error(job.output, exc) from None
        wanted = job.fingerprint(model_dir, [Path(job.input)], ENGINE, chunk_size=job.chunk_size)
        if _already_scored(job, wanted):  # a finished re-run: said, not redone
            per_class, empty_texts = shared.tally(_scan_output(job.output))
            return ScoreSummary(total, time.perf_counter() - start, per_class, empty_texts, 0, job.output,
                                complete=True)
        scorer = Scorer.open(model_dir, threads=job.threads, provider=job.provider, int8=job.int8)
        scorer.max_length_for(job.max_length)  # refused before any part is written
        if not total:
            _check_output(job)
            schema = rows.collect_schema()
            empty = pl.DataFrame(schema=shared.output_schema(schema["id"], scorer.classes, schema.get(shared.KEPT)))
            _write_output(empty.lazy(), job.output, wanted)
            return ScoreSummary(0, time.perf_counter() - start, {}, 0, 0, job.output)
        parts = _prepare_parts(job, wanted)
        done, resumed = 0, 0
        try:
            for k, chunk in enumerate(shared.exact_chunks(rows, job.chunk_size)):
                part = parts / f"part-{k:06d}.parquet"
                if part.exists():
                    resumed += 1
                else:
                    scored = shared.score_chunk(scorer, chunk, job.batch_size, job.max_length,
                                         lambda d, base=done: progress(base + d, total) if progress else None)
                    data.write_parquet(shared.flatten(scored), part)
                done += chunk.height
                if progress:
                    progress(done, total)
        except pl.exceptions.PolarsError as exc:  # a broken row further in the file
            raise data.read_error(job.input, exc) from None
        all_parts = pl.scan_parquet(parts / "part-*.parquet")
        per_class, empty_texts = shared.tally(all_parts)
        _write_output(all_parts, job.output, wanted)
        shutil.rmtree(parts)
    return ScoreSummary(done, time.perf_counter() - start, per_class, empty_texts, resumed, job.output)


FINISHED_KEY = "xlc.score"
"""The key of a finished output's fingerprint: Parquet metadata, or the JSON file beside a CSV/JSONL output."""
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _stamp_file(output: Path) -> Path:
    """Beside a CSV or JSONL output: the fingerprint of the job that wrote it (Parquet keeps it inside)."""
    return output.with_name(f".{output.name}.xlc.json")


def _write_output(rows: pl.LazyFrame, output: Path, wanted: dict) -> None:
    """The final output in the format its suffix names, with the job's fingerprint."""
    stamp = json.dumps(wanted, sort_keys=True)
    kind = OUTPUT_FORMATS[output.suffix.lower()]
    if kind == "parquet":
        data.write_with(output, lambda tmp: rows.sink_parquet(tmp, metadata={FINISHED_KEY: stamp}))
        return
    sink = rows.sink_csv if kind == "csv" else rows.sink_ndjson
    data.write_with(output, sink)
    files.write_json(_stamp_file(output), {FINISHED_KEY: stamp})


def _scan_output(output: Path) -> pl.LazyFrame:
    kind = OUTPUT_FORMATS[output.suffix.lower()]
    return {"parquet": pl.scan_parquet, "csv": pl.scan_csv, "jsonl": pl.scan_ndjson}[kind](output)


def _already_scored(job: ScoreJob, wanted: dict) -> bool:
    """Whether --out is a finished output of this very job (same model, input and options)."""
    if job.overwrite or not job.output.is_file() or job.output.suffix.lower() not in OUTPUT_FORMATS:
        return False
    try:
        if OUTPUT_FORMATS[job.output.suffix.lower()] == "parquet":
            found = pl.read_parquet_metadata(job.output).get(FINISHED_KEY)
        else:
            found = json.loads(_stamp_file(job.output).read_text(encoding="utf-8")).get(FINISHED_KEY)
    except (OSError, ValueError, AttributeError, pl.exceptions.PolarsError):
        return False
    return found == json.dumps(wanted, sort_keys=True)


def _check_format(job: ScoreJob, rows: pl.LazyFrame) -> None:
    """Refuse kept columns that the output's format cannot hold (lists and structs in CSV)."""
    kept = rows.collect_schema().get(shared.KEPT)
    if OUTPUT_FORMATS.get(job.output.suffix.lower()) != "csv" or not isinstance(kept, pl.Struct):
        return
    nested = next((f for f in kept.fields if f.dtype.is_nested()), None)
    if nested is not None:
        raise XlcError(f"--keep-columns: column {nested.name!r} holds {nested.dtype}, which CSV cannot hold; "
                       f"name --out *.parquet or *.jsonl, or leave the column out of --keep-columns")


def _check_output(job: ScoreJob) -> None:
    if job.output.exists() and not job.overwrite:
        raise XlcError(f"--out {job.output} exists; pass --overwrite to replace it")
    if job.output.is_dir():
        raise XlcError(f"--out {job.output} is a folder; name a *.parquet, *.csv or *.jsonl file")
    if job.output.suffix.lower() not in OUTPUT_FORMATS:
        raise XlcError(f"--out {job.output}: scores are written as Parquet, CSV or JSONL; name it *.parquet, "
                       f"*.csv or *.jsonl")


def _prepare_parts(job: ScoreJob, wanted: dict) -> Path:
    """The marked parts folder: resumed when its manifest matches `wanted`, else made afresh.

    Part k holds rows k * chunk_size onwards, so the chunk size is part of the fingerprint.
    """
    parts = job.output.with_name(job.output.name + ".parts")
    manifest = parts / "manifest.json"
    if parts.is_dir() and manifest.is_file() and not job.overwrite:
        shared.check_resumable(manifest, wanted, parts)
        return parts
    _check_output(job)
    if parts.exists() and not (parts.is_dir() and (files.is_marked(parts) or manifest.is_file())):
        raise XlcError(f"{parts}: is in the way of the parts of --out {job.output} and was not written by "
                       f"xlc; move it or choose another output name")
    try:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        files.mark(parts, "score parts")
        files.write_json(manifest, wanted)
    except OSError as exc:
        raise files.write_error(parts, exc) from None
    return parts
