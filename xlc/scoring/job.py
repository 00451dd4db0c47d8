"""A scoring job, and everything the local and the Ray engine share about it.

The job's options; its input files (found, checked, counted, read as id, text and the columns
to keep); the scored columns of a chunk and the schema of an empty output (the columns
themselves are defined in `columns.py`); the fingerprint that a re-run must match to resume,
and its check; the per-class tally of a finished output; the output's lock file.
"""

from __future__ import annotations

import dataclasses
import glob
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import polars as pl

from xlc import data, inference, onnx
from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE, CHUNK_SIZE
from xlc.modeldir import read_meta
from xlc.scoring import columns
from xlc.scoring.scorer import Scorer


@dataclass(frozen=True)
class ScoreJob:
    """`xlc score`: a model, an input table and where the scores go.

    max_length None: the model's own (`for_model`). keep_columns: input columns written beside
    the scores (`--keep-columns`), or `("all",)` for every one.
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
    keep_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        inference.check(batch_size=self.batch_size, max_length=self.max_length, chunk_size=self.chunk_size,
                        threads=self.threads)
        if columns.ALL in self.keep_columns and len(self.keep_columns) > 1:
            raise XlcError(f"--keep-columns {','.join(self.keep_columns)}: {columns.ALL!r} keeps every column; "
                           f"pass it alone, or name the columns to keep")

    def for_model(self, model_dir: Path) -> ScoreJob:
        """This job with its max length settled for the model in `model_dir` (what a re-run must match)."""
        trained = read_meta(model_dir).get("max_length")
        return dataclasses.replace(self, max_length=inference.resolve_max_length(self.max_length, trained))

    def fingerprint(self, model_dir: Path, inputs: Sequence[Path], engine: str, **layout: object) -> dict:
        """What must match for finished parts to be reused by a re-run, as its manifest holds it.

        What decides a row's scores (the input files and the model as they are on disk, the
        columns, max length, int8 and provider) and its columns (`keep_columns`, recorded only
        when given, so that outputs written before the option existed stay recognised), plus
        the engine and whatever of its `layout` names the parts. The batch size is left out: it
        sets how many texts go through ONNX Runtime at once, not a row's scores, so a re-run may
        change it (e.g. after running out of memory).
        """
        model_file = model_dir / (onnx.INT8_FILE if self.int8 else onnx.ONNX_FILE)
        wanted = {
            "engine": engine, "inputs": [file_stamp(p) for p in inputs], "model": file_stamp(model_file),
            "text_column": self.text_column, "id_column": self.id_column, "max_length": self.max_length,
            "int8": self.int8, "provider": self.provider,
            **({"keep_columns": list(self.keep_columns)} if self.keep_columns else {}), **layout,
        }
        return json.loads(json.dumps(wanted))  # as the written manifest reads back


def file_stamp(path: Path) -> list:
    """A file as a fingerprint sees it: resolved path, size and modification time (the path if absent)."""
    path = Path(path)
    if not path.exists():
        return [str(path)]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def check_resumable(manifest: Path, wanted: dict[str, object], where: Path) -> None:
    """Refuse to resume parts written under other options: the error names every key that differs.

    A key on one side only differs too (parts written with --keep-columns, a re-run without).
    """
    found = json.loads(manifest.read_text())
    wanted = json.loads(json.dumps(wanted))  # tuples become lists, as in the written manifest
    differs = sorted(k for k in wanted.keys() | found.keys() if found.get(k) != wanted.get(k))
    if differs:
        raise XlcError(
            f"{where} holds parts of an unfinished run with a different {', '.join(differs)}; "
            f"re-run with the same options to resume, or pass --overwrite to start afresh"
        )


def lock_file(output: Path) -> Path:
    """The lock file beside a score output: held while a process writes that output."""
    return output.with_name(f".{output.name}.lock")


@dataclass(frozen=True)
class ScoreSummary:
    rows: int
    seconds: float
    per_class: dict[str, int]
    empty_texts: int
    resumed_parts: int
    output: Path
    complete: bool = False
    """True when the output was already the finished output of this job: nothing was scored again."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class Source:
    """One input file: its place in the input order, its rows, and the rows of the files before it.

    carried: the columns it keeps, (input name, output name) pairs, the same for every file.
    """

    index: int
    path: str
    rows: int
    offset: int
    carried: tuple[tuple[str, str], ...] = ()


def input_files(spec: Path | str, output: Path) -> list[Path]:
    """A file, every table file in a folder, or a glob's matches; sorted by path.

    Files whose names start with `.` or `_` are skipped, as Spark and Arrow do.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file()]
    elif path.is_file():
        found = [path]
    elif glob.has_magic(text):
        found = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    else:
        raise XlcError(f"--input {text}: no such file or folder, and no glob pattern")
    tables = sorted({p.resolve() for p in found
                     if p.suffix.lower() in data.FORMATS and not p.name.startswith((".", "_"))})
    if not tables:
        kinds = ", ".join(sorted(data.FORMATS))
        raise XlcError(f"--input {text}: no table files ({kinds}) there")
    inside = [p for p in tables if output.resolve() in p.parents]
    if inside:
        raise XlcError(f"--input {text}: {inside[0]} lies in --out {output}; keep the output "
                       f"folder out of the input")
    return tables


def plan_sources(job: ScoreJob, paths: Sequence[Path], classes: Sequence[str] = ()) -> list[Source]:
    """Check every file's columns and count its rows.

    Parquet is counted from its footer; CSV and JSONL in one pass that decodes the text (and the
    columns to keep), so that a broken file fails here, before any part is written.

    The text column must hold text (or only nulls: those rows are kept, unscored). With
    --id-column the ids of all files are read once to check that they are unique. The columns
    to keep must not clash with the output's (`classes`: the model's) and must be the same, of
    the same types, in every file. A file its parser refuses is a one-line error naming it.
    """
    sources, offset, id_scans = [], 0, []
    kept: list[tuple[str, str, pl.DataType]] | None = None
    for i, path in enumerate(paths):
        where = f"--input {path}"
        scan = data.scan_table(Path(path))
        try:
            data.require_columns(scan, where, [job.text_column] + ([job.id_column] if job.id_column else []))
            schema = scan.collect_schema()
            if schema[job.text_column] not in (pl.String, pl.Null):
                raise XlcError(f"{where}: column {job.text_column!r} does not hold text; "
                               f"pick it with --text-column")
            carried = carried_columns(job, schema.names(), classes, where)
            these = [(c, name, schema[c]) for c, name in carried]
            if kept is not None and these != kept:
                raise XlcError(f"{where}: the columns to keep ({_described(these)}) differ from those of "
                               f"--input {paths[0]} ({_described(kept)}); --keep-columns needs the same "
                               f"columns, of the same types, in every input file: name them")
            kept = these
            counted = (scan if data.table_format(Path(path)) == "parquet"
                       else id_and_text(scan, job.text_column, carried=carried))
            rows = counted.select(pl.len()).collect().item()
        except pl.exceptions.PolarsError as exc:
            raise data.read_error(Path(path), exc) from None
        if job.id_column:
            id_scans.append((Path(path), schema[job.id_column], scan.select(pl.col(job.id_column).alias("id"))))
        sources.append(Source(i, str(path), rows, offset, carried))
        offset += rows
    if id_scans:
        _check_ids(job, id_scans)
    return sources


def carried_columns(job: ScoreJob, available: Sequence[str], classes: Sequence[str],
                    where: str) -> tuple[tuple[str, str], ...]:
    """The columns of one input file that `--keep-columns` carries, (input name, output name) pairs.

    The output's `id` comes first: the --id-column (never carried a second time), else row numbers.
    """
    if not job.keep_columns:
        return ()
    what = (f"the id column 'id' (from --id-column {job.id_column})" if job.id_column else
            "the id column 'id' (row numbers; pass --id-column id to use the input's ids instead)")
    fix = "leave it out of --keep-columns (instead of all, name the columns to keep) or rename it in the input"
    found = columns.carried(available, job.keep_columns, classes, f"{where} --keep-columns", fix,
                            reserved={"id": what}, skip=[job.id_column] if job.id_column else [])
    return tuple(found.items())


def _described(kept: Sequence[tuple[str, str, pl.DataType]]) -> str:
    return ", ".join(f"{c} {dtype}" for c, _, dtype in kept) or "none"


def _check_ids(job: ScoreJob, id_scans: list[tuple[Path, pl.DataType, pl.LazyFrame]]) -> None:
    """Ids of one type, unique and present across all input files."""
    dtypes = {str(dtype) for _, dtype, _ in id_scans}
    if len(dtypes) > 1:
        raise XlcError(f"--id-column {job.id_column!r} has different types across the input files "
                       f"({', '.join(sorted(dtypes))}); ids must have one type")
    try:
        rows, unique, nulls = pl.concat([s for _, _, s in id_scans]).select(
            pl.len().alias("rows"), pl.col("id").n_unique().alias("unique"),
            pl.col("id").null_count().alias("nulls")).collect().row(0)
    except pl.exceptions.PolarsError as exc:
        raise data.read_error(id_scans[0][0], exc) from None
    if rows != unique or nulls:
        across = " across all input files" if len(id_scans) > 1 else ""
        raise XlcError(f"--input {job.input}: column {job.id_column!r} has duplicate or missing ids; "
                       f"ids must be unique{across}")


KEPT = "_keep"
"""The struct column that carries the kept columns from the reader to the writer (`flatten`): their
names can then be anything, `text` or `_row` included, without meeting the engines' own columns."""


def id_and_text(scan: pl.LazyFrame, text_column: str, id_column: str | None = None,
                offset: int = 0, carried: Sequence[tuple[str, str]] = ()) -> pl.LazyFrame:
    """A file's rows as id, text, the `carried` columns (a KEPT struct, when any) and _row.

    The id is `id_column`, else the row number across all input files (`offset`, the rows of the
    files before this one, + _row); _row is its row number in the file.
    """
    text = pl.col(text_column).cast(pl.String).alias("text")
    kept = [pl.struct(pl.col(c).alias(name) for c, name in carried).alias(KEPT)] if carried else []
    selected = [pl.col(id_column).alias("id"), text, *kept] if id_column else [text, *kept]
    frame = scan.select(selected).with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    if not id_column:
        frame = frame.with_columns((pl.col("_row") + offset).alias("id"))
    return frame.select("id", "text", *([KEPT] if carried else []), "_row")


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


# ---------------------------------------------------------------- output


def score_chunk(scorer: Scorer, chunk: pl.DataFrame, batch_size: int = BATCH_SIZE,
                max_length: int | None = None, progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """id, the KEPT struct (when `chunk` has one) and the prediction columns (`columns.predict`).

    `flatten` turns the result into the output's columns. Null, empty and whitespace-only texts
    are not scored: their row stays, with nulls. `progress(done)` counts the texts scored so far.
    """
    kept = [chunk[KEPT]] if KEPT in chunk.columns else []
    return pl.DataFrame([chunk["id"], *kept, *columns.predict(
        scorer, chunk["text"], batch_size, max_length, (lambda d, _t: progress(d)) if progress else None)])


def flatten(scored: pl.DataFrame) -> pl.DataFrame:
    """Scored rows as the output holds them: the KEPT struct's columns in its place."""
    return scored.unnest(KEPT) if KEPT in scored.columns else scored


def output_schema(id_dtype: pl.DataType, classes: Sequence[str],
                  kept: pl.DataType | None = None) -> dict[str, pl.DataType]:
    """The columns of scores on disk (`flatten(score_chunk(...))`), for an output without rows.

    kept: the KEPT struct's type, when columns are kept.
    """
    fields = {f.name: cast("pl.DataType", f.dtype) for f in kept.fields} if isinstance(kept, pl.Struct) else {}
    return {"id": id_dtype, **fields, **columns.prediction_schema(classes)}


def tally(parts: pl.LazyFrame) -> tuple[dict[str, int], int]:
    """Rows per label (sorted by label) and rows without one (empty texts) in scored parts."""
    per_class = dict(parts.group_by("label").len().drop_nulls().sort("label").collect().iter_rows())
    empty = parts.select(pl.col("label").null_count()).collect().item()
    return per_class, empty
