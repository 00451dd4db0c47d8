"""The self-learning loop (Dong & de Melo 2019, Algorithm 1).

Each round: fine-tune on the labelled set L, export to ONNX, evaluate on dev/test,
score the pool U, let the selector pick pseudo-labelled texts, move them from U to L.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from xlc import data as data_mod
from xlc import files, metrics, model, onnx, report, selectors
from xlc.config import SelfTrainConfig
from xlc.errors import XlcError
from xlc.scoring import Scorer

log = logging.getLogger("xlc")
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances, e.g. ("train round 1", 12, 40)."""

RUN_FILES = ("report.json", "config.toml")


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


def load_data(config: SelfTrainConfig) -> data_mod.RunData:
    if config.uses_demo:
        return data_mod.load_demo(config.demo_langs)
    cols = data_mod.Columns(config.text_column, config.label_column, config.id_column, config.lang_column)
    return data_mod.load_files(
        Path(config.train), Path(config.unlabeled), Path(config.dev),
        Path(config.test) if config.test else None, cols,
    )


def prepare_out(out: Path) -> None:
    """Create the output folder; refuse one that already holds a run."""
    if out.exists() and not out.is_dir():
        raise XlcError(f"--out {out}: exists and is not a folder; choose another path")
    if out.is_dir() and any((out / name).exists() for name in RUN_FILES):
        raise XlcError(f"--out {out}: already holds a run; choose another folder or delete it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".xlc-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise XlcError(f"--out {out}: cannot write there ({exc.strerror}); choose another folder") from None


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def selftrain(
    config: SelfTrainConfig,
    progress: Progress | None = None,
    run_data: data_mod.RunData | None = None,
) -> RunResult:
    """Run self-training as `config` says and write everything under `config.out`."""
    progress = progress or _no_progress
    selectors.resolve_options(config.selector, config.selector_options)  # fail before any work
    out = Path(config.out)
    run_data = run_data or load_data(config)
    prepare_out(out)
    config.write_toml(out / "config.toml")
    if config.threads:
        torch.set_num_threads(config.threads)
    classes = run_data.classes
    index = {c: i for i, c in enumerate(classes)}
    clf = model.from_base(config.model, classes)
    labelled = run_data.train.select("text", "label")
    pool = run_data.pool
    pseudo: list[pl.DataFrame] = []
    rounds: list[dict] = []
    best_round, best_dev, stale = -1, -np.inf, 0
    stop_reason = ""
    for rnd in range(config.max_rounds + 1):
        round_dir = out / f"round-{rnd:02d}"
        round_dir.mkdir(exist_ok=True)
        record: dict = {"round": rnd, "labeled": labelled.height, "pool": pool.height}
        clock = model.timer()
        settings = model.TrainSettings(
            epochs=config.epochs, batch_size=config.batch_size, max_length=config.max_length,
            lr=config.lr, head_lr=config.head_lr, warmup=config.warmup,
            freeze_embeddings=config.freeze_embeddings, seed=config.seed + rnd,
        )
        y = np.array([index[c] for c in labelled["label"].to_list()])
        losses = model.fine_tune(
            clf, labelled["text"].to_list(), y, settings,
            on_step=lambda s, n, _loss: progress(f"round {rnd}: train", s, n),
        )
        record["train_loss"] = losses[-1]
        timings = {"train": clock()}

        clock = model.timer()
        onnx.export(clf, round_dir / "onnx")
        scorer = Scorer.open(round_dir / "onnx", threads=config.threads)
        timings["export"] = clock()

        clock = model.timer()
        for split, frame in (("dev", run_data.dev), ("test", run_data.test)):
            if frame is None:
                continue
            scored = _score(scorer, frame, config, progress, f"round {rnd}: {split}")
            record[split] = metrics.evaluate(scored, classes)
        timings["evaluate"] = clock()

        dev_acc = record["dev"]["accuracy"]
        if dev_acc > best_dev:
            best_round, best_dev, stale = rnd, dev_acc, 0
            _save_model(clf, round_dir / "onnx", out / "best")
        else:
            stale += 1
        log.info("round %d: labelled %d, dev accuracy %.4f", rnd, labelled.height, dev_acc)

        selected = None
        if stale >= config.patience:
            stop_reason = f"dev accuracy did not improve for {stale} round(s) (patience {config.patience})"
        elif rnd == config.max_rounds:
            stop_reason = f"reached --max-rounds {config.max_rounds}"
        elif pool.height == 0:
            stop_reason = "the unlabelled pool is empty"
        else:
            clock = model.timer()
            scored_pool = _score(scorer, pool, config, progress, f"round {rnd}: score pool")
            timings["score"] = clock()
            clock = model.timer()
            context = selectors.SelectionContext(
                classes, dict(labelled["label"].value_counts().iter_rows()), rnd
            )
            selected = selectors.select(config.selector, scored_pool, config.selector_options, context)
            timings["select"] = clock()
            selected = selected.select(
                "id", "text", "lang", "label", "confidence",
                pl.lit(rnd).alias("round"), pl.lit(config.selector).alias("selector"),
            )
            if selected.height == 0:
                stop_reason = f"selector {config.selector!r} took no texts"
        record["timings"] = timings
        record.update(_selection_facts(selected, classes, run_data.pool_gold))
        if selected is not None:
            data_mod.write_parquet(selected, round_dir / "selected.parquet")
        files.write_json(round_dir / "metrics.json", record)
        rounds.append(record)
        if stop_reason:
            break
        pseudo.append(selected)
        pool = pool.join(selected.select("id"), on="id", how="anti")
        labelled = pl.concat([labelled, selected.select("text", "label")])

    _save_model(clf, out / f"round-{rounds[-1]['round']:02d}" / "onnx", out / "final")
    pseudo_labels = pl.concat(pseudo) if pseudo else _empty_pseudo(run_data.pool)
    data_mod.write_parquet(pseudo_labels, out / "pseudo_labels.parquet")
    summary = report.build(config, classes, rounds, best_round, stop_reason)
    report.write(out, summary)
    return RunResult(
        out=out, rounds=report.rounds_frame(rounds), pseudo_labels=pseudo_labels,
        best_round=best_round, best_model=out / "best", final_model=out / "final",
        stop_reason=stop_reason, report=summary,
    )


def _score(scorer: Scorer, frame: pl.DataFrame, config: SelfTrainConfig, progress: Progress,
           stage: str) -> pl.DataFrame:
    if "label" in frame.columns:
        frame = frame.rename({"label": "gold"})
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


def _save_model(clf: model.Classifier, onnx_dir: Path, target: Path) -> None:
    """Write the Hugging Face model and its ONNX export (hard-linked) to `target`."""
    with files.atomic_dir(target) as tmp:
        clf.save(tmp)
        files.link_or_copy(onnx_dir / onnx.ONNX_FILE, tmp / onnx.ONNX_FILE)


def _empty_pseudo(pool: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        schema={"id": pool["id"].dtype, "text": pl.String, "lang": pl.String, "label": pl.String,
                "confidence": pl.Float32, "round": pl.Int32, "selector": pl.String}
    )
