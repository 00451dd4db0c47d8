"""The `xlc` command line: parse options, call the library, print."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

import xlc
from xlc.errors import XlcError
from xlc.inference import BATCH_SIZE, CHUNK_SIZE, MAX_LENGTH_HELP


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(xlc.__version__, prog_name="xlc")
def main() -> None:
    """Cross-lingual self-training of text classifiers (Dong & de Melo, 2019)."""


FILE = click.Path(path_type=Path, dir_okay=False)
# Scoring options as `xlc score` and `xlc evaluate` take them; the jobs check their values (xlc.inference).
BATCH_SIZE_OPTION = click.option("--batch-size", default=BATCH_SIZE, show_default=True, type=int,
                                 help="Texts per ONNX Runtime call.")
MAX_LENGTH_OPTION = click.option("--max-length", type=int,
                                 help=f"Tokens per text; longer texts are cut.  [default: {MAX_LENGTH_HELP}]")


@main.command()
@click.option("--config", "config_file", type=FILE, help="TOML file with settings; flags override it.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Continue the interrupted run in this folder with its own settings.")
@click.option("--out", help="Output folder for the run (re-running on an unfinished run resumes it).  "
                            "[default: runs/xlc]")
@click.option("--train", type=FILE, help="Labelled source-language data (CSV, Parquet, JSONL).")
@click.option("--unlabeled", type=FILE, help="Unlabelled target-language pool.")
@click.option("--dev", type=FILE, help="Labelled target-language data for early stopping.")
@click.option("--test", type=FILE, help="Labelled target-language data for the final accuracy.")
@click.option("--pool-gold", type=FILE,
              help="True labels of the pool (id and label columns), for pseudo-label precision only; "
                   "never used for training or selection.")
@click.option("--text-column", help="Column holding the text.  [default: text]")
@click.option("--label-column", help="Column holding the label.  [default: label]")
@click.option("--id-column", help="Pool column with unique ids.  [default: row number]")
@click.option("--lang-column", help="Optional column for per-language metrics.  [default: lang]")
@click.option("--demo-langs", help="Demo only: comma-separated target languages.  [default: deu_Latn,zho_Hans]")
@click.option("--model", help="'multilingual-e5-small' or a local Hugging Face encoder folder.")
@click.option("--selector", help="Selector name (see `xlc selectors`).  [default: balanced]")
@click.option("--kt", type=int, help="balanced: texts per class per round.  [default: 40]")
@click.option("--n", type=int, help="throttling: texts per round.  [default: 280]")
@click.option("--threshold", type=float, help="thresholded: minimum confidence.  [default: 0.9]")
@click.option("--selector-opt", multiple=True, metavar="KEY=VALUE", help="Any selector option; repeatable.")
@click.option("--selector-config", type=FILE,
              help="TOML file of selector options (key = value); the option flags override it.")
@click.option("--max-rounds", type=int, help="Self-training rounds after round 0.  [default: 3]")
@click.option("--patience", type=int, help="Stop after this many rounds without dev gain.  [default: 1]")
@click.option("--epochs", type=int, help="Epochs per round (the most, with --select-epoch).  [default: 5]")
@click.option("--select-epoch/--fixed-epochs", default=None,
              help="Score dev after each epoch and keep the best epoch, or train exactly --epochs.  "
                   "[default: select]")
@click.option("--epoch-patience", type=int,
              help="--select-epoch: stop a round after this many epochs without dev gain (0: never).  "
                   "[default: 2]")
@click.option("--max-steps", type=int,
              help="Optimiser steps per round, overriding --epochs (e.g. the same-compute control).")
@click.option("--targets", type=click.Choice(["hard", "soft"]),
              help="What pseudo-labelled texts train on: the selected label, or the model's class "
                   "probabilities (soft: self-distillation).  [default: hard]")
@click.option("--warm-start/--from-base", default=None,
              help="Each round continues from the last round's model, or starts from the base model.  "
                   "[default: warm-start]")
@click.option("--train-layers", type=int,
              help="Train only the top N encoder layers and the head; the frozen layers below run once "
                   "per text (0: all layers).  [default: 0]")
@click.option("--batch-size", type=int, help="Training batch size.  [default: 32]")
@click.option("--max-length", type=int,
              help="Max tokens per text; stored with the model, which is then scored at it.  [default: 64]")
@click.option("--lr", type=float, help="Encoder learning rate (3e-5 suits base-size encoders).  [default: 2e-4]")
@click.option("--head-lr", type=float, help="Classification head learning rate.  [default: 1e-3]")
@click.option("--warmup", type=float, help="Share of steps for linear warm-up.  [default: 0.1]")
@click.option("--freeze-embeddings/--train-embeddings", default=None,
              help="Freeze the word-embedding table (faster on CPU).  [default: freeze]")
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@click.option("--score-batch-size", type=int, help=f"Batch size for ONNX scoring.  [default: {BATCH_SIZE}]")
@click.option("--threads", type=int, help="CPU threads for training and scoring.  [default: all]")
@click.option("--engine", type=click.Choice(["local", "ray"]),
              help="Where each round's pool is scored: here, or on Ray actors.  [default: local]")
@click.option("--ray-address", help="--engine ray: cluster to join (HOST:PORT).  [default: a local Ray]")
@click.option("--workers", type=int, help="--engine ray: actors.  [default: cluster CPUs / 2]")
@click.option("--quiet", is_flag=True, help="No progress bars or log lines.")
@_fail_cleanly
def selftrain(config_file: Path | None, resume_dir: Path | None, quiet: bool, kt: int | None, n: int | None,
              threshold: float | None, selector_opt: tuple[str, ...], selector_config: Path | None,
              demo_langs: str | None, **flags: Any) -> None:
    """Self-train a classifier: fine-tune, score the pool, select, repeat.

    With no data options it runs the bundled demo (SIB-200 topics, English -> German and Chinese).
    """
    from xlc import report
    from xlc.config import SelfTrainConfig
    from xlc.progress import Bars
    from xlc.loop import selftrain as run
    from xlc.rundir import RunDir, run_lock
    from xlc.selectors import options as selector_file

    _setup_logging(quiet)
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if v is not None}
    if resume_dir:
        if config_file or overrides.get("out", str(resume_dir)) != str(resume_dir):
            raise XlcError("--resume DIR takes its settings from DIR/config.toml; drop --config and --out")
        config_file, overrides["out"] = RunDir(resume_dir).config, str(resume_dir)
        if not config_file.is_file():
            raise XlcError(f"--resume {resume_dir}: no {config_file.name} there; it does not hold an xlc run")
    if demo_langs:
        overrides["demo_langs"] = tuple(x.strip() for x in demo_langs.split(",") if x.strip())
    given = {"kt": kt, "n": n, "threshold": threshold}
    selector_options = (
        (selector_file.read_file(selector_config) if selector_config else {})
        | {k: v for k, v in given.items() if v is not None}
        | selector_file.parse_pairs(selector_opt)
    )
    if config_file:
        config = SelfTrainConfig.from_toml(config_file, overrides)
    else:
        config = SelfTrainConfig.from_mapping(overrides, source="command line")
    if selector_options:
        config = config.replace(selector_options={**config.selector_options, **selector_options})
    with run_lock(Path(config.out)), Bars(quiet=quiet) as bars:
        result = run(config, progress=bars)
    print_rounds(result.report)
    click.echo(f"best round {result.best_round}: {result.best_model}; stopped: {result.stop_reason}")
    if note := report.best_round_note(result.report):
        click.echo(f"note: the delivered model is {note}")
    click.echo(f"report: {RunDir(result.out).report_md}")


def print_rounds(summary: dict) -> None:
    """The round-by-round table on stdout."""
    from xlc.report import COLUMNS, table_rows

    table = Table(title=f"xlc selftrain: selector {summary['config']['selector']}, "
                        f"classes {', '.join(summary['classes'])}")
    for name in COLUMNS:
        table.add_column(name, justify="right" if name != "per class" else "left")
    for row in table_rows(summary["rounds"]):
        table.add_row(*row)
    Console(width=200).print(table)


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
        Console(width=160).print(table)
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
@click.option("--output", "output_path", type=click.Path(path_type=Path), required=True,
              help="Scores as Parquet: one file, or with --engine ray a folder of parts.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--id-column", help="Column of unique ids to copy to the output.  [default: row number]")
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
@_fail_cleanly
def score(model_path: Path, input_path: Path, output_path: Path, quiet: bool, engine: str,
          ray_address: str | None, workers: int | None, num_gpus: float, **options: Any) -> None:
    """Score a table of texts with a trained model; resumable, in bounded memory.

    Output per row, in input order: id, label, confidence and p_<class> for every class.
    Null, empty or whitespace-only texts keep their row with null scores.
    """
    from xlc.progress import Bars
    from xlc.scoring import ScoreJob, score_file

    _setup_logging(quiet)
    job = ScoreJob(model=model_path, input=input_path, output=output_path, **options)
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
    counts = ", ".join(f"{k} {v}" for k, v in summary.per_class.items())
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
@_fail_cleanly
def export(model_path: Path, out_path: Path, optimize: str | None, int8: bool, overwrite: bool) -> None:
    """Export a trained model to ONNX (through Optimum), ready for `xlc score`.

    --out must be new, empty or an earlier export; a folder of other files needs --overwrite, and
    a folder with subfolders, the current folder or a home folder is never replaced.
    """
    from xlc import files, model, onnx, rundir

    _setup_logging(False)
    files.check_replaceable(out_path, "--out", overwrite, "export")  # before anything is loaded or written
    source = rundir.find_checkpoint(model_path)
    onnx.export(model.load(source), out_path, kind="export", overwrite=overwrite)
    if optimize:
        onnx.optimize(out_path, optimize)
    if int8:
        onnx.quantize_int8(out_path)
    click.echo(f"exported {source} to {out_path}" + (f" (optimised {optimize})" if optimize else "")
               + (" with model.int8.onnx" if int8 else ""))


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A run folder (its best model), best/, final/ or a folder from `xlc export`.")
@click.option("--data", "data_path", type=FILE, required=True,
              help="Labelled texts to evaluate on (Parquet, CSV, JSONL).")
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
    """Measure a trained model on labelled data: accuracy, macro-F1, per-class scores, confusion.

    With --ordinal, also the mean squared error of the wrong predictions (Dong & de Melo 2019, Table 2).
    """
    from xlc.evaluate import EvaluateJob, class_rows, evaluate as run, summary_rows

    _setup_logging(True)
    wanted = tuple(x.strip() for item in langs for x in item.split(",") if x.strip())
    result = run(EvaluateJob(model=model_path, data=data_path, langs=wanted, **options))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = Console(width=200)
    ordinal = "mse" in result
    overview = Table(title=f"xlc evaluate: {result['model']} on {result['data']}")
    for name in ("rows", "n", "accuracy", "macro-F1") + (("MSE", "MSE wrong") if ordinal else ()):
        overview.add_column(name, justify="left" if name == "rows" else "right")
    for row in summary_rows(result):
        overview.add_row(*row)
    console.print(overview)
    per_class = Table(title="per class")
    for name in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(name, justify="left" if name == "class" else "right")
    for row in class_rows(result):
        per_class.add_row(*row)
    console.print(per_class)
    confusion = Table(title="confusion matrix (rows: gold, columns: predicted)")
    confusion.add_column("gold \\ predicted")
    for name in result["classes"]:
        confusion.add_column(name, justify="right")
    for name, counts in zip(result["classes"], result["confusion"], strict=True):
        confusion.add_row(name, *(str(c) for c in counts))
    console.print(confusion)


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@_fail_cleanly
def report_command(run_dir: Path) -> None:
    """Redraw report.md and the PNG plots of a run folder from its report.json.

    Plots: accuracy per round and language (dev, test), pseudo-label precision per round, and
    the class distribution of the pseudo-labels added each round.
    """
    from xlc.report import render

    for path in render(run_dir):
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
