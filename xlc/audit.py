"""`xlc audit`: check a run's pseudo-labels with people, cheaply.

`sample` draws a stratified sample of a run's pseudo-labels (class x language x confidence band,
proportional allocation, at least one text from every stratum) and writes it for checking: a CSV
with an empty `gold` column to fill, and a Label Studio import (tasks with the pseudo-label as a
pre-annotation, plus the labeling config). `check` reads the filled CSV (or a Label Studio JSON
export of those tasks) and measures pseudo-label precision per class and language with 95% Wilson
intervals; the checked texts become labeled target-language data a next run can train on
(`xlc selftrain --extra-train`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import polars as pl

from xlc import data, files
from xlc.errors import XlcError
from xlc.rundir import RunDir

BANDS = ("low", "mid", "high")
"""Confidence bands: the run's pseudo-labels split at the tertiles of their confidence."""
SAMPLE_FILE, LABEL_STUDIO_FILE, LABEL_STUDIO_CONFIG, GOLD_FILE = (
    "audit.csv", "label_studio_tasks.json", "label_studio_config.xml", "checked_gold.csv")


def pseudo_labels(run_dir: Path) -> pl.DataFrame:
    """A finished run's pseudo-labels (pseudo_labels.parquet), refused with the fix when there are none."""
    path = RunDir(Path(run_dir)).pseudo_labels
    if not path.is_file():
        raise XlcError(f"{run_dir}: no pseudo_labels.parquet; pass the folder of a finished `xlc selftrain` run")
    frame = pl.read_parquet(path)
    if frame.height == 0:
        raise XlcError(f"{path}: the run took no pseudo-labels; there is nothing to audit")
    return frame


def sample(labels: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """About `n` pseudo-labels, stratified by class x language x confidence band, in random order."""
    if n < 1:
        raise XlcError(f"--n must be >= 1, got {n}")
    confidence = labels["confidence"].to_numpy()
    band = np.searchsorted(np.quantile(confidence, [1 / 3, 2 / 3]), confidence, side="right")
    labels = labels.with_columns(lang=pl.col("lang").fill_null(""), band=pl.Series(np.array(BANDS)[band]))
    strata = labels.group_by("label", "lang", "band", maintain_order=True).len().sort("label", "lang", "band")
    take = _allocate(strata["len"].to_numpy(), min(n, labels.height))
    rng = np.random.default_rng(seed)
    parts = []
    for (label, lang, band, _), k in zip(strata.iter_rows(), take, strict=True):
        rows = labels.filter((pl.col("label") == label) & (pl.col("lang") == lang) & (pl.col("band") == band))
        parts.append(rows[sorted(rng.choice(rows.height, size=int(k), replace=False).tolist())])
    chosen = pl.concat(parts)
    chosen = chosen[rng.permutation(chosen.height).tolist()]  # shown to people in random order
    return chosen.select(
        pl.int_range(pl.len()).alias("audit_id"), "id", "lang", "text", pl.col("label").alias("pseudo_label"),
        "confidence", "round", "band", pl.lit(None, pl.String).alias("gold"),
    )


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Texts per stratum: proportional to its size (largest remainders), at least one each."""
    if n <= len(sizes):  # too few for every stratum: the largest strata get one each
        take = np.zeros(len(sizes), dtype=int)
        take[np.argsort(-sizes, kind="stable")[:n]] = 1
        return take
    exact = 1 + (n - len(sizes)) * (sizes - 1) / max(1, (sizes - 1).sum())
    take = np.minimum(np.floor(exact).astype(int), sizes)
    for i in np.argsort(-(exact - take), kind="stable"):
        if take.sum() >= n:
            break
        if take[i] < sizes[i]:
            take[i] += 1
    return take


def write_sample(chosen: pl.DataFrame, out: Path, classes: Sequence[str]) -> list[Path]:
    """audit.csv, the Label Studio tasks and its labeling config, in `out` (made by xlc)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and files.marked_kind(out) != "audit":
        raise XlcError(f"--out {out}: exists and is not an earlier `xlc audit` folder; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    files.mark(out, "audit")
    csv = out / SAMPLE_FILE
    data.write_with(csv, chosen.write_csv)
    tasks = [{"data": {"text": r["text"], "audit_id": r["audit_id"], "lang": r["lang"]},
              "predictions": [{"model_version": f"xlc round {r['round']}", "score": r["confidence"],
                               "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                           "value": {"choices": [r["pseudo_label"]]}}]}]}
             for r in chosen.iter_rows(named=True)]
    files.write_json(out / LABEL_STUDIO_FILE, tasks)
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    config = (f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text" '
              f'choice="single" showInline="true">\n{choices}\n  </Choices>\n</View>\n')
    files.write_text(out / LABEL_STUDIO_CONFIG, config)
    return [csv, out / LABEL_STUDIO_FILE, out / LABEL_STUDIO_CONFIG]


def read_checked(path: Path, classes: Sequence[str]) -> pl.DataFrame:
    """The checked sample: audit.csv with `gold` filled in, or a Label Studio JSON export of its tasks.

    Rows without a gold label are left out (not checked yet); a gold label that is not a class is an error.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        checked = _from_label_studio(path)
    else:
        frame = data.read_table(path)
        data.require_columns(frame, f"--import {path}", ["audit_id", "lang", "text", "pseudo_label", "gold"])
        checked = frame.select("audit_id", pl.col("lang").cast(pl.String), "text", "pseudo_label",
                               pl.col("gold").cast(pl.String).str.strip_chars())
    checked = checked.filter(pl.col("gold").is_not_null() & (pl.col("gold") != ""))
    unknown = sorted(set(checked["gold"].to_list()) - set(classes))
    if unknown:
        raise XlcError(f"--import {path}: gold label(s) {unknown} are not classes of the run ({', '.join(classes)}); "
                       f"fix them")
    if checked.height == 0:
        raise XlcError(f"--import {path}: no row has a gold label yet; fill the gold column (or annotate the "
                       f"tasks) first")
    return checked.with_columns(pl.col("lang").fill_null(""))


def _from_label_studio(path: Path) -> pl.DataFrame:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XlcError(f"--import {path}: not a Label Studio JSON export ({exc})") from None
    rows = []
    for task in tasks if isinstance(tasks, list) else []:
        found = [v for a in task.get("annotations", []) if not a.get("was_cancelled")
                 for r in a.get("result", []) for v in r.get("value", {}).get("choices", [])]
        prediction = [v for p in task.get("predictions", []) for r in p.get("result", [])
                      for v in r.get("value", {}).get("choices", [])]
        fields = task.get("data", {})
        rows.append({"audit_id": fields.get("audit_id"), "lang": fields.get("lang"), "text": fields.get("text"),
                     "pseudo_label": prediction[0] if prediction else None, "gold": found[-1] if found else None})
    if not rows:
        raise XlcError(f"--import {path}: no tasks in it; export the project as JSON from Label Studio")
    return pl.DataFrame(rows, schema={"audit_id": pl.Int64, "lang": pl.String, "text": pl.String,
                                      "pseudo_label": pl.String, "gold": pl.String})


def precision(checked: pl.DataFrame) -> dict:
    """Pseudo-label precision overall, per class (pseudo-label) and per language, with 95% Wilson intervals."""
    correct = checked.with_columns(correct=pl.col("gold") == pl.col("pseudo_label"))

    def cell(rows: pl.DataFrame) -> dict:
        return _wilson(int(rows["correct"].sum()), rows.height)

    return {"all": cell(correct),
            "per_class": {k: cell(v) for (k,), v in sorted(correct.group_by("pseudo_label"), key=_key)},
            "per_lang": {k: cell(v) for (k,), v in sorted(correct.group_by("lang"), key=_key)}}


def _key(item: tuple) -> str:
    return str(item[0][0])


def _wilson(k: int, n: int) -> dict:
    from scipy.stats import binomtest

    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"correct": k, "checked": n, "precision": k / n, "low": float(interval.low), "high": float(interval.high)}


def write_gold(checked: pl.DataFrame, path: Path) -> Path:
    """The checked texts as labeled data (text, label, lang) for `xlc selftrain --extra-train`.

    An existing file is replaced only inside an `xlc audit` folder (an earlier import wrote it there).
    """
    path = Path(path)
    if path.exists() and files.marked_kind(path.parent) != "audit":
        raise XlcError(f"--gold-out {path} exists and xlc did not write it; choose another --gold-out")
    data.write_with(path, checked.select("text", pl.col("gold").alias("label"), "lang").write_csv)
    return path
