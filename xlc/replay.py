"""`xlc select`: replay a selector on a round's saved scored pool, without training or scoring.

Every round of a run keeps its scored pool (`RUN/round-NN/scored.parquet`). `load_round` rebuilds
what the loop gave that round's selector (`SelectionContext`: the run's classes, the labeled set's
counts per class, the round number, the round's confusion matrix on dev) from the run folder;
`replay` runs any installed selector on it through the same registry and checks as `xlc selftrain`;
`summarise` says what it took: counts per class and language, confidence ranges and, with the pool's
true labels, pseudo-label precision.
Nothing here imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from xlc import data, modeldir, selectors
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.rundir import ROUND_PREFIX, RoundDir, RunDir, sha256

NO_LANG = "-"
"""How a text without a language is counted (the pool had no --lang-column)."""
SCORED_COLUMNS = ("id", "text", "lang", "label", "confidence", "probs")
OUT_METADATA = {"made_by": "xlc select"}
"""Parquet key-value metadata of the files `xlc select --out` writes: only those are ever replaced."""


@dataclass(frozen=True)
class SavedRound:
    """A round's scored pool and what the loop gave its selector."""

    scored: Path
    run: RunDir
    folder: RoundDir
    config: SelfTrainConfig
    pool: pl.DataFrame
    context: selectors.SelectionContext


def find_round(scored: Path) -> tuple[RunDir, RoundDir]:
    """The run and round folders of `RUN/round-NN/scored.parquet`; an error for any other file."""
    if not scored.is_file():
        raise XlcError(f"--scored {scored}: file not found; pass a round's RUN/round-NN/scored.parquet")
    folder = RoundDir(scored.absolute().parent)
    run = RunDir(folder.path.parent)
    number = folder.path.name.removeprefix(ROUND_PREFIX)
    if not (folder.path.name.startswith(ROUND_PREFIX) and number.isdigit() and scored.name == folder.scored.name):
        raise XlcError(f"--scored {scored}: not a round's scored pool (RUN/round-NN/scored.parquet); "
                       f"xlc select replays the files that `xlc selftrain --out RUN` writes")
    if not run.config.is_file():
        raise XlcError(f"--scored {scored}: no {run.config.name} in {run.path}, so the run's settings and "
                       f"classes are unknown; replay a scored.parquet inside the run folder xlc wrote")
    return run, folder


def load_round(scored: Path) -> SavedRound:
    """The scored pool of `scored` and the `SelectionContext` its round's selector was given."""
    run, folder = find_round(scored)
    config = SelfTrainConfig.from_toml(run.config)
    classes = run_classes(run, folder)
    try:
        pool = pl.read_parquet(scored)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise data.read_error(scored, exc) from exc
    data.require_columns(pool, f"--scored {scored}", SCORED_COLUMNS)
    width = pool.schema["probs"].size if isinstance(pool.schema["probs"], pl.Array) else None
    if width != len(classes):
        raise XlcError(f"--scored {scored}: its probs column does not hold one probability per class of the "
                       f"run ({len(classes)}); the file is not this run's scored pool")
    counts = labeled_counts(run, folder, config, classes)
    return SavedRound(scored, run, folder, config, pool,
                      selectors.SelectionContext(classes, counts, folder.number, dev_confusion(folder)))


def run_classes(run: RunDir, folder: RoundDir) -> tuple[str, ...]:
    """The run's classes, in `probs` order: the round's ONNX model's, else report.json's."""
    if (folder.onnx / modeldir.META_FILE).is_file():
        return tuple(modeldir.read_meta(folder.onnx)["classes"])
    if run.report.is_file():
        return tuple(json.loads(run.report.read_text())["classes"])
    raise XlcError(f"{folder.path}: no onnx/{modeldir.META_FILE} and no {run.report.name} in {run.path}, so the "
                   f"run's classes are unknown; replay a round whose onnx/ folder is still there")


def _record(folder: RoundDir) -> dict:
    return json.loads(folder.metrics.read_text()) if folder.closed else {}


def dev_confusion(folder: RoundDir) -> tuple[tuple[int, ...], ...] | None:
    """The round's confusion matrix on dev, as the loop gave it to the selector: from eval.json (written
    before selection), else metrics.json; None when neither records it."""
    evaluated = json.loads(folder.evaluation.read_text()) if folder.evaluation.is_file() else _record(folder)
    return selectors.dev_confusion(evaluated)


def labeled_counts(run: RunDir, folder: RoundDir, config: SelfTrainConfig,
                   classes: tuple[str, ...]) -> dict[str, int]:
    """Texts per class in the labeled set that round `folder` trained on, as the loop counted them.

    From the latest round up to this one whose metrics.json records `labeled_per_class`, plus the
    pseudo-labels of the rounds after it (their selected.parquet); a run made before xlc recorded
    it starts from the run's training file (config.toml), checked against run.json.
    """
    start, counts = 0, None
    for number in range(folder.number, -1, -1):
        recorded = _record(run.round(number)).get("labeled_per_class")
        if recorded:
            start, counts = number, {c: int(recorded.get(c, 0)) for c in classes}
            break
    if counts is None:
        counts = selectors.labeled_counts(train_labels(run, config), classes)
    for rnd in (run.round(n) for n in range(start, folder.number)):
        if not rnd.selected.is_file():
            raise XlcError(f"{rnd.selected}: missing, so the labeled set of round {folder.number} is unknown; "
                           f"the run folder is incomplete")
        taken = selectors.labeled_counts(pl.read_parquet(rnd.selected, columns=["label"])["label"], classes)
        counts = {c: counts[c] + taken[c] for c in classes}
    expected = _record(folder).get("labeled")
    if expected is not None and sum(counts.values()) != expected:
        raise XlcError(f"{folder.metrics}: round {folder.number} trained on {expected} texts, but the run folder "
                       f"accounts for {sum(counts.values())}; the run's files changed since it ran")
    return counts


def train_labels(run: RunDir, config: SelfTrainConfig) -> pl.Series:
    """The gold labels of the run's training set (its file must be unchanged since the run)."""
    if config.uses_demo:
        return data.load_demo(config.demo_langs).train["label"]
    path = Path(str(config.train))
    why = (f"{run.path}: its metrics.json files do not record labeled_per_class (a run made before xlc "
           f"recorded it), so the labeled counts come from the run's training file {path}")
    if not path.is_file():
        raise XlcError(f"{why}, which is not found from here; run xlc select from the folder the run was "
                       f"started in")
    recorded = json.loads(run.run_file.read_text()).get("inputs", {}).get("train") if run.run_file.is_file() else None
    if recorded != sha256(path):
        raise XlcError(f"{why}, which changed since the run (its SHA-256 differs from run.json's); restore it")
    cols = data.Columns(config.text_column, config.label_column, config.id_column, config.lang_column)
    return data.normalise(data.read_table(path), f"--train {path}", cols, labeled=True)["label"]


def replay(saved: SavedRound, name: str, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Selector `name` on the saved pool: the rows it takes (checked) and its resolved options."""
    prepared = selectors.prepare(name, options)
    return prepared(saved.pool, saved.context), dict(prepared.options)


def read_gold(path: Path, saved: SavedRound) -> pl.DataFrame:
    """The pool's true labels as `--pool-gold` reads them (the run's --id-column and --label-column).

    Without an id column the file has one row per row of the run's whole pool (round 0's), in order.
    """
    first = saved.run.round(0).scored
    pool = pl.read_parquet(first, columns=["id"]) if first.is_file() else saved.pool.select("id")
    cols = data.Columns(saved.config.text_column, saved.config.label_column, saved.config.id_column)
    return data.read_pool_gold(path, cols, pool, saved.context.classes, option="--gold")


def _langs(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("lang").fill_null(NO_LANG))


def _confidence(values: pl.Series) -> dict[str, float] | None:
    if values.len() == 0:
        return None
    return {"min": round(float(values.min()), 4),  # type: ignore[arg-type]
            "median": round(float(values.median()), 4),  # type: ignore[arg-type]
            "max": round(float(values.max()), 4)}  # type: ignore[arg-type]


def summarise(chosen: pl.DataFrame, pool: pl.DataFrame, classes: tuple[str, ...],
              gold: pl.DataFrame | None = None) -> dict[str, Any]:
    """What a selection took: per class (per language, confidence range), per language, in total.

    With `gold` (id, label), pseudo-label precision per class, per language and overall
    (`metrics.pseudo_label_precision`: None where no taken text has a gold label).
    """
    chosen, langs = _langs(chosen), sorted(_langs(pool)["lang"].unique().to_list())

    def precision(rows: pl.DataFrame) -> float | None:
        if gold is None:
            return None
        from xlc.metrics import pseudo_label_precision  # scikit-learn: imported only when needed

        found = pseudo_label_precision(rows, gold)
        return None if found is None else round(found, 4)

    per_class = {}
    for c in classes:
        rows = chosen.filter(pl.col("label") == c)
        per_class[c] = {"taken": rows.height,
                        "per_lang": {lang: rows.filter(pl.col("lang") == lang).height for lang in langs},
                        "confidence": _confidence(rows["confidence"]), "precision": precision(rows)}
    per_lang = {lang: {"taken": (rows := chosen.filter(pl.col("lang") == lang)).height, "precision": precision(rows)}
                for lang in langs}
    return {"classes": list(classes), "langs": langs, "pool": pool.height, "taken": chosen.height,
            "per_class": per_class, "per_lang": per_lang, "confidence": _confidence(chosen["confidence"]),
            "precision": precision(chosen)}


def run_selection(saved: SavedRound, chosen: pl.DataFrame) -> dict[str, Any] | None:
    """What the run's own selector took from this pool, and how many of those `chosen` also takes."""
    if not saved.folder.selected.is_file():
        return None
    taken = pl.read_parquet(saved.folder.selected, columns=["id"])
    return {"selector": saved.config.selector, "options": dict(saved.config.selector_options),
            "taken": taken.height, "overlap": chosen.join(taken, on="id", how="semi").height}


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The class x language table as strings: one row per class, then `all` (and `precision` with gold)."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def conf(found: Mapping[str, float] | None) -> list[str]:
        return [fmt(found[k]) if found else "-" for k in ("min", "median", "max")]

    gold = result.get("gold") is not None
    rows = []
    for c, facts in result["per_class"].items():
        rows.append([c, *(str(facts["per_lang"][lang]) for lang in result["langs"]), str(facts["taken"]),
                     *conf(facts["confidence"]), *([fmt(facts["precision"])] if gold else [])])
    per_lang = result["per_lang"]
    rows.append(["all", *(str(per_lang[lang]["taken"]) for lang in result["langs"]), str(result["taken"]),
                 *conf(result["confidence"]), *([fmt(result["precision"])] if gold else [])])
    if gold:
        rows.append(["precision", *(fmt(per_lang[lang]["precision"]) for lang in result["langs"]),
                     fmt(result["precision"]), "", "", "", ""])
    return rows


def table_columns(result: Mapping[str, Any]) -> list[str]:
    """The headers of `table_rows`."""
    gold = ["precision"] if result.get("gold") is not None else []
    return ["class", *result["langs"], "total", "conf min", "conf median", "conf max", *gold]


# ---- the chosen rows as a file ---------------------------------------------------------------------

def check_out(path: Path, overwrite: bool) -> None:
    """Refuse an --out that is not a new *.parquet, or an earlier `xlc select --out` with `overwrite`."""
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise XlcError(f"--out {path}: the chosen rows are written as Parquet; name it *.parquet")
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not path.is_file() or not written_by_select(path):
        raise XlcError(f"--out {path}: exists and was not written by `xlc select`; xlc never replaces such a "
                       f"file: choose another path")
    if not overwrite:
        raise XlcError(f"--out {path} exists; pass --overwrite to replace it")


def written_by_select(path: Path) -> bool:
    """Whether the Parquet file `path` carries the metadata `xlc select --out` writes."""
    try:
        found = pl.read_parquet_metadata(path)
    except (pl.exceptions.PolarsError, OSError):
        return False
    return all(found.get(k) == v for k, v in OUT_METADATA.items())


def write_chosen(chosen: pl.DataFrame, path: Path, round_number: int, selector: str) -> None:
    """Write the chosen rows atomically as `selected.parquet` holds them (with probs), marked as xlc's."""
    frame = chosen.select(
        "id", "text", "lang", "label", "confidence", "probs",
        pl.lit(round_number, pl.Int32).alias("round"), pl.lit(selector).alias("selector"),
    )
    data.write_with(path, lambda tmp: frame.write_parquet(tmp, metadata=OUT_METADATA))
