"""The self-learning loop (Dong & de Melo 2019, Algorithm 1), crash-safe and resumable.

Each round: fine-tune on the labelled set L, export to ONNX, evaluate on dev/test,
score the pool U, let the selector pick pseudo-labelled texts, move them from U to L.

Every phase commits its result atomically inside `round-NN/` (model/, onnx/, eval.json,
scored.parquet, selected.parquet, then metrics.json, which closes the round). A run
killed at any moment and started again with the same settings replays the closed
rounds, reuses the committed phases of the open one, and ends exactly as an
uninterrupted run would (training is seeded per round; optimizers start fresh).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from xlc import data as data_mod
from xlc import files, metrics, model, onnx, report, selectors
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.modeldir import max_positions
from xlc.scoring import Scorer

log = logging.getLogger("xlc")
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances, e.g. ("round 1: train", 12, 40)."""

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
CRASH_ENV = "XLC_CRASH_AT"
"""Test seam: "PHASE:ROUND" (e.g. "export:1") SIGKILLs the process right after that commit."""


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


@dataclass
class RunState:
    """What the closed rounds left: the sets, the records and the early-stopping tally."""

    labelled: pl.DataFrame
    pool: pl.DataFrame
    pseudo: list[pl.DataFrame] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    best_round: int = -1
    best_dev: float = -np.inf
    stale: int = 0

    def observe(self, rnd: int, dev_accuracy: float) -> bool:
        """Update the early-stopping tally; True when `rnd` is the new best."""
        if dev_accuracy > self.best_dev:
            self.best_round, self.best_dev, self.stale = rnd, dev_accuracy, 0
            return True
        self.stale += 1
        return False

    def take(self, selected: pl.DataFrame) -> None:
        """Move selected texts from the pool into the labelled set."""
        self.pseudo.append(selected)
        self.pool = self.pool.join(selected.select("id"), on="id", how="anti", maintain_order="left")
        self.labelled = pl.concat([self.labelled, selected.select("text", "label")])


def load_data(config: SelfTrainConfig) -> data_mod.RunData:
    if config.uses_demo:
        return data_mod.load_demo(config.demo_langs)
    cols = data_mod.Columns(config.text_column, config.label_column, config.id_column, config.lang_column)
    return data_mod.load_files(
        Path(config.train), Path(config.unlabeled), Path(config.dev),
        Path(config.test) if config.test else None, cols, Path(config.pool_gold) if config.pool_gold else None,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(config: SelfTrainConfig) -> dict:
    """What a resumed run must share with the interrupted one: settings, input bytes, model."""
    settings = {k: v for k, v in config.to_dict().items() if k != "out"}
    roles = {"demo": str(data_mod.demo_path())} if config.uses_demo else {
        role: getattr(config, role) for role in ("train", "unlabeled", "dev", "test", "pool_gold")
        if getattr(config, role)}
    inputs = {role: _sha256(Path(path)) for role, path in roles.items()}
    base = Path(config.model)
    weights = sorted(base.glob("*.safetensors")) + sorted(base.glob("*.bin")) if base.is_dir() else []
    model_id = {"model": config.model, **{p.name: p.stat().st_size for p in weights}}
    return {"settings": settings, "inputs": inputs, "model": model_id}


def check_out(out: Path) -> dict | None:
    """Refuse an output folder that xlc must not write into; writes nothing.

    Returns the fingerprint of the unfinished run the folder holds, or None for a new run
    (a missing or empty folder, or one xlc made). A file, a finished run and a folder with
    files that xlc did not write are refused.
    """
    if out.exists() and not out.is_dir():
        raise XlcError(f"--out {out}: exists and is not a folder; choose another path")
    if (out / "report.json").exists():
        raise XlcError(f"--out {out}: already holds a finished run; choose another folder or delete it")
    if (out / RUN_FILE).is_file():
        try:
            found = json.loads((out / RUN_FILE).read_text())
        except (ValueError, UnicodeDecodeError):
            found = None
        if not (isinstance(found, dict) and {"settings", "inputs", "model"} <= set(found)):
            raise XlcError(f"--out {out}: its {RUN_FILE} is not an xlc run's; choose another folder")
        return found
    if out.is_dir() and not files.is_marked(out) and any(out.iterdir()):
        raise XlcError(f"--out {out}: a folder with files that xlc did not write (no {RUN_FILE}); "
                       f"choose a new or empty folder")
    return None


@contextmanager
def run_lock(out: Path) -> Iterator[dict | None]:
    """Claim the run folder `out` for this process; yields `check_out(out)`, taken under the lock.

    Creates `out` with its marker and holds an OS lock on `out/.lock` (released when the
    process ends, even when killed): a second process on the same folder is refused and
    told the first one's pid. A folder this call created is removed again if the block
    fails before writing anything into it.
    """
    check_out(out)  # before the first write
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not files.is_marked(out):
            files.mark(out, "run")
    except OSError as exc:
        raise XlcError(f"--out {out}: cannot write there ({exc.strerror}); {files.advice(exc)}") from None
    try:
        with files.locked(out / LOCK_FILE, f"--out {out}"):
            yield check_out(out)
    finally:
        if created and {p.name for p in out.iterdir()} <= {files.MARKER}:
            shutil.rmtree(out, ignore_errors=True)


def prepare_out(out: Path, config: SelfTrainConfig, stamp: dict) -> bool:
    """Create the output folder, or accept an unfinished run with the same fingerprint.

    Returns True when resuming. A finished run, a folder xlc did not write, or a run made
    with other settings, data or model, is refused with what differs.
    """
    found = check_out(out)
    if found is not None:
        differs = [f"{part} {key}" for part in ("settings", "inputs", "model")
                   for key in sorted(set(found.get(part, {})) | set(stamp[part]))
                   if found.get(part, {}).get(key) != stamp[part].get(key)]
        if differs:
            given = {d.split(" ", 1)[1] for d in differs if d.startswith("settings ")}
            changed = [d for d in differs if d.startswith("inputs ") and d.split(" ", 1)[1] not in given
                       or d.startswith("model ") and "model" not in given]
            fix = (f"{', '.join(changed)} changed on disk since it started, so it cannot be resumed: restore "
                   f"them" if changed else f"resume it with its own settings (xlc selftrain --resume {out})")
            raise XlcError(f"--out {out}: holds an unfinished run made with a different {', '.join(differs)}; "
                           f"{fix}, or choose another folder")
        return True
    check_max_length(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not files.is_marked(out):
            files.mark(out, "run")
        config.write_toml(out / "config.toml")
        files.write_json(out / RUN_FILE, stamp)
    except OSError as exc:
        raise XlcError(f"--out {out}: cannot write there ({exc.strerror}); {files.advice(exc)}") from None
    return False


def check_max_length(config: SelfTrainConfig) -> None:
    """Refuse a --max-length above the base encoder's position limit (before anything is trained)."""
    base, _ = model.resolve_base(config.model)
    limit = max_positions(base)
    if limit is not None and config.max_length > limit:
        raise XlcError(f"--max-length {config.max_length}: the model {config.model} reads at most {limit} "
                       f"tokens; pass --max-length {limit} or less")


def _crash_point(phase: str, rnd: int) -> None:
    if os.environ.get(CRASH_ENV) == f"{phase}:{rnd}":
        os.kill(os.getpid(), signal.SIGKILL)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def _replay(out: Path, run_data: data_mod.RunData) -> RunState:
    """Rebuild the state after the closed rounds (those with a metrics.json)."""
    state = RunState(run_data.train.select("text", "label"), run_data.pool)
    rnd = 0
    while (out / f"round-{rnd:02d}" / "metrics.json").is_file():
        record = json.loads((out / f"round-{rnd:02d}" / "metrics.json").read_text())
        state.rounds.append(record)
        state.observe(rnd, record["dev"]["accuracy"])
        selected = out / f"round-{rnd:02d}" / "selected.parquet"
        if not record.get("stop_reason") and selected.is_file():
            state.take(pl.read_parquet(selected))
        rnd += 1
    return state


def selftrain(
    config: SelfTrainConfig,
    progress: Progress | None = None,
    run_data: data_mod.RunData | None = None,
) -> RunResult:
    """Run (or resume) self-training as `config` says; everything goes under `config.out`."""
    progress = progress or _no_progress
    # fail before any work, and record the options as the selector will see them (resolved once, here)
    selector = selectors.prepare(config.selector, config.selector_options)
    config = config.replace(selector_options=dict(selector.options))
    out = Path(config.out)
    run_data = run_data or load_data(config)
    if prepare_out(out, config, fingerprint(config)):
        log.info("resuming the unfinished run in %s", out)
    if config.threads:
        torch.set_num_threads(config.threads)
    state = _replay(out, run_data)
    stop_reason = state.rounds[-1].get("stop_reason", "") if state.rounds else ""
    clf: model.Classifier | None = None
    lower = Lower()
    while not stop_reason:
        clf, stop_reason = _round(len(state.rounds), config, selector, run_data, state, clf, lower, out, progress)

    last = out / f"round-{len(state.rounds) - 1:02d}"
    _publish(last, out / "final")
    _publish(out / f"round-{state.best_round:02d}", out / "best")
    _prune_checkpoints(out, keep={state.best_round, len(state.rounds) - 1})
    pseudo_labels = pl.concat(state.pseudo) if state.pseudo else _empty_pseudo(run_data.pool)
    data_mod.write_parquet(pseudo_labels, out / "pseudo_labels.parquet")
    summary = report.build(config, run_data.classes, state.rounds, state.best_round, stop_reason)
    report.write(out, summary)
    return RunResult(
        out=out, rounds=report.rounds_frame(state.rounds), pseudo_labels=pseudo_labels,
        best_round=state.best_round, best_model=out / "best", final_model=out / "final",
        stop_reason=stop_reason, report=summary,
    )


def _round(rnd: int, config: SelfTrainConfig, selector: selectors.Prepared, run_data: data_mod.RunData,
           state: RunState, clf: model.Classifier | None, lower: Lower, out: Path,
           progress: Progress) -> tuple[model.Classifier, str]:
    """One round, reusing whatever of it was already committed; returns the model and stop reason."""
    round_dir = out / f"round-{rnd:02d}"
    round_dir.mkdir(exist_ok=True)
    classes = run_data.classes
    record: dict = {"round": rnd, "labeled": state.labelled.height, "pool": state.pool.height}

    checkpoint = round_dir / "model"
    if (checkpoint / "train.json").is_file():
        clf = model.load(checkpoint)
    else:
        if not config.warm_start or rnd == 0:  # --from-base: every round's student starts afresh
            clf = model.from_base(config.model, classes)
        elif clf is None:  # resuming: continue from the previous round's weights
            clf = model.load(out / f"round-{rnd - 1:02d}" / "model")
        clock = model.timer()
        trained = _train(rnd, config, run_data, state, clf, lower, progress)
        seconds = clock()
        clf = replace(clf, max_length=config.max_length)  # kept in xlc.json: what `xlc score` then uses
        with files.atomic_dir(checkpoint) as tmp:
            clf.save(tmp)
            files.write_json(tmp / "train.json", {
                "losses": trained.losses, "steps": trained.steps, "epochs": trained.epochs,
                "best_epoch": trained.best_epoch, "dev_accuracy": trained.dev_accuracy, "seconds": seconds,
            })
        _crash_point("train", rnd)
    trained_facts = json.loads((checkpoint / "train.json").read_text())
    record["train_loss"] = trained_facts["losses"][-1]
    record["train"] = {k: trained_facts.get(k) for k in ("steps", "epochs", "best_epoch", "dev_accuracy")}
    timings = {"train": trained_facts["seconds"]}

    clock = model.timer()
    if not (round_dir / "onnx" / onnx.ONNX_FILE).is_file():
        onnx.export(clf, round_dir / "onnx")
        _crash_point("export", rnd)
    scorer = Scorer.open(round_dir / "onnx", threads=config.threads)
    timings["export"] = clock()

    evaluation = round_dir / "eval.json"
    if not evaluation.is_file():
        clock = model.timer()
        result = {split: metrics.evaluate(_score(scorer, frame, config, progress, f"round {rnd}: {split}"),
                                          classes)
                  for split, frame in (("dev", run_data.dev), ("test", run_data.test)) if frame is not None}
        files.write_json(evaluation, {**result, "seconds": clock()})
    evaluated = json.loads(evaluation.read_text())
    timings["evaluate"] = evaluated.pop("seconds")
    record.update(evaluated)
    state.observe(rnd, record["dev"]["accuracy"])
    log.info("round %d: labelled %d, dev accuracy %.4f", rnd, state.labelled.height, record["dev"]["accuracy"])

    selected = None
    if state.stale >= config.patience:
        stop_reason = f"dev accuracy did not improve for {state.stale} round(s) (patience {config.patience})"
    elif rnd == config.max_rounds:
        stop_reason = f"reached --max-rounds {config.max_rounds}"
    elif state.pool.height == 0:
        stop_reason = "the unlabelled pool is empty"
    else:
        stop_reason = ""
        selected = _select(rnd, config, selector, scorer, state, classes, round_dir, timings, progress)
        if selected.height == 0:
            stop_reason = f"selector {config.selector!r} took no texts"
    record["timings"] = timings
    record.update(_selection_facts(selected, classes, run_data.pool_gold))
    record["stop_reason"] = stop_reason
    files.write_json(round_dir / "metrics.json", record)
    state.rounds.append(record)
    if selected is not None and not stop_reason:
        state.take(selected)
    _prune_checkpoints(out, keep={state.best_round, rnd})
    return clf, stop_reason


def _train(rnd: int, config: SelfTrainConfig, run_data: data_mod.RunData, state: RunState,
           clf: model.Classifier, lower: Lower, progress: Progress) -> model.TrainResult:
    """Fine-tune `clf` on the labelled set; with --select-epoch keep its best epoch on dev."""
    index = {c: i for i, c in enumerate(run_data.classes)}
    settings = model.TrainSettings(
        epochs=config.epochs, batch_size=config.batch_size, max_length=config.max_length,
        lr=config.lr, head_lr=config.head_lr, warmup=config.warmup,
        freeze_embeddings=config.freeze_embeddings, seed=config.seed + rnd, max_steps=config.max_steps,
        epoch_patience=config.epoch_patience, train_layers=config.train_layers,
    )
    dev = None
    if config.select_epoch:
        dev_labels = [index.get(c, -1) for c in run_data.dev["label"].to_list()]  # -1: a class never trained
        dev = (run_data.dev["text"].to_list(), np.array(dev_labels))
    labels = np.array([index[c] for c in state.labelled["label"].to_list()])
    if config.targets == "soft":  # gold rows as one-hot, pseudo-labelled rows as the teacher's probabilities
        labels = np.concatenate([np.eye(len(index), dtype=np.float32)[labels[: run_data.train.height]],
                                 *(np.stack(p["probs"].to_list()).astype(np.float32) for p in state.pseudo)])
    frozen = model.frozen_layers(clf, config.train_layers)
    features = None
    if frozen:  # the frozen layers' outputs, in the same groups on a resumed run: bit-identical
        if lower.features is None:
            lower.features = model.LowerLayers(clf, frozen, config.max_length)
        features = lower.features
        features.clf = clf
        for group in (run_data.train, run_data.dev, *state.pseudo):
            features.add(group["text"].to_list())
    return model.fine_tune(
        clf, state.labelled["text"].to_list(), labels, settings,
        on_step=lambda s, n, _loss: progress(f"round {rnd}: train", s, n), dev=dev, lower=features,
    )


@dataclass
class Lower:
    """The run's cache of frozen lower-layer outputs (see `model.LowerLayers`), made on first use."""

    features: model.LowerLayers | None = None


def _select(rnd: int, config: SelfTrainConfig, selector: selectors.Prepared, scorer: Scorer, state: RunState,
            classes: tuple[str, ...], round_dir: Path, timings: dict, progress: Progress) -> pl.DataFrame:
    """Score the pool and run the selector; both results are committed to `round_dir`."""
    scored_file, selected_file = round_dir / "scored.parquet", round_dir / "selected.parquet"
    clock = model.timer()
    if scored_file.is_file():
        scored_pool = pl.read_parquet(scored_file)
    else:
        if config.engine == "ray":  # --engine ray: the pool is scored by Ray actors
            from xlc.scoring.ray import score_pool
            scored_pool = score_pool(state.pool, round_dir / "onnx", config,
                                     lambda done, total: progress(f"round {rnd}: score pool", done, total))
        else:
            scored_pool = _score(scorer, state.pool, config, progress, f"round {rnd}: score pool")
        data_mod.write_parquet(scored_pool, scored_file)
        _crash_point("score", rnd)
    timings["score"] = clock()
    clock = model.timer()
    if selected_file.is_file():
        selected = pl.read_parquet(selected_file)
    else:
        context = selectors.SelectionContext(classes, dict(state.labelled["label"].value_counts().iter_rows()), rnd)
        chosen = selector(scored_pool, context)
        selected = chosen.select(
            "id", "text", "lang", "label", "confidence",
            pl.lit(rnd, pl.Int32).alias("round"), pl.lit(config.selector).alias("selector"),
            *(["probs"] if config.targets == "soft" else []),  # the teacher's distribution, to train on
        )
        data_mod.write_parquet(selected, selected_file)
        _crash_point("select", rnd)
    timings["select"] = clock()
    return selected


def _score(scorer: Scorer, frame: pl.DataFrame, config: SelfTrainConfig, progress: Progress,
           stage: str) -> pl.DataFrame:
    if "label" in frame.columns:
        frame = frame.rename({"label": "gold"})
    # the training length, which the round's xlc.json also holds; given here so that a run resumed
    # over rounds exported before xlc stored it scores exactly as it began
    return scorer.score(
        frame, batch_size=config.score_batch_size, max_length=config.max_length,
        progress=lambda done, total: progress(stage, done, total),
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


def _publish(round_dir: Path, target: Path) -> None:
    """Hard-link a round's Hugging Face checkpoint and ONNX model into `target` (replaced only if xlc made it)."""
    with files.atomic_dir(target, "model") as tmp:
        for item in (round_dir / "model").iterdir():
            if item.name not in ("train.json", files.MARKER):
                files.link_or_copy(item, tmp / item.name)
        files.link_or_copy(round_dir / "onnx" / onnx.ONNX_FILE, tmp / onnx.ONNX_FILE)


def _prune_checkpoints(out: Path, keep: set[int]) -> None:
    """Drop Hugging Face checkpoints of closed rounds that are neither best nor latest."""
    for checkpoint in out.glob("round-*/model"):
        rnd = int(checkpoint.parent.name.split("-")[1])
        if rnd not in keep and (checkpoint.parent / "metrics.json").is_file() and \
                (files.is_marked(checkpoint) or (checkpoint / "train.json").is_file()):
            shutil.rmtree(checkpoint)


def _empty_pseudo(pool: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        schema={"id": pool["id"].dtype, "text": pl.String, "lang": pl.String, "label": pl.String,
                "confidence": pl.Float32, "round": pl.Int32, "selector": pl.String}
    )
