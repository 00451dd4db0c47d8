"""Score on a Ray cluster with Ray Data: actors that each hold one ONNX Runtime session.

`score_files` is `xlc score --engine ray`: files are read by Ray Data read tasks (one per
input file), scored by a `map_batches` actor pool and written by a Ray Data datasink as
Parquet parts in the output folder. Every row keeps its position (file, row), so ids are
the local engine's and a re-run scores only the rows that no finished part holds.
`score_pool` scores the self-training pool of one round (`xlc selftrain --engine ray`).

Ray is imported only when one of these runs; without it the error says what to install.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from xlc import data, files, inference, onnx, rundir
from xlc.errors import XlcError, first_line
from xlc.modeldir import read_meta
from xlc.scoring import columns
from xlc.scoring import job as shared
from xlc.scoring.job import ScoreJob, ScoreSummary, Source, input_files, plan_sources
from xlc.scoring.scorer import Scorer, predictions

log = logging.getLogger("xlc")

ENGINE = "ray"
INSTALL_HINT = "pip install 'xlc[ray]'"
MANIFEST = "_xlc_manifest.json"
DONE = "_SUCCESS"
PART = re.compile(r"^part-(\d{5})-(\d{12})-(\d{12})\.parquet$")
TASK_CPUS = 0.25
"""Logical CPUs asked by each read and write task: little, since the actors do the work."""
ARROW = pl.CompatLevel.oldest()  # plain Arrow strings, which every Ray version concatenates


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    address: an existing cluster (`ray start --head` prints it; "auto" finds a local one);
    None starts a local Ray instance for this job. workers: actors, each with one ONNX
    Runtime session (default: one per two cluster CPUs, or one per `num_gpus` GPUs).
    num_gpus: GPUs per actor (fractions share a GPU); give `provider` "cuda" or "auto".
    """

    address: str | None = None
    workers: int | None = None
    num_gpus: float = 0.0
    progress_bars: bool = True


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise XlcError(f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextmanager
def connected(options: RayOptions, shutdown: bool = True) -> Iterator[Any]:
    """Connect to `options.address` or start a local Ray instance; reuse a live connection.

    A connection made here is closed on exit when `shutdown` is true.
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        quiet = {"logging_level": logging.WARNING, "log_to_driver": options.progress_bars}
        try:
            if options.address:
                ray.init(address=options.address, **quiet)
            else:  # "local": never join some other cluster found on this machine
                ray.init(address="local", include_dashboard=False, **quiet)
        except Exception as exc:  # noqa: BLE001 - a raylet that dies while starting raises a bare Exception
            where = f"--ray-address {options.address}" if options.address else "a local Ray instance"
            hint = ("; is the cluster up (`ray status`)? `ray start` turns token authentication on: "
                    "set RAY_AUTH_MODE=token here, with the head node's ~/.ray/auth_token"
                    if options.address else "; on a busy machine Ray's start can time out: try again, "
                    "or score with --engine local")
            raise XlcError(f"{where}: cannot start or connect to Ray: {first_line(exc)}{hint}") from None
        started = True
    try:
        yield ray
    finally:
        if started and shutdown:
            ray.shutdown()


@dataclass(frozen=True)
class Plan:
    """Actor count and resources, fitted to the cluster."""

    workers: int
    actor_cpus: float
    threads: int
    num_gpus: float


def plan_resources(cpus: float, nodes: int, gpus: float, options: RayOptions,
                   threads: int | None) -> Plan:
    """Size the actor pool so that read and write tasks always find room.

    Actors ask for fractional CPUs: on every node at least two task slots (read and
    write, TASK_CPUS each) stay free, since an actor pool that takes every CPU starves
    the tasks that feed it and the job hangs (2-core machines, small nodes).
    """
    if options.num_gpus < 0:
        raise XlcError(f"--num-gpus must be >= 0, got {options.num_gpus}")
    if options.workers is not None and options.workers < 1:
        raise XlcError(f"--workers must be >= 1, got {options.workers}")
    if options.num_gpus:
        if gpus < options.num_gpus:
            raise XlcError(f"--num-gpus {options.num_gpus}: the Ray cluster has {gpus:g} GPU(s); "
                           f"start GPU nodes or drop --num-gpus")
        workers = options.workers or max(1, int(gpus // options.num_gpus))
    else:
        workers = options.workers or max(1, int(cpus // 2))
    spare = cpus - 2 * TASK_CPUS * max(nodes, 1)
    actor_cpus = round(min(1.0, max(0.05, spare / workers)), 3)
    return Plan(workers, actor_cpus, threads or max(1, int(cpus // workers)), options.num_gpus)


POSITIONS = ("_file", "_row")
"""The columns that say where a row came from: input file number and row in that file."""


class BatchScorer:
    """The `map_batches` callable class: one ONNX Runtime session per actor.

    Takes Arrow batches with id, text, the kept columns (`job.KEPT`, when any) and position
    columns (_file, _row: passed through); returns `score_chunk`'s columns, exactly as the local
    engine computes them, with the positions.
    """

    def __init__(self, model_dir: str, threads: int, provider: str, int8: bool,
                 batch_size: int, max_length: int | None) -> None:
        self.scorer = Scorer.open(Path(model_dir), threads=threads, provider=provider, int8=int8)
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, batch: Any) -> Any:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        positions = [c for c in POSITIONS if c in frame.columns]
        scored = shared.score_chunk(self.scorer, frame.drop(positions), self.batch_size, self.max_length)
        return scored.hstack(frame.select(positions)).to_arrow(compat_level=ARROW)


# ---------------------------------------------------------------- files: xlc score --engine ray


def _read_file(source: Source, text_column: str, id_column: str | None, chunk_size: int,
               done: list[tuple[int, int]]) -> Iterator[Any]:
    """A read task: the file's rows not yet in a finished part, with id, text, the kept columns
    (`job.KEPT`, when any), _file and _row."""
    frame = shared.id_and_text(data.scan_table(Path(source.path)), text_column, id_column, source.offset,
                               source.carried)
    kept = [shared.KEPT] if source.carried else []
    starts = np.asarray([s for s, _ in done])
    stops = np.asarray([e for _, e in done])
    for chunk in frame.collect_batches(chunk_size=chunk_size):
        rows = chunk["_row"].to_numpy()
        if done:
            at = np.searchsorted(starts, rows, side="right") - 1
            covered = (at >= 0) & (rows < stops[np.maximum(at, 0)])
            chunk = chunk.filter(~covered)
        if chunk.height:
            yield chunk.select("id", "text", *kept, pl.lit(source.index, pl.Int32).alias("_file"),
                               "_row").to_arrow(compat_level=ARROW)


def part_name(file: int, start: int, stop: int) -> str:
    """Rows start..stop-1 of input file number `file`; names sort in input order."""
    return f"part-{file:05d}-{start:012d}-{stop:012d}.parquet"


def _runs(frame: pl.DataFrame, chunk_size: int) -> Iterator[tuple[int, int, int, pl.DataFrame]]:
    """Cut scored rows into runs of consecutive rows of one file within one chunk."""
    frame = frame.sort("_file", "_row")
    keys = frame.select(
        pl.col("_file"), pl.col("_row"),
        ((pl.col("_row").diff() != 1) | (pl.col("_file").diff() != 0)
         | (pl.col("_row") // chunk_size).diff().ne(0)).fill_null(True).cum_sum().alias("_run"),
    )
    frame = frame.with_columns(keys["_run"])
    for (_,), run in frame.group_by(["_run"], maintain_order=True):
        first, last = run["_row"][0], run["_row"][-1]
        yield int(run["_file"][0]), int(first), int(last) + 1, run.drop("_file", "_row", "_run")


def _write_parts(out: str, chunk_size: int, blocks: Any) -> int:
    """A write task: each run of rows becomes one part, written atomically."""
    written = 0
    for block in blocks:
        frame = pl.from_arrow(block)
        assert isinstance(frame, pl.DataFrame)
        if not frame.height:
            continue
        for file, start, stop, rows in _runs(frame, chunk_size):
            data.write_parquet(shared.flatten(rows), Path(out) / part_name(file, start, stop))
            written += rows.height
    return written


def finished_parts(out: Path) -> dict[int, list[tuple[int, int]]]:
    """The row ranges each input file already has in parts, sorted; overlaps are an error."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for path in out.iterdir():
        match = PART.match(path.name)
        if match:
            file, start, stop = (int(g) for g in match.groups())
            ranges.setdefault(file, []).append((start, stop))
    for file, spans in ranges.items():
        spans.sort()
        for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
            if start < stop:
                raise XlcError(f"{out}: parts of input file {file} overlap at row {start}; the folder "
                               f"was changed by hand or by two jobs at once: pass --overwrite")
    return ranges


def _missing(ranges: list[tuple[int, int]], rows: int) -> int:
    return rows - sum(min(stop, rows) - start for start, stop in ranges)


def fingerprint(job: ScoreJob, model_dir: Path, paths: list[Path]) -> dict:
    """What must match for a re-run to keep the parts already written (parts name their rows,
    so the chunk size may change)."""
    return job.fingerprint(model_dir, paths, ENGINE)


def prepare_output(job: ScoreJob, wanted: dict) -> Path:
    """Create the output folder, or check that it holds an unfinished run of this same job."""
    out = Path(job.output)
    if out.exists() and not out.is_dir():
        raise XlcError(f"--out {out}: exists and is not a folder; --engine ray writes a folder of parts")
    manifest = out / MANIFEST
    if out.is_dir() and any(out.iterdir()):
        if not manifest.is_file():
            raise XlcError(f"--out {out}: a folder that xlc did not write; choose a new or empty folder")
        if job.overwrite:
            shutil.rmtree(out)
        elif (out / DONE).exists():
            raise XlcError(f"--out {out} holds a finished run; pass --overwrite to replace it")
        else:
            shared.check_resumable(manifest, wanted, out)
            for tmp in out.glob(files.temp_path(out / "part-*").name):  # a write cut short by a kill
                tmp.unlink()
            return out
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(manifest, wanted)
    files.mark(out, "ray score output")
    return out


def score_files(job: ScoreJob, options: RayOptions | None = None) -> ScoreSummary:
    """Score a file, a folder or a glob of table files on Ray; resumable, no duplicates.

    Writes `job.output/part-FFFFF-START-STOP.parquet` (rows START..STOP-1 of input file
    FFFFF, in sorted path order) with id, the kept columns, label, confidence and p_<class>: the
    local engine's columns. Without an id column, ids are row numbers across the files in
    sorted path order, as if they were one file. `_SUCCESS` marks a finished run.
    """
    options = options or RayOptions()
    start = time.perf_counter()
    model_dir = rundir.find_model(Path(job.model))
    paths = input_files(job.input, Path(job.output))
    sources = plan_sources(job, paths, read_meta(model_dir)["classes"])  # bad input fails before the slow quantisation
    job = job.for_model(model_dir)
    if job.int8 and not (model_dir / onnx.INT8_FILE).is_file():
        onnx.quantize_int8(model_dir)  # once, here, rather than racing in every actor
    output = Path(job.output)
    with ExitStack() as stack:
        try:  # `.OUTPUT.lock` beside the output folder: one process at a time writes it
            output.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(files.locked(shared.lock_file(output), f"--out {output}"))
        except OSError as exc:
            raise files.write_error(output, exc) from None
        wanted = fingerprint(job, model_dir, paths)
        if not job.overwrite and _already_scored(output, wanted):  # a finished re-run: said, not redone
            rows = sum(s.rows for s in sources)
            per_class, empty = shared.tally(pl.scan_parquet(output / "part-*.parquet")) if rows else ({}, 0)
            return ScoreSummary(rows, time.perf_counter() - start, per_class, empty, 0, output, complete=True)
        out = prepare_output(job, wanted)
        done = finished_parts(out)
        resumed = sum(len(v) for v in done.values())
        todo = [s for s in sources if _missing(done.get(s.index, []), s.rows) > 0]
        if todo:
            with connected(options) as ray:
                _run(ray, job, options, model_dir, todo, done, out)
        return _finish(job, out, sources, resumed, start)


def _already_scored(out: Path, wanted: dict) -> bool:
    """Whether `out` is the finished output of this very job (same model, inputs and options)."""
    manifest = out / MANIFEST
    if not ((out / DONE).is_file() and manifest.is_file()):
        return False
    try:
        return json.loads(manifest.read_text()) == json.loads(json.dumps(wanted))
    except (OSError, ValueError):
        return False


def _run(ray: Any, job: ScoreJob, options: RayOptions, model_dir: Path, todo: list[Source],
         done: dict[int, list[tuple[int, int]]], out: Path) -> None:
    from ray.data import Datasink, Datasource, ReadTask
    from ray.data.block import BlockMetadata

    # Only plain values go into the read and write tasks.
    reads = [(s, done.get(s.index, [])) for s in todo]
    read_args = (job.text_column, job.id_column, job.chunk_size)
    write_args = (str(out), job.chunk_size)

    class PartsSource(Datasource):
        """One read task per input file that still has rows to score."""

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(Path(s.path).stat().st_size for s, _ in reads)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            return [ReadTask(partial(_read_file, s, *read_args, spans),
                             BlockMetadata(num_rows=_missing(spans, s.rows),
                                           size_bytes=Path(s.path).stat().st_size, exec_stats=None,
                                           input_files=(s.path,)))
                    for s, spans in reads]

    class PartsSink(Datasink):
        def write(self, blocks: Any, ctx: Any) -> int:
            return _write_parts(*write_args, blocks)

    dataset = ray.data.read_datasource(PartsSource(), num_cpus=TASK_CPUS)
    scored = _map_actors(ray, dataset, options, job.chunk_size, model_dir=str(model_dir), threads=job.threads,
                         provider=job.provider, int8=job.int8, batch_size=job.batch_size,
                         max_length=job.max_length)
    scored.write_datasink(PartsSink(), ray_remote_args={"num_cpus": TASK_CPUS})


def _map_actors(ray: Any, dataset: Any, options: RayOptions, rows_per_call: int, **scorer: Any) -> Any:
    """`dataset.map_batches(BatchScorer)` on an actor pool sized by `plan_resources`."""
    ray.data.DataContext.get_current().enable_progress_bars = options.progress_bars
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    plan = plan_resources(resources.get("CPU", 1), nodes, resources.get("GPU", 0), options, scorer["threads"])
    log.info("ray: %d actor(s), %g CPU and %g GPU each, %d ONNX Runtime thread(s) each",
             plan.workers, plan.actor_cpus, plan.num_gpus, plan.threads)
    return dataset.map_batches(
        BatchScorer, batch_size=rows_per_call, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.actor_cpus, num_gpus=plan.num_gpus or None,
        fn_constructor_kwargs={**scorer, "threads": plan.threads},
    )


def _finish(job: ScoreJob, out: Path, sources: list[Source], resumed: int, start: float) -> ScoreSummary:
    """Check that the parts hold every row exactly once; summarise; mark the run finished."""
    done = finished_parts(out)
    for s in sources:
        missing = _missing(done.get(s.index, []), s.rows)
        if missing:
            raise XlcError(f"{out}: {missing} row(s) of {s.path} have no scores after the run; "
                           f"re-run the same command to score them")
    rows = sum(s.rows for s in sources)
    per_class, empty = shared.tally(pl.scan_parquet(out / "part-*.parquet")) if rows else ({}, 0)
    files.write_text(out / DONE, "")
    return ScoreSummary(rows, time.perf_counter() - start, per_class, empty, resumed, out)


def read_scores(out: Path) -> pl.DataFrame:
    """All parts of a finished `--engine ray` output, in input order.

    An empty input has no parts: its frame has no rows and the local engine's columns, with
    row-number ids and the classes of the model the manifest names (none if that is gone), and
    without the kept columns.
    """
    if not any(Path(out).glob("part-*.parquet")):  # an empty input
        model_file = Path(json.loads((Path(out) / MANIFEST).read_text())["model"][0])
        try:
            classes = read_meta(model_file.parent)["classes"]
        except (XlcError, OSError, KeyError):
            classes = []
        return pl.DataFrame(schema=shared.output_schema(pl.Int64(), classes))
    return pl.read_parquet(Path(out) / "part-*.parquet")


# ---------------------------------------------------------------- frames: the self-training pool


def score_frame(frame: pl.DataFrame, model_dir: Path, options: RayOptions,
                batch_size: int = inference.BATCH_SIZE, max_length: int | None = None,
                threads: int | None = None, provider: str = "cpu") -> pl.DataFrame:
    """`frame` (unique `id`, `text`) plus label, confidence and probs, scored on Ray actors.

    The same columns as `Scorer.score`; `max_length` None: the model's own. Ray stays connected
    afterwards (the next round reuses it); it ends with the process or with `ray.shutdown()`.
    """
    classes = tuple(read_meta(Path(model_dir))["classes"])
    if frame.height == 0:
        return frame.with_columns(predictions(np.empty((0, len(classes)), np.float32), classes))
    with connected(options, shutdown=False) as ray:
        table = frame.select("id", "text").to_arrow(compat_level=ARROW)
        step = min(inference.CHUNK_SIZE, max(256, -(-frame.height // 16)))  # blocks to spread over the actors
        blocks = [table.slice(i, step) for i in range(0, frame.height, step)]
        scored = _map_actors(ray, ray.data.from_arrow(blocks), options, step, model_dir=str(model_dir),
                             threads=threads, provider=provider, int8=False, batch_size=batch_size,
                             max_length=max_length)
        result = pl.concat([pl.from_arrow(t) for t in ray.get(scored.to_arrow_refs())])
    assert isinstance(result, pl.DataFrame)
    ordered = frame.select("id").join(result, on="id", how="left", maintain_order="left")
    return frame.with_columns(predictions(columns.probabilities(ordered, classes), classes))


def score_pool(pool: pl.DataFrame, model_dir: Path, config: Any,
               progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """`selftrain --engine ray`: one round's pool, with the run's scoring settings.

    `progress(done, total)` is called before and after (Ray Data's own bars are off,
    so that they do not cut into the run's progress bars).
    """
    if progress:
        progress(0, pool.height)
    scored = score_frame(pool, model_dir, RayOptions(address=config.ray_address, workers=config.workers,
                                                     progress_bars=False),
                         batch_size=config.score_batch_size, max_length=config.max_length,
                         threads=config.threads)
    if progress:
        progress(pool.height, pool.height)
    return scored
