"""The Python API: the same runs as the command line, from a notebook or a pipeline.

    import xlc
    run = xlc.selftrain(train=en_df, unlabeled=de_texts, dev=de_dev, selector="balanced",
                        selector_options={"kt": 40}, out="runs/de")
    run.rounds                      # per-round metrics, a Polars frame
    clf = xlc.load(run.best_model)  # predict / predict_proba through ONNX Runtime
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import polars as pl

from xlc import data, files, inference
from xlc.config import SelfTrainConfig, resolve
from xlc.errors import XlcError
from xlc.rundir import RunDir, find_model, has_work, run_lock
from xlc.scoring import Scorer

if TYPE_CHECKING:  # the training loop imports torch; load() and score() need only ONNX Runtime
    from xlc.loop import Progress, RunResult

Table = Union[str, Path, pl.DataFrame, Any]  # noqa: UP007 (`X | Any` fails at run time on 3.10)
"""A file path, a Polars frame or a pandas frame (converted); the pool may also be a list of texts."""


def _as_frame(value: Any, role: str) -> pl.DataFrame | None:
    if isinstance(value, pl.DataFrame):
        return value
    if type(value).__module__.startswith("pandas"):
        return pl.from_pandas(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if role != "unlabeled":
            raise XlcError(f"{role}: a list of texts has no labels; pass a frame with text and label columns")
        values = list(value)
        bad = next((i for i, t in enumerate(values) if t is not None and not isinstance(t, str)), None)
        if bad is not None:
            raise XlcError(f"{role}: text #{bad} is a {type(values[bad]).__name__}, not a string; pass strings")
        return pl.DataFrame({"text": values}, schema={"text": pl.String})
    return None


def selftrain(
    train: Table | None = None,
    unlabeled: Table | Sequence[str] | None = None,
    dev: Table | None = None,
    test: Table | None = None,
    *,
    selector: str | None = None,
    selector_options: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    config: str | Path | SelfTrainConfig | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> RunResult:
    """Self-train a classifier; returns the run's rounds, pseudo-labels and model paths.

    Data are paths or frames (in-memory data is written to `out/inputs/` so that
    `out/config.toml` reproduces the run). No data at all runs the bundled demo.
    `settings` are any other `SelfTrainConfig` fields (epochs=3, model="path", seed=1, ...).
    `config` is a TOML file or a `SelfTrainConfig`; arguments given here override it.
    Defaults are those of `SelfTrainConfig` (selector "balanced", out "runs/xlc").
    """
    values: dict[str, Any] = dict(settings)
    if selector is not None:
        values["selector"] = selector
    if selector_options is not None:
        values["selector_options"] = dict(selector_options)
    if out is not None:
        values["out"] = str(out)
    run_dir = RunDir(Path(values.get("out") or resolve({}, config).out))  # out as given or configured
    frames: dict[str, pl.DataFrame] = {}
    inputs = {"train": train, "unlabeled": unlabeled, "dev": dev, "test": test}
    for role, value in inputs.items():
        frame = _as_frame(value, role)
        if frame is not None:
            frames[role] = frame
            values[role] = str(run_dir.input(role))
        elif value is not None:
            values[role] = str(value)
    resolved = resolve(values, config, source="xlc.selftrain()")
    from xlc.loop import check_model, run

    check_model(resolved)  # before the run folder is made: a bad model leaves nothing behind
    with run_lock(run_dir.path) as unfinished:  # the settings and the folder are checked before any write
        _save_inputs(frames, run_dir, unfinished if unfinished is None or has_work(run_dir.path) else None)
        return run(resolved, progress=progress)


def _save_inputs(frames: Mapping[str, pl.DataFrame], run_dir: RunDir, unfinished: dict | None) -> None:
    """Write in-memory data to the run folder's inputs/ as Parquet.

    When the run folder holds an unfinished run (`unfinished`: its fingerprint), its saved
    inputs are never rewritten: the data must be byte for byte the run's own, or it is refused.
    """
    for role, frame in frames.items():
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        blob, path = buffer.getvalue(), run_dir.input(role)
        if unfinished is not None:
            same = (unfinished["inputs"].get(role) == hashlib.sha256(blob).hexdigest()
                    and unfinished["settings"].get(role) in (str(path), os.path.abspath(path)))
            if not same:
                raise XlcError(
                    f"--out {run_dir.path}: holds an unfinished run made with different {role} data; resume "
                    f"it with the same data (xlc selftrain --resume {run_dir.path}) or choose another folder")
            if path.is_file():
                continue
        try:
            run_dir.inputs.mkdir(exist_ok=True)
            files.write_bytes(path, blob)
        except OSError as exc:
            raise files.write_error(path, exc) from None


class TextClassifier:
    """A trained xlc model behind ONNX Runtime, in the spirit of scikit-learn.

    max_length None: the length the model was trained with (`inference.resolve_max_length`).
    """

    def __init__(self, path: str | Path, threads: int | None = None, provider: str = "cpu",
                 batch_size: int = inference.BATCH_SIZE, max_length: int | None = None) -> None:
        inference.check("xlc.load", flags=False, batch_size=batch_size, threads=threads, max_length=max_length)
        self.path = find_model(Path(path))
        self.scorer = Scorer.open(self.path, threads=threads, provider=provider)
        self.batch_size = batch_size
        self.max_length = self.scorer.max_length_for(max_length)

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.scorer.classes, dtype=object)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one row per text, columns in `classes_` order."""
        return self.scorer.probabilities(_texts(texts), self.batch_size, self.max_length)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def score(self, texts: Sequence[str]) -> pl.DataFrame:
        """text, label, confidence and probs for each text, in input order."""
        return self.scorer.score(pl.DataFrame({"text": _texts(texts)}, schema={"text": pl.String}),
                                 self.batch_size, self.max_length)

    def __repr__(self) -> str:
        return f"TextClassifier({str(self.path)!r}, classes={list(self.scorer.classes)})"


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise XlcError("pass a list of texts, not a single string")
    values = list(texts)
    bad = [i for i, t in enumerate(values) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise XlcError(f"text #{bad[0]} is empty or not a string; every text must be non-empty")
    return values


def load(path: str | Path, **options: Any) -> TextClassifier:
    """Open a trained model: a run folder (its best model), `best/`, `final/` or `round-NN/onnx`."""
    return TextClassifier(path, **options)


def score(model: str | Path | TextClassifier, texts: Table | Sequence[str], *,
          text_column: str = "text", **options: Any) -> pl.DataFrame:
    """Score texts (a list, a frame or a file) with a trained model; a Polars frame back.

    The input's columns are kept (an existing `label` column is renamed `gold`) and
    `label`, `confidence` and `probs` are added, in input order.
    """
    clf = model if isinstance(model, TextClassifier) else load(model, **options)
    frame = _as_frame(texts, "unlabeled")
    if frame is None:
        frame = data.read_table(Path(texts))
    data.require_columns(frame, "texts", [text_column])
    data.check_texts(frame, "texts", text_column)
    if text_column != "text" and "text" in frame.columns:
        raise XlcError(f"texts: has a 'text' column besides text_column={text_column!r}; drop or rename one")
    if "label" in frame.columns and "gold" in frame.columns:
        raise XlcError("texts: has both 'label' and 'gold' columns, and xlc.score keeps an input 'label' as "
                       "'gold'; drop or rename one")
    if "label" in frame.columns:  # keep a gold label column beside the prediction
        frame = frame.rename({"label": "gold"})
    scored = clf.scorer.score(frame.rename({text_column: "text"}) if text_column != "text" else frame,
                              clf.batch_size, clf.max_length)
    return scored.rename({"text": text_column}) if text_column != "text" else scored
