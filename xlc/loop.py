"""The self-learning loop (Dong & de Melo 2019, Algorithm 1), crash-safe and resumable.

Each round runs its phases in order: train (fine-tune on the labeled set L), export (to
ONNX), evaluate (dev/test), then, unless the run stops, score (the pool U) and select
(pseudo-labeled texts), and close (record the round; the selection moves from U to L).

Every phase commits its result atomically inside the round's folder (see `rundir.RoundDir`;
metrics.json, written by close, closes the round); with --select-round average, the finished
run's round models are then averaged into average/, which is exported and evaluated as a round
is, phase by phase. A run killed at any moment and started again with the same settings replays
the closed rounds, reuses the committed phases of the open one, and ends exactly as an
uninterrupted run would (training is seeded per round; optimizers start fresh).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from xlc import data as data_mod
from xlc import files, health, metrics, model, modelcard, modeldir, onnx, report, rundir, selectors, tracking
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.modeldir import max_positions
from xlc.rundir import RoundDir, RunDir
from xlc.scoring import Scorer

log = logging.getLogger("xlc")
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances, e.g. ("round 1: train", 12, 40)."""

CRASH_ENV = "XLC_CRASH_AT"
"""Test seam: "PHASE:ROUND" (e.g. "export:1") SIGKILLs the process right after that commit."""

STOP_CODES = ("patience", "max_rounds", "pool_empty", "nothing_selected")
"""Why a run stops, for programs; `Stop.reason` says the same in a sentence."""


@dataclass(frozen=True)
class Stop:
    """Why the loop ended: `code` (one of STOP_CODES) and `reason`, an English sentence."""

    code: str
    reason: str


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced."""

    out: Path
    rounds: pl.DataFrame
    pseudo_labels: pl.DataFrame
    best_round: int
    best_model: Path
    final_model: Path
    stop_reason: str
    report: dict
    stop_code: str


@dataclass
class RunState:
    """What the closed rounds left: the sets, the records, the early-stopping tally and the stop."""

    labeled: pl.DataFrame
    pool: pl.DataFrame
    pseudo: list[pl.DataFrame] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    best_round: int = -1
    best_dev: float = -np.inf
    stale: int = 0
    stop: Stop | None = None

    def observe(self, rnd: int, dev_accuracy: float, rule: str = "dev") -> bool:
        """Update the early-stopping tally; True when `rnd` is the new best (with rules other than "dev":
        every round, so patience never ends the run)."""
        if rule != "dev" or dev_accuracy > self.best_dev:
            self.best_round, self.best_dev, self.stale = rnd, dev_accuracy, 0
            return True
        self.stale += 1
        return False

    def take(self, selected: pl.DataFrame) -> None:
        """Move selected texts from the pool into the labeled set."""
        self.pseudo.append(selected)
        self.pool = self.pool.join(selected.select("id"), on="id", how="anti", maintain_order="left")
        self.labeled = pl.concat([self.labeled, selected.select("text", "label")])


@dataclass
class Context:
    """What every round reads: the settings, the data, the run folder, progress; and a cache."""

    config: SelfTrainConfig
    selector: selectors.Prepared
    data: data_mod.RunData
    run: RunDir
    progress: Progress
    features: model.LowerLayers | None = None
    """The frozen lower layers' outputs (see `model.LowerLayers`), made on first use."""


@dataclass
class Round:
    """The open round: its folder, and the facts its phases record for metrics.json."""

    folder: RoundDir
    record: dict
    timings: dict = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.folder.number


def load_data(config: SelfTrainConfig) -> data_mod.RunData:
    cols = data_mod.Columns(config.text_column, config.label_column, config.id_column, config.lang_column)
    run_data = data_mod.load_demo(config.demo_langs) if config.uses_demo else _load_files(config, cols)
    if config.extra_train:
        run_data = data_mod.add_train(run_data, Path(config.extra_train), cols)
    return run_data


def _load_files(config: SelfTrainConfig, cols: data_mod.Columns) -> data_mod.RunData:
    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return data_mod.load_files(
        Path(config.train), Path(config.unlabeled), path(config.dev), path(config.test), cols,
        path(config.pool_gold), dev_share=config.dev_share, seed=config.seed,
    )


def finished(config: SelfTrainConfig) -> bool:
    """Whether `config.out` holds a finished run of exactly these settings, data and model (nothing to redo)."""
    run = RunDir(Path(config.out))
    if not (run.report.is_file() and run.run_file.is_file()):
        return False
    try:
        found = json.loads(run.run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    selector = selectors.prepare(config.selector, config.selector_options)
    stamp = rundir.fingerprint(config.replace(selector_options=dict(selector.options)))
    return isinstance(found, dict) and rundir.same_run(found, stamp)


def check_model(config: SelfTrainConfig) -> None:
    """Refuse a --model that cannot be trained (see `model.check_base`) or a --max-length above its
    position limit: before the run folder is written."""
    base = model.check_base(config.model)
    limit = max_positions(base)
    if limit is not None and config.max_length > limit:
        raise XlcError(f"--max-length {config.max_length}: the model {config.model} reads at most {limit} "
                       f"tokens; pass --max-length {limit} or less")


def _crash_point(phase: str, rnd: int) -> None:
    if os.environ.get(CRASH_ENV) == f"{phase}:{rnd}":
        os.kill(os.getpid(), signal.SIGKILL)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


# ---- the run -------------------------------------------------------------------------------------

def run(
    config: SelfTrainConfig,
    progress: Progress | None = None,
    run_data: data_mod.RunData | None = None,
) -> RunResult:
    """Run (or resume) self-training as `config` says; everything goes under `config.out`."""
    # fail before any work, and record the options as the selector will see them (resolved once, here)
    selector = selectors.prepare(config.selector, config.selector_options)
    config = config.replace(selector_options=dict(selector.options))
    ctx = Context(config, selector, run_data or load_data(config), RunDir(Path(config.out)),
                  progress or _no_progress)
    check_model(config)
    if config.track:
        tracking.check()
    started = _open(ctx)
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        state = _replay(ctx)
        clf: model.Classifier | None = None
        while state.stop is None:
            clf = _round(ctx, state, clf)
    except Exception:
        if started:  # failed before committing anything (e.g. unreadable weights): leave no run to refuse a retry
            rundir.discard(ctx.run.path)
        raise
    return _finish(ctx, state, state.stop)


def _open(ctx: Context) -> bool:
    """Start the run in its folder, or accept the unfinished run there if it has the same fingerprint.

    True when this call started a new run.
    """
    out = ctx.run.path
    stamp = rundir.fingerprint(ctx.config)
    if rundir.resumes(out, stamp):
        log.info("resuming the unfinished run in %s", out)
        return False
    rundir.start(out, ctx.config, stamp)
    return True


def _replay(ctx: Context) -> RunState:
    """Rebuild the state after the closed rounds (those with a metrics.json)."""
    state = RunState(ctx.data.train.select("text", "label"), ctx.data.pool)
    while (folder := ctx.run.round(len(state.rounds))).closed:
        record = json.loads(folder.metrics.read_text())
        state.rounds.append(record)
        state.observe(folder.number, record["dev"]["accuracy"], ctx.config.round_rule)
        state.stop = Stop(record.get("stop_code", ""), record["stop_reason"]) if record.get("stop_reason") else None
        if state.stop is None and folder.selected.is_file():
            state.take(pl.read_parquet(folder.selected))
    return state


def _finish(ctx: Context, state: RunState, stop: Stop) -> RunResult:
    """Publish the delivered (the best round's, or the average's) and the last round's models, prune, write
    the pseudo-labels and the report."""
    run, last = ctx.run, len(state.rounds) - 1
    delivered = _average(ctx, last) if ctx.config.round_rule == "average" else None
    facts = report.data_facts({"train": ctx.data.train, "unlabeled": ctx.data.pool, "dev": ctx.data.dev,
                               "test": ctx.data.test})
    facts["dev_held_out"] = ctx.data.dev_held_out
    summary = report.build(ctx.config, ctx.data.classes, state.rounds, state.best_round, stop.reason, stop.code,
                           facts, delivered)
    averaged = delivered is not None
    best = run.average if averaged else run.round(state.best_round)
    for source, target, number, average in ((run.round(last), run.final, last, False),
                                            (best, run.best, state.best_round, averaged)):
        card = modelcard.render(modeldir.read_meta(source.model), summary, number, average=average)
        rundir.publish(source, target, card)
    _prune(ctx, keep={state.best_round, last}, finished=True)
    _crash_point("finish", last)
    pseudo_labels = pl.concat(state.pseudo) if state.pseudo else _empty_pseudo(ctx.data.pool)
    data_mod.write_parquet(pseudo_labels, run.pseudo_labels)
    report.write(run.path, summary)
    if ctx.config.track:
        _track(ctx, summary)
    return RunResult(
        out=run.path, rounds=report.rounds_frame(state.rounds), pseudo_labels=pseudo_labels,
        best_round=state.best_round, best_model=run.best, final_model=run.final,
        stop_reason=stop.reason, report=summary, stop_code=stop.code,
    )


def _average(ctx: Context, last: int) -> dict:
    """--select-round average: the weights of rounds 1..`last` (round 0 alone when it is the last) averaged
    into average/, which is then exported and evaluated as a round is; returns report.json's "delivered"."""
    folder, rounds = ctx.run.average, list(range(1, last + 1)) or [0]
    folder.path.mkdir(exist_ok=True)
    if not folder.train_file.is_file():
        clock = model.timer()
        clf = model.load(ctx.run.round(last).model)
        clf.model.load_state_dict(model.average_weights(
            model.load(ctx.run.round(number).model).model.state_dict() for number in rounds))
        with files.atomic_dir(folder.model) as tmp:
            clf.save(tmp, reuse=[other.model for other in _others(ctx)])
            files.write_json(tmp / rundir.TRAIN_FILE, {"rounds": rounds, "seconds": clock()})
        _crash_point("average", last)
    if not folder.evaluation.is_file():  # once it is, the ONNX model may be pruned (best/ holds it)
        if not folder.onnx_file.is_file():
            onnx.export(model.load(folder.model), folder.onnx,
                        reuse=[other.onnx for other in _others(ctx)])
        _commit_evaluation(ctx, folder, Scorer.open(folder.onnx, threads=ctx.config.threads, graph=True), "average")
    evaluated = json.loads(folder.evaluation.read_text())
    return {"rule": "average", "rounds": rounds, **{k: evaluated[k] for k in ("dev", "test") if k in evaluated}}


def load_result(out: Path) -> RunResult:
    """The result of the finished run in `out`, read back from its report and pseudo-labels."""
    run = RunDir(Path(out))
    summary = report.read(run.path)
    return RunResult(
        out=run.path, rounds=report.rounds_frame(summary["rounds"]),
        pseudo_labels=pl.read_parquet(run.pseudo_labels), best_round=summary["best_round"], best_model=run.best,
        final_model=run.final, stop_reason=summary["stop_reason"], report=summary,
        stop_code=summary.get("stop_code", ""),
    )


def _track(ctx: Context, summary: dict) -> None:
    """--track mlflow: log the finished run; a failure is a warning, never the loss of the finished run."""
    uri = ctx.config.track_uri or tracking.default_uri()
    try:
        run_id = tracking.log_run(ctx.run.path, summary, uri)
    except Exception as exc:  # noqa: BLE001 - the run is complete on disk whatever the tracker says
        log.warning("the run is complete in %s but was not logged to MLflow at %s: %s: %s", ctx.run.path, uri,
                    type(exc).__name__, exc)
        return
    log.info("logged to MLflow (%s): experiment %r, run %s", uri, tracking.EXPERIMENT, run_id)


# ---- one round: its phases, each reusing its committed output ------------------------------------

def _round(ctx: Context, state: RunState, clf: model.Classifier | None) -> model.Classifier:
    """One round of Algorithm 1, reusing whatever of it was already committed; returns its model."""
    rnd = len(state.rounds)
    counts = selectors.labeled_counts(state.labeled["label"], ctx.data.classes)
    now = Round(ctx.run.round(rnd), {"round": rnd, "labeled": state.labeled.height, "pool": state.pool.height,
                                     "labeled_per_class": counts})
    now.folder.path.mkdir(exist_ok=True)
    clf = _train(ctx, state, now, clf)
    scorer = _export(ctx, now, clf)
    _evaluate(ctx, state, now, scorer)
    stop = _stop_before_selection(ctx.config, state, rnd)
    selected = None
    if stop is None:
        scored = _score_pool(ctx, state, now, scorer)
        now.record["health"] = _health(ctx, state, now, scored)
        selected = _select(ctx, state, now, scored)
    if selected is not None and selected.height == 0:
        stop = Stop("nothing_selected", f"selector {ctx.config.selector!r} took no texts")
    _close(ctx, state, now, selected, stop)
    return clf


def _train(ctx: Context, state: RunState, now: Round, clf: model.Classifier | None) -> model.Classifier:
    """Train: fine-tune the round's student on L; commits model/ with train.json."""
    rnd, folder = now.number, now.folder
    if folder.train_file.is_file():
        clf = model.load(folder.model)
    else:
        clf = _student(ctx, rnd, clf)
        clock = model.timer()
        trained = _fine_tune(ctx, state, rnd, clf)
        seconds = clock()
        clf = replace(clf, max_length=ctx.config.max_length)  # kept in xlc.json: what `xlc score` then uses
        with files.atomic_dir(folder.model) as tmp:
            clf.save(tmp, reuse=[other.model for other in _others(ctx, rnd)])
            files.write_json(tmp / rundir.TRAIN_FILE, {
                "losses": trained.losses, "steps": trained.steps, "epochs": trained.epochs,
                "best_epoch": trained.best_epoch, "dev_accuracy": trained.dev_accuracy, "seconds": seconds,
            })
        _crash_point("train", rnd)
    facts = json.loads(folder.train_file.read_text())
    now.record["train_loss"] = facts["losses"][-1]
    now.record["train"] = {k: facts.get(k) for k in ("steps", "epochs", "best_epoch", "dev_accuracy")}
    now.timings["train"] = facts["seconds"]
    return clf


def _student(ctx: Context, rnd: int, clf: model.Classifier | None) -> model.Classifier:
    """The model round `rnd` fine-tunes: the base encoder, or (warm start) the last round's model."""
    if not ctx.config.warm_start or rnd == 0:  # --from-base: every round's student starts afresh
        return model.from_base(ctx.config.model, ctx.data.classes, ctx.config.text_prefix)
    if clf is None:  # resuming: continue from the previous round's weights
        return model.load(ctx.run.round(rnd - 1).model)
    return clf


def _export(ctx: Context, now: Round, clf: model.Classifier) -> Scorer:
    """Export: the student as ONNX; commits onnx/ and returns a scorer on it."""
    clock = model.timer()
    if not now.folder.onnx_file.is_file():
        onnx.export(clf, now.folder.onnx, reuse=[other.onnx for other in _others(ctx, now.number)])
        _crash_point("export", now.number)
    scorer = Scorer.open(now.folder.onnx, threads=ctx.config.threads, graph=True)  # xlc's own export: opens faster
    now.timings["export"] = clock()
    return scorer


def _evaluate(ctx: Context, state: RunState, now: Round, scorer: Scorer) -> None:
    """Evaluate: metrics on dev (and test); commits eval.json and updates the early-stopping tally."""
    if not now.folder.evaluation.is_file():
        _commit_evaluation(ctx, now.folder, scorer, f"round {now.number}")
    evaluated = json.loads(now.folder.evaluation.read_text())
    now.timings["evaluate"] = evaluated.pop("seconds")
    now.record.update(evaluated)
    state.observe(now.number, now.record["dev"]["accuracy"], ctx.config.round_rule)
    log.info("round %d: labeled %d, dev accuracy %.4f", now.number, state.labeled.height,
             now.record["dev"]["accuracy"])


def _commit_evaluation(ctx: Context, folder: RoundDir, scorer: Scorer, stage: str) -> None:
    """Score dev (and test) with `folder`'s model; commit the test predictions, then eval.json (the metrics
    and the seconds they took)."""
    clock = model.timer()
    result = {}
    for split, frame in (("dev", ctx.data.dev), ("test", ctx.data.test)):
        if frame is None:
            continue
        scored = _score(ctx, scorer, frame, f"{stage}: {split}")
        result[split] = metrics.evaluate(scored, ctx.data.classes)
        if split == "test":  # per text, for paired comparisons of runs (`xlc report RUN_A RUN_B`)
            data_mod.write_parquet(scored.select("text", "lang", "gold", "label"), folder.test_predictions)
    files.write_json(folder.evaluation, {**result, "seconds": clock()})


def _stop_before_selection(config: SelfTrainConfig, state: RunState, rnd: int) -> Stop | None:
    """Whether the run ends with round `rnd`: patience spent, --max-rounds reached or the pool empty."""
    if state.stale >= config.patience:
        return Stop("patience", f"dev accuracy did not improve for {state.stale} round(s) "
                                f"(patience {config.patience})")
    if rnd == config.max_rounds:
        return Stop("max_rounds", f"reached --max-rounds {config.max_rounds}")
    if state.pool.height == 0:
        return Stop("pool_empty", "the unlabeled pool is empty")
    return None


def _score_pool(ctx: Context, state: RunState, now: Round, scorer: Scorer) -> pl.DataFrame:
    """Score: the pool U with the round's model; commits scored.parquet."""
    stage = f"round {now.number}: score pool"

    def score() -> pl.DataFrame:
        if ctx.config.engine == "ray":  # --engine ray: the pool is scored by Ray actors
            from xlc.scoring.ray import score_pool
            return score_pool(state.pool, now.folder.onnx, ctx.config,
                              lambda done, total: ctx.progress(stage, done, total))
        return _score(ctx, scorer, state.pool, stage)

    return _commit_frame(now, "score", now.folder.scored, score)


def _health(ctx: Context, state: RunState, now: Round, scored: pl.DataFrame) -> dict:
    """The round's label-free signals (see `xlc.health`), against the last round's scored pool."""
    before = ctx.run.round(now.number - 1).scored if now.number else None
    previous = pl.read_parquet(before, columns=["id", "label"]) if before and before.is_file() else None
    return health.signals(scored, previous, state.labeled["label"], ctx.data.classes)


def _select(ctx: Context, state: RunState, now: Round, scored: pl.DataFrame) -> pl.DataFrame:
    """Select: the selector's pseudo-labels, each with its round and selector; commits selected.parquet."""
    config, rnd = ctx.config, now.number

    def select() -> pl.DataFrame:
        counts = now.record["labeled_per_class"]
        confusion = selectors.dev_confusion(now.record)  # the round's model on dev (see _evaluate)
        chosen = ctx.selector(scored, selectors.SelectionContext(ctx.data.classes, counts, rnd, confusion))
        return chosen.select(
            "id", "text", "lang", "label", "confidence",
            pl.lit(rnd, pl.Int32).alias("round"), pl.lit(config.selector).alias("selector"),
            *(["probs"] if config.targets == "soft" else []),  # the teacher's distribution, to train on
        )

    return _commit_frame(now, "select", now.folder.selected, select)


def _commit_frame(now: Round, phase: str, path: Path, make: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """A phase's frame: read back when committed, else made and committed atomically; timed either way."""
    clock = model.timer()
    if path.is_file():
        frame = pl.read_parquet(path)
    else:
        frame = make()
        data_mod.write_parquet(frame, path)
        _crash_point(phase, now.number)
    now.timings[phase] = clock()
    return frame


def _close(ctx: Context, state: RunState, now: Round, selected: pl.DataFrame | None, stop: Stop | None) -> None:
    """Close: commit metrics.json, which closes the round; then move the selection from U to L."""
    now.record["timings"] = now.timings
    now.record.update(_selection_facts(selected, ctx.data.classes, ctx.data.pool_gold))
    now.record["stop_reason"] = stop.reason if stop else ""
    now.record["stop_code"] = stop.code if stop else ""
    files.write_json(now.folder.metrics, now.record)
    state.rounds.append(now.record)
    state.stop = stop
    if selected is not None and stop is None:
        state.take(selected)
    _prune(ctx, keep={state.best_round, now.number})


# ---- helpers -------------------------------------------------------------------------------------

def _fine_tune(ctx: Context, state: RunState, rnd: int, clf: model.Classifier) -> model.TrainResult:
    """Fine-tune `clf` on the labeled set; with --select-epoch keep its best epoch on dev."""
    config, run_data = ctx.config, ctx.data
    index = {c: i for i, c in enumerate(run_data.classes)}
    settings = model.TrainSettings.from_config(config, seed=config.seed + rnd)
    dev = None
    if config.select_epoch:
        dev_labels = [index.get(c, -1) for c in run_data.dev["label"].to_list()]  # -1: a class never trained
        dev = (run_data.dev["text"].to_list(), np.array(dev_labels))
    labels = np.array([index[c] for c in state.labeled["label"].to_list()])
    if config.targets == "soft":  # gold rows as one-hot, pseudo-labeled rows as the teacher's probabilities
        labels = np.concatenate([np.eye(len(index), dtype=np.float32)[labels[: run_data.train.height]],
                                 *(np.stack(p["probs"].to_list()).astype(np.float32) for p in state.pseudo)])
    frozen = model.frozen_layers(clf, config.train_layers)
    features = None
    if frozen:  # the frozen layers' outputs, in the same groups on a resumed run: bit-identical
        if ctx.features is None:
            ctx.features = model.LowerLayers(clf, frozen, config.max_length)
        features = ctx.features
        features.clf = clf
        for group in (run_data.train, run_data.dev, *state.pseudo):
            features.add(group["text"].to_list())
    pseudo = np.arange(state.labeled.height) >= run_data.train.height  # L: the gold rows, then the pseudo-labels
    return model.fine_tune(
        clf, state.labeled["text"].to_list(), labels, settings,
        on_step=lambda s, n, _loss: ctx.progress(f"round {rnd}: train", s, n), dev=dev, lower=features,
        pseudo=pseudo,
    )


def _others(ctx: Context, rnd: int | None = None) -> list[RoundDir]:
    """The run's rounds other than `rnd` (all of them for the average's model), the latest first: whose
    models a new one may share files with."""
    return [other for other in reversed(ctx.run.rounds()) if other.number != rnd]


def _prune(ctx: Context, keep: set[int], finished: bool = False) -> None:
    """Drop the models of closed rounds other than `keep`, unless --keep-round-models; once `finished`,
    the ONNX models of `keep` too (best/ and final/ hold them). Until then, with --select-round average,
    the checkpoints of rounds 1.. stay: the run averages them when it finishes."""
    if ctx.config.keep_round_models:
        return
    if finished:
        rundir.prune(ctx.run, keep, keep_onnx=set())
    else:
        averaged = set(range(1, max(keep) + 1)) if ctx.config.round_rule == "average" else set()
        rundir.prune(ctx.run, keep | averaged, keep_onnx=keep)


def _score(ctx: Context, scorer: Scorer, frame: pl.DataFrame, stage: str) -> pl.DataFrame:
    if "label" in frame.columns:
        frame = frame.rename({"label": "gold"})
    # the training length, which the round's xlc.json also holds; given here so that a run resumed
    # over rounds exported before xlc stored it scores exactly as it began
    return scorer.score(
        frame, batch_size=ctx.config.score_batch_size, max_length=ctx.config.max_length,
        progress=lambda done, total: ctx.progress(stage, done, total),
    )


def _selection_facts(selected: pl.DataFrame | None, classes: tuple[str, ...],
                     gold: pl.DataFrame | None) -> dict:
    if selected is None:
        return {"selected": 0, "selected_per_class": {}, "pseudo_precision": None}
    counts = dict(selected["label"].value_counts().iter_rows())
    return {
        "selected": selected.height,
        "selected_per_class": {c: counts.get(c, 0) for c in classes},
        "pseudo_precision": metrics.pseudo_label_precision(selected, gold),
    }


def _empty_pseudo(pool: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        schema={"id": pool["id"].dtype, "text": pl.String, "lang": pl.String, "label": pl.String,
                "confidence": pl.Float32, "round": pl.Int32, "selector": pl.String}
    )
