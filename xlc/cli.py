"""The `xlc` command line: parse options, call the library, print."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

import xlc
from xlc.config import cli_fields, cli_help, flag, resolve, show
from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE, CHUNK_SIZE, MAX_LENGTH_HELP
from xlc.selectors.builtin import BUILTINS

if TYPE_CHECKING:
    from xlc.rundir import RunDir


def _setup_logging(quiet: bool) -> None:
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler],
                        format="%(message)s", force=True)
    for noisy in ("transformers", "optimum", "torch", "onnxruntime", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _fail_cleanly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn XlcError into a one-line message and exit code 2, never a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XlcError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # full disk, read-only folder, missing file: not a bug, say what and where
            from xlc.files import advice

            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}; {advice(exc)}") from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


ENVIRONMENT = """\b
Environment variables:
  XLC_DEVICE   where training runs: auto (CUDA when torch sees a GPU), cpu or cuda
  XLC_CACHE    where the default model is converted to and traced ONNX graphs are kept (default
               ~/.cache/xlc)
  XLC_PLUGINS  which selector plugins load: unset all, "none", or names (a,b)"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=ENVIRONMENT)
@click.version_option(xlc.__version__, prog_name="xlc")
def main() -> None:
    """Cross-lingual self-training of text classifiers (Dong & de Melo, 2019)."""


FILE = click.Path(path_type=Path, dir_okay=False)


def stdout_console() -> Console:
    """Tables on stdout: as wide as the terminal, or 200 columns when piped (a file keeps whole rows)."""
    return Console(width=None if sys.stdout.isatty() else 200)


# Scoring options as `xlc score` and `xlc evaluate` take them; the jobs check their values (xlc.inference).
BATCH_SIZE_OPTION = click.option("--batch-size", "--score-batch-size", "batch_size", default=BATCH_SIZE,
                                 show_default=True, type=int,
                                 help="Texts per ONNX Runtime call (selftrain calls it --score-batch-size).")
MAX_LENGTH_OPTION = click.option("--max-length", type=int,
                                 help=f"Tokens per text; longer texts are cut.  [default: {MAX_LENGTH_HELP}]")


def _comma_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """`--demo-langs a,b` as a tuple; not given (or empty): None."""
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _config_option(option: dataclasses.Field) -> Decorator:
    """The click option of a `SelfTrainConfig` field: flag, type and help from the field's `setting`.

    No click default: an option not given is None and leaves the config file's value (or the default).
    """
    cli = option.metadata["cli"]
    kind = str(option.type).split("|")[0].strip()
    names = [flag(option.name) + (f"/{cli['off']}" if cli["off"] else "")]
    extra: dict[str, Any] = {"default": None} if cli["off"] else {}
    if cli["file"]:
        extra["type"] = FILE
    elif cli["choices"]:
        extra["type"] = click.Choice(cli["choices"])
    elif kind in ("int", "float"):
        extra["type"] = int if kind == "int" else float
    elif kind.startswith("tuple"):
        extra["callback"] = _comma_list
    return click.option(*names, help=cli_help(option), **extra)


def _config_options(after: dict[str, list[Decorator]]) -> Decorator:
    """Every `SelfTrainConfig` option in field order; `after[name]`: CLI-only options that follow that field."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(cli_fields()):  # click lists options in the reverse order they are added
            for extra in reversed(after.get(option.name, [])):
                func = extra(func)
            func = _config_option(option)(func)
        return func

    return decorate


def _shortcut(name: str, selector: str, help: str) -> Decorator:
    """`--kt`, `--n`, `--threshold`: one option of a built-in selector, with its type and default."""
    spec = next(o for s in BUILTINS if s.name == selector for o in s.options if o.name == name)
    return click.option(f"--{name}", type=spec.type, help=f"{selector}: {help}  [default: {show(spec.default)}]")


SELECTOR_OPTIONS = [
    _shortcut("kt", "balanced", "texts per class per round."),
    _shortcut("n", "throttling", "texts per round (selector pool: a sample of at most n texts, default all)."),
    _shortcut("threshold", "thresholded", "minimum confidence."),
    click.option("--selector-opt", multiple=True, metavar="KEY=VALUE", help="Any selector option; repeatable."),
    click.option("--selector-config", type=FILE,
                 help="TOML file of selector options (key = value); the option flags override it."),
]
"""The selector's options, as `xlc selftrain` and `xlc select` take them (`_selector_options` merges them)."""


def _apply(decorators: Sequence[Decorator]) -> Decorator:
    """Several click options as one decorator, in the order listed."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def _selector_options(kt: int | None, n: int | None, threshold: float | None, selector_opt: tuple[str, ...],
                      selector_config: Path | None) -> dict[str, Any]:
    from xlc.selectors import options

    return options.gather(selector_config, {"kt": kt, "n": n, "threshold": threshold}, selector_opt)


@main.command()
@click.option("--config", "config_file", type=FILE, help="TOML file with settings; flags override it.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Continue the interrupted run in this folder with its own settings.")
@_config_options(after={"selector": SELECTOR_OPTIONS})
@click.option("--quiet", is_flag=True, help="No progress bars or log lines.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: the run's report.json, with "
              "its paths (implies --quiet).")
@_fail_cleanly
def selftrain(config_file: Path | None, resume_dir: Path | None, quiet: bool, as_json: bool, kt: int | None,
              n: int | None, threshold: float | None, selector_opt: tuple[str, ...], selector_config: Path | None,
              **flags: Any) -> None:
    """Self-train a classifier: fine-tune, score the pool, select, repeat.

    With no data options it runs the bundled demo (SIB-200 topics, English -> German and Chinese).
    """
    from xlc import report
    from xlc.loop import check_model, finished, run
    from xlc.progress import Bars
    from xlc.rundir import RunDir, run_lock

    quiet = quiet or as_json
    _setup_logging(quiet)
    selector_options = _selector_options(kt, n, threshold, selector_opt, selector_config)
    config = resolve({k: v for k, v in flags.items() if v is not None}, config_file, resume=resume_dir,
                     selector_options=selector_options)
    folder = RunDir(Path(config.out))
    if finished(config):  # a re-run of a finished run: said, not refused
        if as_json:
            _echo_run(folder, report.read(folder.path), finished_before=True)
            return
        click.echo(f"--out {config.out}: already holds this run, finished (same settings, data and model); "
                   f"nothing to do")
        click.echo(f"report: {folder.report_md}")
        return
    check_model(config)  # before the run folder is made: a bad --model leaves nothing behind
    with run_lock(Path(config.out)), Bars(quiet=quiet) as bars:
        result = run(config, progress=bars)
    if as_json:
        _echo_run(folder, result.report, finished_before=False)
        return
    print_rounds(result.report)
    delivered = report.delivered(result.report) if report.averaged(result.report) else f"best round {result.best_round}"
    click.echo(f"{delivered}: {result.best_model}; stopped: {result.stop_reason}")
    if note := report.best_round_note(result.report):
        click.echo(f"note: the delivered model is {note}")
    click.echo(f"report: {RunDir(result.out).report_md}")


def _echo_run(folder: RunDir, summary: dict, finished_before: bool) -> None:
    """`xlc selftrain --json`: report.json with where the run put its models and report."""
    paths = {"out": folder.path, "best_model": folder.best, "final_model": folder.final, "report": folder.report,
             "report_md": folder.report_md}
    click.echo(json.dumps({**{k: str(v) for k, v in paths.items()}, "finished_before": finished_before,
                           **summary}, indent=2))


PER_CLASS_WIDTH = 32
"""The round table's per-class cell in a terminal: lines of class-count pairs at most this wide."""


def print_rounds(summary: dict, width: int | None = None) -> None:
    """The round-by-round table on stdout, without the columns the terminal (or `width`) has no room for."""
    from xlc.report import COLUMNS, NARROW_DROPS, averaged, fit_columns, table_rows

    console = stdout_console() if width is None else Console(width=width)
    title = f"xlc selftrain: selector {summary['config']['selector']}, classes {', '.join(summary['classes'])}"
    rows = table_rows(summary["rounds"], per_class_width=PER_CLASS_WIDTH, average=averaged(summary))
    columns, rows = fit_columns(COLUMNS, rows, console.width)
    console.print(_table(title, columns, rows, left=columns.index("per class")))
    if dropped := [c for c in NARROW_DROPS if c not in columns]:
        console.print(f"({', '.join(dropped)}: left out to fit {console.width} columns; all in report.md)")


@main.command("select")
@click.option("--scored", "scored_path", type=FILE, required=True,
              help="A round's scored pool: RUN/round-NN/scored.parquet of an `xlc selftrain` run.")
@click.option("--selector", required=True, help="Selector name (see `xlc selectors`).")
@_apply(SELECTOR_OPTIONS)
@click.option("--gold", "gold_path", type=FILE,
              help="The pool's true labels, as --pool-gold takes them: pseudo-label precision too.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--out", "out_path", type=FILE, help="Write the chosen rows to this Parquet file.")
@click.option("--overwrite", is_flag=True, help="Replace an --out that an earlier `xlc select` wrote.")
@_fail_cleanly
def select_command(scored_path: Path, selector: str, kt: int | None, n: int | None, threshold: float | None,
                   selector_opt: tuple[str, ...], selector_config: Path | None, gold_path: Path | None,
                   as_json: bool, out_path: Path | None, overwrite: bool) -> None:
    """Replay a selector on a round's saved scored pool: what it would take, in seconds.

    The selector gets what the run gave it that round (classes, labeled counts, round number).
    Prints the texts taken per class and language, their confidence range and, with --gold,
    pseudo-label precision per class and language.
    """
    from xlc import replay

    options = _selector_options(kt, n, threshold, selector_opt, selector_config)
    if out_path is not None:
        replay.check_out(out_path, overwrite)
    saved = replay.load_round(scored_path)
    gold = replay.read_gold(gold_path, saved) if gold_path else None
    chosen, resolved = replay.replay(saved, selector, options)
    result = {"scored": str(scored_path), "round": saved.context.round, "selector": selector, "options": resolved,
              "labeled_counts": dict(saved.context.labeled_counts),
              **replay.summarise(chosen, saved.pool, saved.context.classes, gold),
              "gold": str(gold_path) if gold_path else None, "run_selection": replay.run_selection(saved, chosen),
              "out": str(out_path) if out_path else None}
    if out_path is not None:
        replay.write_chosen(chosen, out_path, saved.context.round, selector)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    shown = ", ".join(f"{k}={v}" for k, v in resolved.items())
    title = f"xlc select: {selector} ({shown}) on {scored_path} (round {result['round']})"
    stdout_console().print(_table(title, replay.table_columns(result), replay.table_rows(result)))
    share = result["taken"] / result["pool"] if result["pool"] else 0.0
    click.echo(f"taken {result['taken']} of {result['pool']} texts ({share:.1%})")
    if own := result["run_selection"]:
        click.echo(f"the run's selector {own['selector']} took {own['taken']} here; {own['overlap']} of them "
                   f"are taken now too")
    if out_path is not None:
        click.echo(f"wrote {result['taken']} rows to {out_path}")


@main.command("selectors")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_cleanly
def list_selectors(as_json: bool) -> None:
    """List the installed selectors, where they come from and their options.

    Plugins that failed to load are reported on stderr; the others are still listed.
    """
    from xlc.selectors.registry import PLUGINS_ENV, describe

    listing = describe()
    if as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        table = Table()
        for name in ("selector", "package", "options", "description"):
            table.add_column(name)
        for row in listing["selectors"]:
            options = ", ".join(f"{o['name']}={o['default']}" for o in row["options"])
            table.add_row(row["name"], f"{row['package']} {row['version']}", options, row["description"])
        stdout_console().print(table)
    for failure in listing["broken"]:
        click.echo(f"broken plugin {failure['plugin']!r} (package {failure['package']}): {failure['error']}",
                   err=True)
    if listing["broken"]:
        click.echo(f"(fix or uninstall the package, or load only the plugins you name: "
                   f"{PLUGINS_ENV}=name1,name2; {PLUGINS_ENV}=none loads no third-party plugin)", err=True)


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A run folder (its best model), best/, final/ or a folder from `xlc export`.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True,
              help="Texts to score (Parquet, CSV, JSONL); with --engine ray also a folder or a glob.")
@click.option("--out", "--output", "output_path", type=click.Path(path_type=Path), required=True,
              help="Scores as one Parquet, CSV or JSONL file (by its suffix), or with --engine ray a folder "
                   "of Parquet parts.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--id-column", help="Column of unique ids to copy to the output.  [default: row number]")
@click.option("--keep-columns", multiple=True, metavar="COL[,COL...]|all",
              help="Input columns to write beside the scores (repeatable or comma-separated); all: every one. "
                   "An input 'label' is written as 'gold'.")
@BATCH_SIZE_OPTION
@MAX_LENGTH_OPTION
@click.option("--chunk-size", default=CHUNK_SIZE, show_default=True, type=int,
              help="Rows read, scored and written per part (bounds memory; the unit of resume).")
@click.option("--threads", type=int,
              help="ONNX Runtime threads (per actor with --engine ray).  [default: all cores]")
@click.option("--int8", is_flag=True, help="Use (and create once) the dynamic int8 model.")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = CUDA when onnxruntime-gpu sees a GPU.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output or unfinished parts.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: Ray Data actors on a cluster (pip install 'xlc[ray]').")
@click.option("--ray-address", help="Ray cluster to join (HOST:PORT).  [default: start a local Ray]")
@click.option("--workers", type=click.IntRange(min=1),
              help="Ray actors, one ONNX Runtime session each.  [default: cluster CPUs / 2]")
@click.option("--num-gpus", type=click.FloatRange(min=0), default=0.0, help="GPUs per Ray actor.  [default: 0]")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (implies --quiet).")
@_fail_cleanly
def score(model_path: Path, input_path: Path, output_path: Path, keep_columns: tuple[str, ...], quiet: bool,
          as_json: bool, engine: str, ray_address: str | None, workers: int | None, num_gpus: float,
          **options: Any) -> None:
    """Score a table of texts with a trained model; resumable, in bounded memory.

    Output per row, in input order: id, the --keep-columns columns, label, confidence and
    p_<class> for every class (the columns of xlc.score). Null, empty or whitespace-only texts
    keep their row with null scores.
    """
    from xlc.progress import Bars
    from xlc.scoring import ScoreJob, score_file

    quiet = quiet or as_json
    _setup_logging(quiet)
    keep = tuple(x.strip() for item in keep_columns for x in item.split(",") if x.strip())
    job = ScoreJob(model=model_path, input=input_path, output=output_path, keep_columns=keep, **options)
    if engine == "ray":
        from xlc.scoring.ray import RayOptions, score_files

        summary = score_files(job, RayOptions(ray_address, workers, num_gpus, progress_bars=not quiet))
    elif ray_address or workers or num_gpus:
        raise XlcError("--ray-address, --workers and --num-gpus are for --engine ray")
    elif input_path.is_dir() or output_path.is_dir():
        raise XlcError("--engine local scores one file into one file; folders and globs need --engine ray")
    else:
        with Bars(quiet=quiet, unit="rows") as bars:
            summary = score_file(job, progress=lambda done, total: bars("score", done, total))
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(summary), "output": str(summary.output),
                               "rows_per_second": summary.rows_per_second}, indent=2))
        return
    counts = ", ".join(f"{k} {v}" for k, v in summary.per_class.items())
    if summary.complete:
        click.echo(f"--out {summary.output} is already complete ({summary.rows} rows scored with this model, "
                   f"input and options); nothing to do (pass --overwrite to score again)")
        click.echo(f"per class: {counts}")
        return
    click.echo(f"scored {summary.rows} rows in {summary.seconds:.1f} s ({summary.rows_per_second:.0f} rows/s)"
               f"{f', resumed {summary.resumed_parts} finished part(s)' if summary.resumed_parts else ''}")
    click.echo(f"per class: {counts}" + (f"; {summary.empty_texts} empty text(s) left unscored"
                                         if summary.empty_texts else ""))
    click.echo(f"output: {summary.output}")


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A run folder (its best model) or a model folder with Hugging Face weights.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--optimize", type=click.Choice(["O1", "O2", "O3"]), help="ONNX Runtime graph optimisation.")
@click.option("--int8", is_flag=True, help="Also write model.int8.onnx (dynamic int8 quantisation).")
@click.option("--overwrite", is_flag=True,
              help="Also replace an --out that xlc did not write, if it holds only files (they are deleted).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_cleanly
def export(model_path: Path, out_path: Path, optimize: str | None, int8: bool, overwrite: bool,
           as_json: bool) -> None:
    """Export a trained model to ONNX (through Optimum), ready for `xlc score`.

    --out must be new, empty or an earlier export; a folder of other files needs --overwrite, and
    a folder with subfolders, the current folder or a home folder is never replaced.
    """
    from xlc import files, model, modelcard, onnx, rundir

    _setup_logging(False)
    files.check_replaceable(out_path, "--out", overwrite, "export")  # before anything is loaded or written
    source = rundir.find_checkpoint(model_path)
    clf = model.load(source)
    card = functools.partial(modelcard.for_source, source, weights=False)  # from the export's own xlc.json
    onnx.export(clf, out_path, kind="export", overwrite=overwrite, card=card)
    if optimize:
        onnx.optimize(out_path, optimize)
    if int8:
        onnx.quantize_int8(out_path)
    if as_json:
        click.echo(json.dumps({"source": str(source), "out": str(out_path), "optimize": optimize, "int8": int8,
                               "files": sorted(p.name for p in out_path.iterdir())}, indent=2))
        return
    click.echo(f"exported {source} to {out_path}" + (f" (optimised {optimize})" if optimize else "")
               + (" with model.int8.onnx" if int8 else ""))


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A run folder (its best model), best/, final/ or a folder from `xlc export`.")
@click.option("--data", "data_path", type=FILE, required=True,
              help="Labeled texts to evaluate on (Parquet, CSV, JSONL).")
@click.option("--lang", "langs", multiple=True, metavar="LANG",
              help="Only these languages (repeatable or comma-separated); needs --lang-column.")
@click.option("--ordinal", is_flag=True,
              help="Labels are ordered numbers (e.g. 1-5 stars): also the MSE of the wrong predictions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--lang-column", default="lang", show_default=True, help="Per-language metrics when present.")
@BATCH_SIZE_OPTION
@MAX_LENGTH_OPTION
@click.option("--threads", type=int, help="ONNX Runtime threads.  [default: all cores]")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = CUDA when onnxruntime-gpu sees a GPU.")
@_fail_cleanly
def evaluate(model_path: Path, data_path: Path, langs: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Measure a trained model on labeled data: accuracy, macro-F1, per-class scores, confusion.

    With --ordinal, also the mean squared error of the wrong predictions (Dong & de Melo 2019, Table 2).
    """
    from xlc.evaluate import EvaluateJob, class_rows, evaluate as run, summary_rows

    from xlc.progress import Bars

    _setup_logging(True)
    wanted = tuple(x.strip() for item in langs for x in item.split(",") if x.strip())
    with Bars(quiet=as_json, unit="rows") as bars:
        result = run(EvaluateJob(model=model_path, data=data_path, langs=wanted, **options),
                     progress=lambda done, total: bars("evaluate", done, total))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = stdout_console()
    ordinal = "mse" in result
    columns = ("rows", "n", "accuracy", "macro-F1") + (("MSE", "MSE wrong") if ordinal else ())
    console.print(_table(f"xlc evaluate: {result['model']} on {result['data']}", columns, summary_rows(result)))
    console.print(_table("per class", ("class", "precision", "recall", "F1", "support"), class_rows(result)))
    confusion = [(name, *(str(c) for c in counts))
                 for name, counts in zip(result["classes"], result["confusion"], strict=True)]
    console.print(_table("confusion matrix (rows: gold, columns: predicted)",
                         ("gold \\ predicted", *result["classes"]), confusion))


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], left: int = 0) -> Table:
    """A rich table: the column at index `left` left-aligned, the others right-aligned."""
    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == left else "right")
    for row in rows:
        table.add_row(*row)
    return table


@main.command("audit")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--n", "size", type=int, default=200, show_default=True, help="Pseudo-labels to sample.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the sample: audit.csv and a Label Studio import.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the sample.")
@click.option("--import", "checked_path", type=FILE,
              help="The checked sample (audit.csv with gold filled in, or a Label Studio JSON export): "
                   "report precision.")
@click.option("--gold-out", type=click.Path(path_type=Path, dir_okay=False),
              help="--import: write the checked texts here as labeled data (for --extra-train).  "
                   "[default: checked_gold.csv beside the imported file]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_cleanly
def audit_command(run_dir: Path, size: int, out_path: Path | None, seed: int, checked_path: Path | None,
                  gold_out: Path | None, as_json: bool) -> None:
    """Check a run's pseudo-labels with people: write a sample, then import the checked labels.

    `xlc audit RUN --n 200 --out DIR` samples pseudo-labels stratified by class, language and
    confidence band. `xlc audit RUN --import DIR/audit.csv` reports pseudo-label precision per
    class and language with 95% intervals, and writes the checked texts as labeled data.
    """
    from xlc import audit, report

    classes = report.read(run_dir)["classes"]
    if (out_path is None) == (checked_path is None):
        raise XlcError("pass --out DIR to write a sample, or --import FILE to read a checked one")
    if out_path is not None:
        chosen = audit.sample(audit.pseudo_labels(run_dir), size, seed)
        written = audit.write_sample(chosen, out_path, classes)
        if as_json:
            click.echo(json.dumps({"sampled": chosen.height, "written": [str(p) for p in written]}, indent=2))
            return
        click.echo(f"sampled {chosen.height} pseudo-labels (class x language x confidence band)")
        for path in written:
            click.echo(f"wrote {path}")
        click.echo(f"fill the gold column of {written[0]} (or annotate {written[1].name} in Label Studio), then: "
                   f"xlc audit {run_dir} --import {written[0]}")
        return
    assert checked_path is not None
    checked = audit.read_checked(checked_path, classes)
    result = audit.precision(checked)
    gold = audit.write_gold(checked, gold_out or checked_path.with_name(audit.GOLD_FILE))
    if as_json:
        click.echo(json.dumps({**result, "gold": str(gold)}, indent=2))
        return
    rows = [("all", "", *_precision_cells(result["all"]))]
    rows += [("class", k, *_precision_cells(v)) for k, v in result["per_class"].items()]
    rows += [("language", k, *_precision_cells(v)) for k, v in result["per_lang"].items()]
    stdout_console().print(_table(f"pseudo-label precision, {checked.height} checked texts",
                                  ("by", "group", "correct / checked", "precision", "95% interval"), rows,
                                  left=1))
    click.echo(f"wrote {gold}: the checked texts as labeled data (xlc selftrain --extra-train {gold})")


def _precision_cells(cell: dict) -> tuple[str, str, str]:
    return (f"{cell['correct']} / {cell['checked']}", f"{cell['precision']:.3f}",
            f"[{cell['low']:.3f}, {cell['high']:.3f}]")


@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]",
                type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_fail_cleanly
def report_command(run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Redraw a run's report.md and plots from its report.json, or compare several runs.

    One run: plots of accuracy per round and language (dev, test), pseudo-label precision and
    classes per round, and pool health. Several runs: each against the first, accuracy per round,
    pseudo-labels per class and, where they scored the same test set, the accuracy difference of
    the delivered models with a 95% paired bootstrap interval over the test texts.
    """
    if len(run_dirs) > 1:
        _compare(run_dirs, as_json)
        return
    from xlc.report import render

    written = render(run_dirs[0])
    if as_json:
        click.echo(json.dumps({"run": str(run_dirs[0]), "written": [str(p) for p in written]}, indent=2))
        return
    for path in written:
        click.echo(f"wrote {path}")


def _compare(run_dirs: Sequence[Path], as_json: bool) -> None:
    from xlc import compare

    result = compare.compare(run_dirs)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = stdout_console()
    classes = ", ".join(result["runs"][0]["classes"])
    console.print(_table(f"runs (pseudo-labels per class: {classes})",
                         ("run", "selector", "delivered round (rule)", "test acc %", "pseudo-labels per class"),
                         compare.run_rows(result)))
    columns, rows = compare.round_rows(result)
    console.print(_table("accuracy % per round (runs numbered as listed)", columns, rows))
    console.print(_table(f"test accuracy of each run minus {result['runs'][0]['run']} (points; paired bootstrap "
                         f"95% interval over the test texts)", ("run", "difference", "95% interval", "texts"),
                         compare.difference_rows(result)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
