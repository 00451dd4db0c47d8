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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin

from xlc import data, files, inference
from xlc.config import SelfTrainConfig, resolve
from xlc.errors import XlcError
from xlc.rundir import RunDir, find_model, has_work, run_lock
from xlc.scoring import Scorer, columns

if TYPE_CHECKING:  # the training loop imports torch; load() and score() need only ONNX Runtime
    from xlc.loop import Progress, RunResult

Table = Union[str, Path, pl.DataFrame, Any]  # noqa: UP007 (`X | Any` fails at run time on 3.10)
"""A file path, a Polars frame or a pandas frame (converted); the pool may also be a list of texts."""


def _as_frame(value: Any, role: str, texts_ok: bool) -> pl.DataFrame | None:
    """`value` as a frame: a Polars, pandas or Arrow table as it is, texts (`data.texts_from`, when
    `texts_ok`) as a `text` column; None for a file path (and for None)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return None
    if isinstance(value, pl.DataFrame):
        return value
    module = type(value).__module__
    if module.startswith("pandas") and hasattr(value, "columns"):  # pandas is never imported here
        return pl.from_pandas(value)
    if module.startswith("pyarrow") and hasattr(value, "column_names"):  # an Arrow Table or RecordBatch
        return pl.DataFrame(pl.from_arrow(value))
    if not texts_ok:
        raise XlcError(f"{role}: a list of texts has no labels; pass a frame with text and label columns")
    return pl.DataFrame({"text": data.texts_from(value, role, missing_ok=True)}, schema={"text": pl.String})


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
        frame = _as_frame(value, role, texts_ok=role == "unlabeled")
        if frame is not None:
            frames[role] = frame
            values[role] = str(run_dir.input(role))
        elif value is not None:
            values[role] = str(value)
    resolved = resolve(values, config, source="xlc.selftrain()")
    from xlc.loop import check_model, finished, load_result, run

    if finished(resolved) and all(_blob(frame) == run_dir.input(role).read_bytes() for role, frame in frames.items()):
        return load_result(run_dir.path)  # the same run, finished before (e.g. a notebook cell run again)

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
        blob, path = _blob(frame), run_dir.input(role)
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


def _blob(frame: pl.DataFrame) -> bytes:
    """In-memory data as the Parquet bytes saved in a run's inputs/."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


class TextClassifier(ClassifierMixin, BaseEstimator):
    """A trained xlc model behind ONNX Runtime, a scikit-learn classifier.

    `predict`, `predict_proba`, `score(X, y)` (accuracy), `classes_`, `get_params`/`set_params`
    and `sklearn.base.clone` work as for any scikit-learn classifier; X is a list, tuple, NumPy
    array, pandas or Polars Series or Arrow array of texts. It is trained already: training is
    `xlc.selftrain`, so `fit` refuses. `score_frame(X)` gives the texts with `xlc.score`'s
    prediction columns (label, confidence, p_<class>).

    The constructor's arguments are kept as given (`path` as passed, `max_length` None when not
    given); `model_dir` is the folder found (a run folder's best/), `max_length_` the length it
    scores at: the one given, else the length the model was trained with
    (`inference.resolve_max_length`).
    """

    def __init__(self, path: str | Path, threads: int | None = None, provider: str = "cpu",
                 batch_size: int = inference.BATCH_SIZE, max_length: int | None = None,
                 int8: bool = False) -> None:
        self.path = path
        self.threads = threads
        self.provider = provider
        self.batch_size = batch_size
        self.max_length = max_length
        self.int8 = int8
        self._open()

    def _open(self, session: bool = True) -> None:
        """Check the parameters and open the model (`session` False: keep the open one)."""
        inference.check("xlc.load", flags=False, batch_size=self.batch_size, threads=self.threads,
                        max_length=self.max_length)
        if session:
            self.model_dir = find_model(Path(self.path))
            self.scorer = Scorer.open(self.model_dir, threads=self.threads, provider=self.provider,
                                      int8=bool(self.int8))
        self.max_length_ = self.scorer.max_length_for(self.max_length)

    def set_params(self, **params: Any) -> TextClassifier:
        """Change parameters, checked as the constructor checks them; the model reopens if needed.

        A refused value leaves the classifier as it was.
        """
        before = self.get_params(deep=False)
        super().set_params(**params)
        try:
            self._open(session=bool(_REOPEN & params.keys()))
        except BaseException:
            super().set_params(**before)
            raise
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # a loaded model is trained: scikit-learn's checks (check_is_fitted) pass

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.scorer.classes, dtype=object)

    def fit(self, X: Any, y: Any = None) -> TextClassifier:  # noqa: N803 (scikit-learn's name)
        """Refused: a TextClassifier is a trained model; training is `xlc.selftrain`."""
        raise XlcError("TextClassifier is a trained model and is not fitted again; train with xlc.selftrain(...) "
                       "(or `xlc selftrain`) and load the result with xlc.load(run.best_model)")

    def predict_proba(self, X: Any, progress: Callable[[int, int], None] | None = None) -> np.ndarray:  # noqa: N803
        """Class probabilities, one row per text, columns in `classes_` order; `progress(done, total)`."""
        return self.scorer.probabilities(_texts(X), self.batch_size, self.max_length_, progress)

    def predict(self, X: Any, progress: Callable[[int, int], None] | None = None) -> np.ndarray:  # noqa: N803
        return self.classes_[self.predict_proba(X, progress).argmax(axis=1)]

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:  # noqa: N803
        """Accuracy of `predict(X)` against the labels `y`, as every scikit-learn classifier.

        In xlc 0.1 `score(texts)` returned a frame of labels and probabilities; that is
        `score_frame(texts)` now, and `score` without `y` says so.
        """
        if y is None:
            raise XlcError("TextClassifier.score(X, y) returns the accuracy against labels y, as in scikit-learn; "
                           "for the label, confidence and class probabilities of each text call score_frame(X)")
        from sklearn.metrics import accuracy_score

        texts = _texts(X)
        gold = data.texts_from(y, "y", item="label")
        if len(gold) != len(texts):
            raise XlcError(f"score: y has {len(gold)} labels for {len(texts)} texts; pass one label per text")
        return float(accuracy_score(gold, self.predict(texts), sample_weight=sample_weight))

    def score_frame(self, X: Any) -> pl.DataFrame:  # noqa: N803
        """text, then the prediction columns of `xlc.score` (`xlc.scoring.columns`), in input order.

        A missing, empty or whitespace-only text gets a row of nulls, as in `xlc.score`.
        """
        texts = data.texts_from(X, "texts", missing_ok=True)
        return _scored(self, pl.DataFrame({"text": texts}, schema={"text": pl.String}), "text")

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803 (BaseEstimator's signature)
        return f"TextClassifier({str(self.model_dir)!r}, classes={list(self.scorer.classes)})"


_REOPEN = {"path", "threads", "provider", "int8"}
"""The parameters that need a new ONNX Runtime session when they change."""


def _texts(texts: Any) -> list[str]:
    """`data.texts_from`, and no empty text: a model cannot label one."""
    values = data.texts_from(texts, "texts")
    bad = next((i for i, t in enumerate(values) if not t.strip()), None)
    if bad is not None:
        raise XlcError(f"texts: text #{bad} is empty; every text must be a non-empty string")
    return values


def load(path: str | Path, **options: Any) -> TextClassifier:
    """Open a trained model: a run folder (its best model), `best/`, `final/` or `round-NN/onnx`."""
    return TextClassifier(path, **options)


def score(model: str | Path | TextClassifier, texts: Table | Sequence[str] | Any, *,
          text_column: str = "text", **options: Any) -> pl.DataFrame:
    """Score texts with a trained model; a Polars frame back, one row per input row, in order.

    `texts`: a file path, a Polars, pandas or Arrow table, or texts as `TextClassifier.predict`
    takes them (a list, tuple, NumPy array, pandas or Polars Series, Arrow array).

    The columns are those of `xlc score --keep-columns all` without its `id`
    (`xlc.scoring.columns`): the input's columns (an input `label` is kept as `gold`), then
    `label`, `confidence` and one `p_<class>` per class. A missing, empty or whitespace-only
    text keeps its row with nulls there.
    """
    clf = model if isinstance(model, TextClassifier) else load(model, **options)
    if texts is None:
        raise XlcError("xlc.score: pass texts, a frame or a file path, not None")
    frame = _as_frame(texts, "texts", texts_ok=True)
    if frame is None:
        frame = data.read_table(Path(cast("str | os.PathLike[str]", texts)))
    data.require_columns(frame, "texts", [text_column])
    return _scored(clf, frame, text_column)


def _scored(clf: TextClassifier, frame: pl.DataFrame, text_column: str) -> pl.DataFrame:
    """`frame`'s columns, carried as `columns.carried` names them, then the prediction columns."""
    if frame.schema[text_column] not in (pl.String, pl.Null):
        raise XlcError(f"texts: column {text_column!r} holds {frame.schema[text_column]}, not text; "
                       f"name the text column with text_column=")
    kept = columns.carried(frame.columns, [columns.ALL], clf.scorer.classes, "texts", "rename or drop it")
    predicted = columns.predict(clf.scorer, frame[text_column], clf.batch_size, clf.max_length_)
    return frame.rename(kept).with_columns(predicted)
