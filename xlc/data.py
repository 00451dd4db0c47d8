"""Read labeled and unlabeled text tables (CSV, Parquet, JSONL) into checked Polars frames."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from xlc import files
from xlc.errors import XlcError, first_line

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEMO_FILE = "sib200_mldoc8.parquet"
DEMO_SOURCE = "eng_Latn"
DEMO_TARGETS = ("deu_Latn", "zho_Hans")
DEMO_LANGS = ("deu_Latn", "fra_Latn", "spa_Latn", "ita_Latn", "rus_Cyrl", "jpn_Jpan", "zho_Hans")
DEV_SHARE = 0.1
"""Without --dev, the share of the labeled set (per class) held out as the dev set."""


def table_format(path: Path) -> str:
    """The reader for a file, chosen by its extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise XlcError(
            f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return fmt


def scan_table(path: Path) -> pl.LazyFrame:
    """A lazy scan of a table file; nothing is read until collected."""
    path = Path(path)
    if not path.is_file():
        raise XlcError(f"{path}: file not found")
    fmt = table_format(path)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=10_000)
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    return pl.scan_csv(path, separator=separator, infer_schema_length=10_000)


def read_table(path: Path) -> pl.DataFrame:
    """Read a whole table file, turning parser failures into one-line errors."""
    try:
        return scan_table(path).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise read_error(path, exc) from exc


def read_error(path: Path, exc: BaseException) -> XlcError:
    """A one-line error for a table file its parser refused (broken CSV or JSON, invalid UTF-8, ...)."""
    reason = "the file is empty" if isinstance(exc, pl.exceptions.NoDataError) else first_line(exc)
    return XlcError(f"{path}: cannot be read as {table_format(Path(path))}: {reason}; fix the file or "
                    f"export it again (UTF-8 text)")


def require_columns(frame: pl.DataFrame | pl.LazyFrame, source: str, columns: Sequence[str]) -> None:
    """Fail with the available columns when any of `columns` is missing."""
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    missing = [c for c in columns if c not in names]
    if missing:
        raise XlcError(
            f"{source}: column {missing[0]!r} not found (columns: {', '.join(names)}); "
            f"name the right one with --text-column / --label-column / --id-column"
        )


def texts_from(values: Any, source: str = "texts", missing_ok: bool = False, item: str = "text") -> list[Any]:
    """A list of texts from a list, tuple, NumPy array, pandas or Polars Series or Arrow array.

    The one place where in-memory texts are taken in (`TextClassifier`, `xlc.score`, `xlc.selftrain`);
    pandas and pyarrow are never imported, only recognised by their methods. Every item must be a
    string; `missing_ok` also lets None (and pandas' NaN) through as None, for the callers that
    apply the empty-text rule themselves. `item` names an element in messages ("label" for labels).
    """
    if isinstance(values, (str, bytes)):
        raise XlcError(f"{source}: pass a list of texts, not a single string")
    if isinstance(values, pl.DataFrame) or hasattr(values, "columns") or hasattr(values, "column_names"):
        raise XlcError(f"{source}: pass the text column (e.g. frame['text']), not a whole {type(values).__name__}")
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise XlcError(f"{source}: pass a 1-D array of texts, got an array of shape {values.shape}")
    if isinstance(values, (pl.Series, np.ndarray)):
        items = values.tolist() if isinstance(values, np.ndarray) else values.to_list()
    elif hasattr(values, "to_pylist"):  # pyarrow Array or ChunkedArray
        items = values.to_pylist()
    elif hasattr(values, "to_list") and hasattr(values, "dtype"):  # pandas Series or Index
        items = values.to_list()
    elif isinstance(values, Iterable) and not isinstance(values, Mapping):
        items = list(values)
    else:
        raise XlcError(f"{source}: expected a list, tuple, array or Series of texts, got a {type(values).__name__}")
    for i, text in enumerate(items):
        if isinstance(text, str):
            continue
        if text is None or (isinstance(text, float) and text != text):  # pandas writes a missing text as NaN
            if missing_ok:
                items[i] = None
                continue
            raise XlcError(f"{source}: {item} #{i} is missing (None); every {item} must be a string")
        raise XlcError(f"{source}: {item} #{i} is a {type(text).__name__}, not a string; pass strings")
    return items


def check_texts(frame: pl.DataFrame, source: str, column: str = "text") -> None:
    """Reject null, empty or whitespace-only texts, naming the first offending rows."""
    texts = frame[column]
    if texts.dtype != pl.String:
        raise XlcError(f"{source}: column {column!r} holds {texts.dtype}, not text")
    bad = frame.with_row_index("_row").filter(
        pl.col(column).is_null() | (pl.col(column).str.strip_chars().str.len_chars() == 0)
    )["_row"]
    if len(bad):
        rows = ", ".join(str(r + 1) for r in bad.head(5).to_list())
        raise XlcError(
            f"{source}: {len(bad)} empty or missing text(s) in column {column!r} "
            f"(data rows {rows}{', ...' if len(bad) > 5 else ''}); remove or fill them"
        )


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    label: str = "label"
    id: str | None = None
    lang: str | None = "lang"


@dataclass(frozen=True)
class RunData:
    """Everything a self-training run reads, normalised.

    `train`, `dev`, `test`: text, label (string), lang. `pool`: id, text, lang.
    `pool_gold`: id, label, only when the unlabeled file carried labels; it is used
    for reporting pseudo-label precision and never for training or selection.
    """

    train: pl.DataFrame
    pool: pl.DataFrame
    dev: pl.DataFrame
    test: pl.DataFrame | None
    pool_gold: pl.DataFrame | None
    classes: tuple[str, ...]
    dev_held_out: bool = False
    """True when `dev` was held out from the labeled training set (no --dev was given)."""


def normalise(frame: pl.DataFrame, source: str, cols: Columns, labeled: bool) -> pl.DataFrame:
    """Rename to id/text/label/lang, checked; ids come from `cols.id` in the pool, row numbers elsewhere."""
    if labeled:
        cols = Columns(cols.text, cols.label, None, cols.lang)
    needed = [cols.text] + ([cols.label] if labeled else []) + ([cols.id] if cols.id else [])
    require_columns(frame, source, needed)
    check_texts(frame, source, cols.text)
    exprs = [pl.col(cols.text).alias("text")]
    if cols.label in frame.columns:
        label = pl.col(cols.label)
        missing = label.is_null() | (label.is_nan() if frame[cols.label].dtype.is_float() else False)
        if labeled:  # a pool's labels are optional gold labels: missing ones only shrink the precision
            _refuse_rows(frame, missing, f"{source}: missing label (null or NaN) in column {cols.label!r}")
        exprs.append(pl.when(~missing).then(label.cast(pl.String)).alias("label"))
    exprs.append(pl.col(cols.lang).cast(pl.String).alias("lang") if cols.lang in frame.columns
                 else pl.lit(None, pl.String).alias("lang"))
    if cols.id:
        _refuse_rows(frame, pl.col(cols.id).is_null(), f"{source}: missing id in column {cols.id!r}")
        exprs.insert(0, pl.col(cols.id).alias("id"))
    else:
        exprs.insert(0, pl.int_range(pl.len(), dtype=pl.Int64).alias("id"))
    out = frame.select(exprs)
    dupes = out.filter(pl.col("id").is_duplicated())["id"]
    if len(dupes):
        raise XlcError(f"{source}: duplicate id {dupes[0]!r} in column {cols.id!r}; ids must be unique")
    return out


def _refuse_rows(frame: pl.DataFrame, bad: pl.Expr, problem: str) -> None:
    """Raise `problem` naming the first data rows (1-based) where `bad` holds."""
    rows = frame.select(pl.arg_where(bad))[:, 0]
    if len(rows):
        shown = ", ".join(str(r + 1) for r in rows.head(5).to_list())
        raise XlcError(f"{problem} (data row{'s' if len(rows) > 1 else ''} {shown}"
                       f"{', ...' if len(rows) > 5 else ''}); fill or remove them")


def check_classes(train: pl.DataFrame, others: dict[str, pl.DataFrame]) -> tuple[str, ...]:
    """The sorted class names of `train`; every labeled frame must use only these."""
    classes = tuple(sorted(train["label"].unique().to_list()))
    if len(classes) < 2:
        raise XlcError(
            f"the training set has {len(classes)} class(es) {list(classes)}; a classifier needs at least 2"
        )
    for source, frame in others.items():
        unknown = sorted(set(frame["label"].unique().to_list()) - set(classes))
        if unknown:
            raise XlcError(
                f"{source}: label(s) {unknown} do not occur in the training set (classes: "
                f"{list(classes)}); fix the labels or add training examples for them"
            )
    return classes


def split_dev(train: pl.DataFrame, share: float = DEV_SHARE, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out `share` of each class of `train` (at least one text of every class with two or more)
    as a dev set, chosen at random with `seed`; both parts keep `train`'s row order."""
    rng = np.random.default_rng(seed)
    labels = train["label"].to_numpy()
    held = np.zeros(train.height, dtype=bool)
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        n = min(len(rows) - 1, max(1, round(share * len(rows))))
        held[rng.choice(rows, size=n, replace=False)] = True
    mask = pl.Series(held)
    return train.filter(~mask), train.filter(mask)


def load_files(
    train: Path, unlabeled: Path, dev: Path | None, test: Path | None, cols: Columns, pool_gold: Path | None = None,
    dev_share: float = DEV_SHARE, seed: int = 0,
) -> RunData:
    """Read and check the user's files; `pool_gold` holds the pool's true labels (precision only).

    Without `dev`, `dev_share` of each class of `train` is held out as the dev set (see `split_dev`).
    """
    frames = {}
    for role, path, labeled in (("train", train, True), ("dev", dev, True), ("test", test, True),
                                 ("unlabeled", unlabeled, False)):
        if path is None:
            continue
        frame = read_table(Path(path))
        if frame.height == 0:
            raise XlcError(f"--{role} {path}: the file has no rows")
        frames[role] = normalise(frame, f"--{role} {path}", cols, labeled)
    if dev is None:
        frames["train"], frames["dev"] = split_dev(frames["train"], dev_share, seed)
        if frames["dev"].height == 0:
            raise XlcError(f"--train {train}: too few texts to hold out a dev set ({dev_share:.0%} of each class, "
                           f"at least one of a class with two or more); add training texts or pass --dev")
    run = _assemble(frames, {r: str(p) for r, p in
                             (("dev", dev), ("test", test)) if p is not None}, dev_held_out=dev is None)
    if pool_gold is not None:
        run = dataclasses.replace(run, pool_gold=read_pool_gold(Path(pool_gold), cols, frames["unlabeled"],
                                                                run.classes))
    return run


def add_train(run: RunData, path: Path, cols: Columns) -> RunData:
    """`run` with the labeled rows of `path` (--extra-train) added to its training set."""
    source = f"--extra-train {path}"
    frame = read_table(path)
    if frame.height == 0:
        raise XlcError(f"{source}: the file has no rows")
    extra = normalise(frame, source, cols, labeled=True)
    check_classes(run.train, {source: extra})
    return dataclasses.replace(run, train=pl.concat([run.train, extra.select("text", "label", "lang")],
                                                     how="vertical_relaxed"))


def read_pool_gold(path: Path, cols: Columns, pool: pl.DataFrame, classes: Sequence[str],
                   option: str = "--pool-gold") -> pl.DataFrame:
    """The pool's true labels from a file of their own: id (as in the pool) and label.

    Without `--id-column` the pool's ids are its row numbers, so the file must then have one
    row per pool row, in the same order. Missing labels are allowed (they only shrink the
    precision's sample); unknown ids and classes are errors, named with `option`.
    """
    source = f"{option} {path}"
    frame = read_table(path)
    require_columns(frame, source, [cols.label] + ([cols.id] if cols.id else []))
    if cols.id:
        ids = pl.col(cols.id)
    elif frame.height == pool.height:
        ids = pl.int_range(pl.len(), dtype=pl.Int64)
    else:
        raise XlcError(f"{source}: {frame.height} rows for a pool of {pool.height}; without --id-column the "
                       f"file must have one row per pool row, in the pool's order (or pass --id-column)")
    label = pl.col(cols.label)
    missing = label.is_null() | (label.is_nan() if frame[cols.label].dtype.is_float() else False)
    gold = frame.select(ids.alias("id"), pl.when(~missing).then(label.cast(pl.String)).alias("label"))
    gold = gold.drop_nulls("label")
    if gold["id"].dtype != pool["id"].dtype:
        raise XlcError(f"{source}: ids of type {gold['id'].dtype}, the pool's are {pool['id'].dtype}")
    if gold["id"].is_duplicated().any():
        raise XlcError(f"{source}: duplicate id {gold.filter(pl.col('id').is_duplicated())['id'][0]!r}")
    stray = gold.join(pool.select("id"), on="id", how="anti")
    if stray.height:
        raise XlcError(f"{source}: id {stray['id'][0]!r} is not in the pool; the file must use the pool's ids")
    unknown = sorted(set(gold["label"].unique().to_list()) - set(classes))
    if unknown:
        raise XlcError(f"{source}: label(s) {unknown} do not occur in the training set (classes: {list(classes)})")
    return gold


def _assemble(frames: dict[str, pl.DataFrame], names: dict[str, str], dev_held_out: bool = False) -> RunData:
    pool = frames["unlabeled"]
    gold = pool.select("id", "label").drop_nulls("label") if "label" in pool.columns else None
    labeled = {f"--{role} {names[role]}": frames[role] for role in ("dev", "test") if role in names}
    classes = check_classes(frames["train"], labeled)
    return RunData(
        train=frames["train"].select("text", "label", "lang"),
        pool=pool.select("id", "text", "lang"),
        dev=frames["dev"].select("text", "label", "lang"),
        test=frames["test"].select("text", "label", "lang") if "test" in frames else None,
        pool_gold=gold,
        classes=classes,
        dev_held_out=dev_held_out,
    )


def demo_path() -> Path:
    return Path(str(resources.files("xlc") / "demo" / DEMO_FILE))


def load_demo(targets: Sequence[str] = DEMO_TARGETS) -> RunData:
    """The bundled SIB-200 demo: English train -> `targets` pool, dev and test."""
    unknown = sorted(set(targets) - set(DEMO_LANGS))
    if unknown or not targets:
        raise XlcError(f"--demo-langs: unknown language(s) {unknown}; choose from {', '.join(DEMO_LANGS)}")
    frame = pl.read_parquet(demo_path())
    target = frame.filter(pl.col("lang").is_in(list(targets)))

    def part(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))

    frames = {
        "train": part(frame.filter((pl.col("lang") == DEMO_SOURCE) & (pl.col("split") == "train"))),
        "unlabeled": part(target.filter(pl.col("split") == "train")),
        "dev": part(target.filter(pl.col("split") == "dev")),
        "test": part(target.filter(pl.col("split") == "test")),
    }
    return _assemble(frames, {"dev": f"demo {DEMO_FILE}", "test": f"demo {DEMO_FILE}"})


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write a Parquet file atomically."""
    write_with(path, frame.write_parquet)


def write_with(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` atomically: `write` (`write_parquet`, `sink_parquet`, ...) gets the temp path.

    A failed write (a full disk, say) is a one-line error naming `path`.
    """
    try:
        with files.atomic_file(path) as tmp:
            write(tmp)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise files.write_error(path, exc) from None
