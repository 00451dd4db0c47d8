"""Reproduce the comparison of Dong & de Melo (2019) on the shared data sets with xlc.

    python benchmarks/paper.py              # the 60-minute CPU benchmark (2 cores), 3 seeds
    python benchmarks/paper.py --plan       # print the plan and its time estimate; run nothing
    python benchmarks/paper.py --smoke      # tiny model + bundled demo slice: the code path, ~30 s
    python benchmarks/paper.py --full       # the paper's protocol, for a machine with a GPU

Methods, per data set and seed: zero-shot (round 0 of the balanced run: English training
only), self-learning with the `balanced`, `throttling` and `thresholded` selectors and with
*pool-prior* (the xlc-classprior plugin's `prior` selector, class split estimated from the pool,
per target language), and a same-compute control (the labeled data alone, trained for at least as many optimiser steps
as the balanced run used in all its rounds). A frozen-encoder logistic regression on
mean-pooled embeddings is a cheap reference. Everything goes through the public API
(`xlc.selftrain`, `xlc.load`, `xlc.score`); the loop is not re-implemented here.

Writes `<out>/paper.md` (`paper-full.md`, `paper-smoke.md` for those modes): tables shaped like
the paper's Tables 1 and 3, macro-F1, pseudo-label class shares, paired bootstrap confidence
intervals, deviations from the paper, command, seeds, versions, hardware and wall time; beside it
`paper.json` (every number) and PNG plots. Each finished
run leaves a `summary.json` under `--work`, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import xlc
from xlc import data as xdata
from xlc import plots
from xlc._compat import package_version
from xlc.config import DEFAULTS, show
from xlc.errors import XlcError
from xlc.rundir import RunDir

log = logging.getLogger("xlc.bench")
ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"
SELECTORS = ("default", "balanced", "throttling", "thresholded", "pool-prior")  # the self-learning methods
METHODS = ("zero-shot", "default", "balanced", "throttling", "thresholded", "pool-prior", "control", "logreg")
PLUGIN_SELECTORS = {"pool-prior": "prior"}  # method -> selector of the xlc-classprior plugin
POOL_PRIOR_OPTIONS = {"proportions": "pool", "per_lang": True}  # pool-prior's options besides kt
BOOTSTRAP_RESAMPLES = 2000
COMPARISONS = (("default", "zero-shot"), ("default", "control"), ("default", "balanced"),
               ("balanced", "zero-shot"), ("balanced", "control"), ("pool-prior", "zero-shot"),
               ("pool-prior", "control"), ("pool-prior", "balanced"))

# Wall-clock cost model for --plan, measured with multilingual-e5-small on 2 CPU cores
# (see README "Reproducing the paper"); other machines and models differ.
COSTS = {"train_ms_per_token": 1.9, "score_ms_per_token": 0.5, "round_s": 14.0, "run_s": 12.0,
         "test_pass_s": 3.0, "logreg_s": 30.0}


# ---- what to run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    """One data set of the comparison: where it is and how big a slice of it to use."""

    name: str
    title: str
    kt: int                      # balanced: texts per class per round
    train: int | None            # English training texts (None = all)
    pool: int | None             # unlabeled texts per target language
    dev: int | None              # dev texts per target language
    test: int | None             # test texts per target language
    langs: tuple[str, ...] = ()  # target languages (empty = all in the file)


@dataclass(frozen=True)
class Profile:
    """A benchmark configuration: the data slices and the training protocol."""

    name: str
    data: tuple[DataSpec, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = DEFAULTS.model
    epochs: int = 2
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    head_lr: float = DEFAULTS.head_lr
    max_rounds: int = 2
    patience: int = DEFAULTS.patience
    max_length_cap: int = DEFAULTS.max_length  # the fitted max length (95th percentile of tokens) is capped here
    freeze_embeddings: bool = DEFAULTS.freeze_embeddings
    pooled: bool = True          # one run per selector for all target languages together
    test_every_round: bool = False
    threshold: float = 0.95
    selector_seeds: int | None = None  # throttling and thresholded run on this many leading seeds (None: all)
    logreg: bool = True
    threads: int | None = None   # CPU threads for training and scoring (None: all cores)
    methods: tuple[str, ...] = ("zero-shot", "balanced", "throttling", "thresholded", "pool-prior", "control",
                                "logreg")  # zero-shot and control come from "default" when it runs, else "balanced"
    select_epoch: bool = False   # choose each round's epochs on the target dev set (xlc's default)
    train_layers: int = DEFAULTS.train_layers  # train only the top layers on cached lower-layer features (0: all)
    note: str = ""


BUDGET = Profile(
    name="budget",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=40,
                 train=160, pool=600, dev=100, test=300),
        DataSpec("xlm_t_sentiment", "English -> 7 languages, tweet sentiment", kt=25,
                 train=160, pool=80, dev=20, test=50),
        DataSpec("sib200_mldoc8", "English -> 7 languages, SIB-200 topics (MLDoc stand-in)", kt=12,
                 train=160, pool=80, dev=20, test=50),
    ),
    epochs=2, batch_size=16, head_lr=1e-2, max_rounds=1, selector_seeds=1,
    note="60 minutes on 2 CPU cores: small slices of each data set, pooled target languages, one "
         "self-learning round, frozen word embeddings, max length fitted to the data (capped at 64 "
         "tokens), warm start; throttling and thresholded on the first seed only.",
)

FULL = Profile(
    name="full",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=100,
                 train=None, pool=None, dev=None, test=None),
        DataSpec("xlm_t_sentiment", "English -> 7 languages, tweet sentiment", kt=50,
                 train=None, pool=None, dev=None, test=None),
        DataSpec("sib200_mldoc8", "English -> 7 languages, SIB-200 topics (MLDoc stand-in)", kt=40,
                 train=None, pool=None, dev=None, test=None),
    ),
    epochs=3, max_rounds=10, patience=2, max_length_cap=256,
    freeze_embeddings=False, pooled=False, test_every_round=True, threshold=0.9,
    note="The paper's protocol: all data, one run per target language, trained embeddings, "
         "up to 10 rounds; for a machine with a GPU (hours on a CPU).",
)

POWERED = Profile(
    name="powered",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=100,
                 train=1000, pool=2000, dev=None, test=None),
        DataSpec("xlm_t_sentiment", "English -> German, Spanish, Hindi, tweet sentiment", kt=100,
                 train=1000, pool=None, dev=None, test=None, langs=("de", "es", "hi")),
        DataSpec("sib200_mldoc8", "English -> 4 languages, SIB-200 topics (MLDoc stand-in)", kt=40,
                 train=None, pool=None, dev=None, test=None,
                 langs=("deu_Latn", "fra_Latn", "rus_Cyrl", "zho_Hans")),
    ),
    methods=("zero-shot", "default", "balanced", "control"),
    epochs=6, select_epoch=True, train_layers=2, max_rounds=2, patience=2, selector_seeds=1, logreg=False,
    note="Powered: English train 1,000 (SIB-200: all 701), pools of 1,839-2,000 texts per target language "
         "(SIB-200: the whole 701), whole dev and test splits (204-1,000 texts per language); round 0 "
         "trained to its best epoch on the target dev set; the top 2 encoder layers train on cached "
         "lower-layer features; 3 seeds.",
)

SMOKE = Profile(
    name="smoke",
    data=(DataSpec("demo", "bundled demo slice: English -> German, Chinese (SIB-200)", kt=2,
                   train=48, pool=24, dev=10, test=16, langs=("deu_Latn", "zho_Hans")),),
    seeds=(0, 1), model="tiny", epochs=1, batch_size=16, max_rounds=1, patience=5, selector_seeds=1,
    max_length_cap=32, threshold=0.01, threads=1,
    note="SMOKE: a tiny random encoder on a slice of the bundled demo. It checks the code path; "
         "its numbers mean nothing.",
)


@dataclass
class Splits:
    """One data set, sliced: `pool` keeps its gold `label` (for precision only) and an `id`;
    `test` has an `item` number, the key that pairs predictions of different methods."""

    train: pl.DataFrame
    pool: pl.DataFrame
    dev: pl.DataFrame
    test: pl.DataFrame
    classes: tuple[str, ...]
    english: pl.DataFrame | None = None  # held-out English labeled texts: the source side of the transfer gap

    @property
    def langs(self) -> list[str]:
        return sorted(self.test["lang"].unique().to_list())

    def only(self, lang: str) -> Splits:
        keep = pl.col("lang") == lang
        return Splits(self.train, self.pool.filter(keep), self.dev.filter(keep), self.test.filter(keep),
                      self.classes, self.english)


def _slice(frame: pl.DataFrame, per_lang: int | None, seed: int = 0) -> pl.DataFrame:
    """At most `per_lang` rows of each language, sampled reproducibly; None keeps everything."""
    parts = []
    for lang in sorted(frame["lang"].unique().to_list()):
        rows = frame.filter(pl.col("lang") == lang).sort("text")
        if per_lang is not None and rows.height > per_lang:
            rows = rows.sample(n=per_lang, seed=seed)
        parts.append(rows)
    return pl.concat(parts).select("text", "label", "lang")


def load_splits(spec: DataSpec, data_dir: Path) -> Splits:
    """Read one data set and cut the slices that `spec` asks for (the same for every seed)."""
    if spec.name == "demo":
        frame = pl.read_parquet(xdata.demo_path())
        source, target = frame.filter(pl.col("lang") == "eng_Latn"), frame.filter(pl.col("lang") != "eng_Latn")
        parts = {"train": source.filter(pl.col("split") == "train"),
                 "pool": target.filter(pl.col("split") == "train"),
                 "dev": target.filter(pl.col("split") == "dev"),
                 "test": target.filter(pl.col("split") == "test"),
                 "english": source.filter(pl.col("split") == "test")}
    elif spec.name == "en2zh_sentiment":
        frame = _read(data_dir / "en2zh_sentiment.parquet")
        parts = {"train": frame.filter((pl.col("lang") == "en") & (pl.col("split") == "train")),
                 "pool": frame.filter((pl.col("lang") == "zh") & (pl.col("split") == "unlabeled")),
                 "dev": frame.filter((pl.col("lang") == "zh") & (pl.col("split") == "dev")),
                 "test": frame.filter((pl.col("lang") == "zh") & (pl.col("split") == "test")),
                 "english": frame.filter((pl.col("lang") == "en") & (pl.col("split") == "dev"))}
    elif spec.name == "xlm_t_sentiment":
        folder = data_dir / "xlm_t_sentiment"
        train, val, test = (_read(folder / f"{s}.parquet") for s in ("train", "val", "test"))
        other = pl.col("lang") != "en"
        parts = {"train": train.filter(~other), "pool": train.filter(other),
                 "dev": val.filter(other), "test": test.filter(other), "english": test.filter(~other)}
    elif spec.name == "sib200_mldoc8":
        frame = _read(data_dir / "sib200_mldoc8.parquet")
        other = pl.col("lang") != "eng_Latn"
        parts = {"train": frame.filter(~other & (pl.col("split") == "train")),
                 "pool": frame.filter(other & (pl.col("split") == "train")),
                 "dev": frame.filter(other & (pl.col("split") == "dev")),
                 "test": frame.filter(other & (pl.col("split") == "test")),
                 "english": frame.filter(~other & (pl.col("split") == "test"))}
    else:
        raise XlcError(f"unknown data set {spec.name!r}")
    if spec.langs:
        parts = {k: v if k in ("train", "english") else v.filter(pl.col("lang").is_in(list(spec.langs)))
                 for k, v in parts.items()}
    train = _slice(parts["train"], spec.train)
    pool = _slice(parts["pool"], spec.pool).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    test = _slice(parts["test"], spec.test).with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    classes = tuple(sorted(train["label"].unique().to_list()))
    english = _slice(parts["english"], spec.test).with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    return Splits(train, pool, _slice(parts["dev"], spec.dev), test, classes, english)


def _read(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise XlcError(f"{path}: not found; pass --data-dir (the folder of the shared data sets)")
    return pl.read_parquet(path)


def fit_max_length(splits: Splits, tokenizer: Any, prefix: str, cap: int) -> int:
    """The 95th percentile of token counts over training texts and pool, rounded up to 8, capped."""
    texts = splits.train["text"].to_list() + splits.pool["text"].to_list()
    lengths = [len(ids) for ids in tokenizer([prefix + t for t in texts], truncation=False)["input_ids"]]
    return int(min(cap, max(16, math.ceil(np.percentile(lengths, 95) / 8) * 8)))


# ---- running -----------------------------------------------------------------------------------

@dataclass
class Bench:
    """Settings of one benchmark invocation."""

    profile: Profile
    data_dir: Path
    work: Path
    out: Path
    model: str
    methods: tuple[str, ...]
    keep_models: bool = False
    threads: int | None = None
    max_lengths: dict[str, int] = field(default_factory=dict)


def unit_groups(profile: Profile, splits: Splits) -> list[str]:
    """"all" for a pooled run, else one group per target language."""
    return ["all"] if profile.pooled or len(splits.langs) == 1 else splits.langs


def seeds_for(profile: Profile, method: str) -> tuple[int, ...]:
    """The seeds a method runs with: all, except throttling and thresholded under `selector_seeds`."""
    if method in ("throttling", "thresholded") and profile.selector_seeds is not None:
        return profile.seeds[:profile.selector_seeds]
    return profile.seeds


def selector_options(method: str, spec: DataSpec, profile: Profile, classes: Sequence[str]) -> dict:
    if method == "balanced":
        return {"kt": spec.kt}
    if method == "pool-prior":  # as many texts as balanced, split by language, then by the pool's prior
        return {"kt": spec.kt, **POOL_PRIOR_OPTIONS}
    if method == "throttling":  # as many texts per round as balanced takes when every class has kt
        return {"n": spec.kt * len(classes)}
    return {"threshold": profile.threshold}


def train_steps(rounds: list[dict], epochs: int, batch_size: int) -> int:
    """Optimiser steps a run took: the report's count, else `epochs` epochs on each round's labeled set."""
    return sum(r["train"]["steps"] if r.get("train") else epochs * math.ceil(r["labeled"] / batch_size)
               for r in rounds)


def control_epochs(steps: int, labeled: int, batch_size: int) -> int:
    """Epochs on the labeled set alone that give at least `steps` optimiser steps."""
    return max(1, math.ceil(steps / math.ceil(labeled / batch_size)))


def run_unit(bench: Bench, spec: DataSpec, splits: Splits, seed: int, group: str) -> None:
    """All self-training methods (and the control) for one data set, seed and language group."""
    part = splits if group == "all" else splits.only(group)
    base = bench.work / spec.name / f"seed-{seed}" / group
    balanced_summary = None
    reference = "default" if "default" in bench.methods else "balanced"  # zero-shot and control come from it
    for method in (*SELECTORS, "control"):
        wanted = method in bench.methods or (method == reference and {"zero-shot", "control"} & set(bench.methods))
        if not wanted or seed not in seeds_for(bench.profile, method):
            continue
        folder = base / method
        done = folder / "summary.json"
        if done.is_file():
            log.info("%s seed %d %s %s: done before, kept", spec.name, seed, group, method)
            summary = json.loads(done.read_text())
        else:
            if method == "control" and balanced_summary is None:
                raise XlcError(f"the control needs the {reference} run of the same seed")
            summary = run_method(bench, spec, part, seed, method, folder, balanced_summary)
        if method == reference:
            balanced_summary = summary


def run_method(bench: Bench, spec: DataSpec, part: Splits, seed: int, method: str, folder: Path,
               balanced: dict | None) -> dict:
    """One xlc.selftrain run; writes summary.json and per-item test predictions in `folder`."""
    p = bench.profile
    run_dir = folder / "run"
    layout = RunDir(run_dir)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished attempt
    folder.mkdir(parents=True)
    max_length = bench.max_lengths[spec.name]
    settings: dict[str, Any] = dict(
        model=bench.model, seed=seed, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, head_lr=p.head_lr,
        max_length=max_length, max_rounds=p.max_rounds, patience=p.patience,
        freeze_embeddings=p.freeze_embeddings, id_column="id", threads=bench.threads,
        select_epoch=p.select_epoch, train_layers=p.train_layers,
    )
    matched = balanced and balanced["method"] == "default"
    if method == "default" or (method == "control" and matched):  # xlc selftrain's own settings
        settings = dict(model=bench.model, seed=seed, max_length=max_length, id_column="id",
                        threads=bench.threads)
    if method == "default":
        selector, options = None, None
    elif method == "control":
        assert balanced is not None
        if matched or p.select_epoch:  # the same optimiser steps, exactly (no early end), best epoch on dev
            settings.update(max_rounds=0, max_steps=balanced["train_steps"], epoch_patience=0)
        else:
            settings.update(max_rounds=0, epochs=control_epochs(balanced["train_steps"], part.train.height,
                                                               p.batch_size))
        selector, options = "balanced", {"kt": spec.kt}  # never used: round 0 is the only round
    else:
        selector = PLUGIN_SELECTORS.get(method, method)
        options = selector_options(method, spec, p, part.classes)
    shown = ({"steps to match": balanced["train_steps"]} if balanced and method == "control"
             else {**(options or {"settings": "xlc selftrain defaults"}),
                   "epochs per round": settings.get("epochs", "default")})
    log.info("%s seed %d %s: %s (%s) starts", spec.name, seed, folder.parent.name, method,
             ", ".join(f"{k} {v}" for k, v in shown.items()))
    start = time.perf_counter()
    run = xlc.selftrain(
        train=part.train, unlabeled=part.pool.select("id", "text", "lang", "label"), dev=part.dev,
        test=part.test.drop("item") if p.test_every_round else None, selector=selector,
        selector_options=options,
        out=run_dir, **settings,
    )
    run_seconds = time.perf_counter() - start
    clock = time.perf_counter()
    predictions = [_predict(run.best_model, part.test, max_length, p.batch_size, method, bench.threads)]
    if method == ("default" if "default" in bench.methods else "balanced"):  # round 0 = English only = zero-shot
        zero_shot = layout.round(0).onnx
        predictions.append(_predict(zero_shot, part.test, max_length, p.batch_size, "zero-shot", bench.threads))
        if part.english is not None and part.english.height:  # the source side of the transfer gap
            _predict(zero_shot, part.english, max_length, p.batch_size, "english",
                     bench.threads).write_parquet(folder / "english_predictions.parquet")
    pl.concat(predictions).write_parquet(folder / "test_predictions.parquet")
    gold = part.pool.select("id", pl.col("label").alias("gold"))
    pseudo = run.pseudo_labels.select("id", "lang", "label", "round").join(gold, on="id", how="left")
    pseudo.write_parquet(folder / "pseudo_labels.parquet")
    rounds = run.report["rounds"]
    summary = {
        "data": spec.name, "seed": seed, "group": folder.parent.name, "method": method,
        "selector": None if method == "control" else run.report["config"]["selector"],
        "selector_options": options if options is not None else run.report["config"].get("selector_options"),
        "settings": {k: v for k, v in settings.items() if k != "threads"},
        "rounds": len(rounds), "best_round": run.best_round, "stop_reason": run.stop_reason,
        "stop_code": run.stop_code,
        "train_steps": train_steps(rounds, settings.get("epochs", 0), p.batch_size),
        "labeled_start": part.train.height, "pseudo_labels": pseudo.height,
        "dev_accuracy": [r["dev"]["accuracy"] for r in rounds],
        "pseudo_precision": [r.get("pseudo_precision") for r in rounds],
        "seconds": {"selftrain": round(run_seconds, 1), "test": round(time.perf_counter() - clock, 1),
                    **{k: round(sum(r.get("timings", {}).get(k, 0) for r in rounds), 1)
                       for k in ("train", "export", "evaluate", "score")}},
    }
    if method == "control" and balanced is not None:
        summary["matched_to"] = {"balanced_train_steps": balanced["train_steps"],
                                 "balanced_rounds": balanced["rounds"]}
    for path in (layout.report_md, layout.report, *(run_dir / name for name in plots.PLOTS)):
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    if not bench.keep_models:
        for path in layout.model_folders():
            shutil.rmtree(path, ignore_errors=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("%s seed %d %s: %s done in %.0f s: %d rounds, best %d, %d pseudo-labels, %d steps",
             spec.name, seed, folder.parent.name, method, run_seconds, len(rounds), run.best_round,
             pseudo.height, summary["train_steps"])
    return summary


def _predict(model_dir: Path, test: pl.DataFrame, max_length: int, batch_size: int, method: str,
             threads: int | None) -> pl.DataFrame:
    clf = xlc.load(model_dir, max_length=max_length, batch_size=max(64, batch_size), threads=threads)
    scored = xlc.score(clf, test)
    return scored.select("item", "lang", "gold", pl.col("label").alias("predicted"),
                         pl.lit(method).alias("method"))


def run_logreg(bench: Bench, spec: DataSpec, splits: Splits) -> None:
    """Frozen encoder + scikit-learn logistic regression on mean-pooled embeddings (no seeds)."""
    folder = bench.work / spec.name / "logreg"
    if (folder / "test_predictions.parquet").is_file():
        return
    from sklearn.linear_model import LogisticRegression

    from xlc import model as xmodel

    start = time.perf_counter()
    clf = xmodel.from_base(bench.model, splits.classes)
    length = bench.max_lengths[spec.name]
    x_train = embed(clf, splits.train["text"].to_list(), length)
    x_test = embed(clf, splits.test["text"].to_list(), length)
    fit = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, splits.train["label"].to_list())
    folder.mkdir(parents=True, exist_ok=True)
    splits.test.select("item", "lang", pl.col("label").alias("gold"),
                pl.Series("predicted", fit.predict(x_test), dtype=pl.String),
                pl.lit("logreg").alias("method")).write_parquet(folder / "test_predictions.parquet")
    (folder / "summary.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))


def embed(clf: Any, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled final hidden states of the classifier's encoder (no gradient)."""
    import torch

    from xlc.model import pad_batch

    ids = clf.tokenizer([clf.text_prefix + t for t in texts], truncation=True,
                        max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), clf.model.config.hidden_size), dtype=np.float32)
    encoder = clf.model.encoder.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch, mask = pad_batch([ids[i] for i in rows], clf.tokenizer.pad_token_id)
            hidden = encoder(input_ids=batch, attention_mask=mask)[0]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)).numpy()
    return out


# ---- estimating --------------------------------------------------------------------------------

def mean_tokens(frame: pl.DataFrame, tokenizer: Any, prefix: str, max_length: int) -> float:
    if frame.height == 0:
        return 0.0
    ids = tokenizer([prefix + t for t in frame["text"].to_list()], truncation=True,
                    max_length=max_length)["input_ids"]
    return float(np.mean([len(x) for x in ids]))


def estimate(profile: Profile, spec: DataSpec, splits: Splits, tokens: dict[str, float],
             methods: Sequence[str], groups: int) -> dict[str, float]:
    """Worst-case seconds for one seed (every run goes to max_rounds, thresholded takes like balanced)."""
    c = COSTS
    k = spec.kt * len(splits.classes)
    pool, dev, test = (splits.pool.height / groups, splits.dev.height / groups, splits.test.height / groups)
    tok_train = (tokens["train"] + tokens["pool"]) / 2

    def selftrain_run(test_passes: int) -> tuple[float, int]:
        seconds, examples = c["run_s"], 0
        for r in range(profile.max_rounds + 1):
            labeled = splits.train.height + min(r * k, pool)
            examples += profile.epochs * labeled
            seconds += c["round_s"] + dev * tokens["dev"] * c["score_ms_per_token"] / 1000
            if r < profile.max_rounds:
                seconds += max(0, pool - r * k) * tokens["pool"] * c["score_ms_per_token"] / 1000
            if profile.test_every_round:
                seconds += test * tokens["test"] * c["score_ms_per_token"] / 1000
        seconds += examples * tok_train * c["train_ms_per_token"] / 1000
        seconds += test_passes * (c["test_pass_s"] + test * tokens["test"] * c["score_ms_per_token"] / 1000)
        return seconds, examples

    balanced, _ = selftrain_run(2)
    other, _ = selftrain_run(1)
    control = other - c["round_s"] * profile.max_rounds  # same training, a single round
    parts = {"balanced": balanced if {"balanced", "zero-shot", "control"} & set(methods) else 0.0,
             **{m: other if m in methods else 0.0 for m in SELECTORS[1:]},
             "control": control if "control" in methods else 0.0}
    return {k: v * groups for k, v in parts.items()}


# ---- results -----------------------------------------------------------------------------------

def collect(bench: Bench, spec: DataSpec, splits: Splits) -> dict:
    """Every number of one data set: per-item predictions, summaries and pseudo-labels of all runs."""
    preds, summaries, pseudo = [], [], []
    root = bench.work / spec.name
    for seed in bench.profile.seeds:
        for folder in sorted((root / f"seed-{seed}").glob("*/*")):
            if not (folder / "summary.json").is_file():
                continue
            summary = json.loads((folder / "summary.json").read_text())
            summaries.append(summary)
            frame = pl.read_parquet(folder / "test_predictions.parquet").with_columns(
                pl.lit(seed).alias("seed"), pl.lit(summary["group"]).alias("group"))
            preds.append(frame)
            if summary["method"] in SELECTORS:
                pseudo.append(pl.read_parquet(folder / "pseudo_labels.parquet").with_columns(
                    pl.lit(seed).alias("seed"), pl.lit(summary["method"]).alias("method")))
    logreg = root / "logreg" / "test_predictions.parquet"
    if "logreg" in bench.methods and logreg.is_file():
        frame = pl.read_parquet(logreg)
        preds += [frame.with_columns(pl.lit(seed).alias("seed"), pl.lit("all").alias("group"))
                  for seed in bench.profile.seeds]
    if not preds:
        raise XlcError(f"{root}: no finished runs to report")
    english = [float((frame["gold"] == frame["predicted"]).mean()) for frame in
               (pl.read_parquet(f) for f in sorted(root.glob("seed-*/*/*/english_predictions.parquet")))]
    predictions = pl.concat(preds, how="diagonal_relaxed").with_columns(
        (pl.col("gold") == pl.col("predicted")).alias("correct"))
    pseudo_labels = pl.concat(pseudo, how="diagonal_relaxed") if pseudo else None
    methods = [m for m in METHODS if m in set(predictions["method"].to_list())]
    return {
        "spec": asdict(spec), "classes": list(splits.classes), "langs": splits.langs,
        "sizes": {k: getattr(splits, k).height for k in ("train", "pool", "dev", "test")},
        "max_length": bench.max_lengths.get(spec.name),
        "methods": methods,
        "accuracy": accuracy_table(predictions, methods, splits.langs),
        "macro_f1": macro_f1_table(predictions, methods, splits.classes),
        "precision": precision_table(pseudo_labels, splits.langs) if pseudo_labels is not None else {},
        "class_shares": class_shares(pseudo_labels, splits),
        "bootstrap": {f"{a} - {b}": paired_bootstrap(predictions, a, b) for a, b in COMPARISONS
                      if {a, b} <= set(methods)},
        "gap": transfer_gap(english, predictions, methods),
        "runs": summaries,
        "rounds": rounds_table(summaries),
    }


def transfer_gap(english: list[float], predictions: pl.DataFrame, methods: Sequence[str]) -> dict | None:
    """English test accuracy minus target test accuracy of round 0, and the share of it each method closes."""
    if not english or "zero-shot" not in methods:
        return None
    acc = {m: float(predictions.filter(pl.col("method") == m)["correct"].mean()) for m in methods}
    gap = float(np.mean(english)) - acc["zero-shot"]
    return {"english": float(np.mean(english)), "gap": gap,
            "closed": {m: (acc[m] - acc["zero-shot"]) / gap if gap > 0 else None
                       for m in methods if m not in ("zero-shot", "logreg")}}


def mean_sd(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": len(arr)}


def accuracy_table(predictions: pl.DataFrame, methods: Sequence[str], langs: Sequence[str]) -> dict:
    """{lang or "all": {method: mean/sd over seeds of test accuracy}}."""
    table: dict[str, dict] = {}
    for scope in [*langs, "all"]:
        rows = predictions if scope == "all" else predictions.filter(pl.col("lang") == scope)
        per_seed = rows.group_by("method", "seed").agg(pl.col("correct").mean().alias("acc"))
        table[scope] = {m: mean_sd(per_seed.filter(pl.col("method") == m)["acc"].to_list())
                        for m in methods if per_seed.filter(pl.col("method") == m).height}
    return table


def macro_f1_table(predictions: pl.DataFrame, methods: Sequence[str], classes: Sequence[str]) -> dict:
    from sklearn.metrics import f1_score

    table = {}
    for m in methods:
        scores = []
        for (_seed,), rows in predictions.filter(pl.col("method") == m).group_by(["seed"]):
            scores.append(f1_score(rows["gold"].to_list(), rows["predicted"].to_list(), labels=list(classes),
                                   average="macro", zero_division=0))
        table[m] = mean_sd(scores)
    return table


def precision_table(pseudo: pl.DataFrame, langs: Sequence[str]) -> dict:
    """{lang or "all": {selector: mean/sd over seeds of pseudo-label precision, all rounds}}."""
    pseudo = pseudo.with_columns((pl.col("label") == pl.col("gold")).alias("right"))
    table: dict[str, dict] = {}
    for scope in [*langs, "all"]:
        rows = pseudo if scope == "all" else pseudo.filter(pl.col("lang") == scope)
        per_seed = rows.group_by("method", "seed").agg(pl.col("right").mean().alias("p"), pl.len().alias("n"))
        table[scope] = {}
        for m in SELECTORS:
            mine = per_seed.filter(pl.col("method") == m)
            if mine.height:
                table[scope][m] = {**mean_sd(mine["p"].to_list()), "labels": int(mine["n"].sum())}
    return table


def class_shares(pseudo: pl.DataFrame | None, splits: Splits) -> dict:
    """Share of each class among the pseudo-labels per selector (all seeds), and in the pool's truth."""
    truth = splits.pool["label"].value_counts()
    total = splits.pool.height
    shares = {"pool (truth)": {c: _count(truth, c) / total for c in splits.classes}}
    if pseudo is not None:
        for m in SELECTORS:
            rows = pseudo.filter(pl.col("method") == m)
            if rows.height:
                counts = rows["label"].value_counts()
                shares[m] = {c: _count(counts, c) / rows.height for c in splits.classes}
    return shares


def _count(counts: pl.DataFrame, value: str) -> int:
    hit = counts.filter(pl.col(counts.columns[0]) == value)
    return int(hit["count"][0]) if hit.height else 0


def paired_bootstrap(predictions: pl.DataFrame, a: str, b: str, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict:
    """Accuracy of `a` minus `b` on the same test items, with a 95% paired bootstrap interval.

    Each item's correctness is averaged over the seeds both methods ran; the items are then
    resampled with replacement (`resamples` times, fixed `seed`) and the difference of the mean
    recomputed. The interval covers test-set sampling; the seed spread is reported beside it.
    """
    def per_item(method: str) -> pl.DataFrame:
        return (predictions.filter(pl.col("method") == method)
                .group_by("item").agg(pl.col("correct").cast(pl.Float64).mean().alias(method)))

    seeds = (set(predictions.filter(pl.col("method") == a)["seed"].to_list())
             & set(predictions.filter(pl.col("method") == b)["seed"].to_list()))
    predictions = predictions.filter(pl.col("seed").is_in(sorted(seeds)))
    joined = per_item(a).join(per_item(b), on="item", how="inner").sort("item")
    diff = (joined[a] - joined[b]).to_numpy()
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"diff": float(diff.mean()), "low": float(low), "high": float(high),
            "share_not_above_zero": float((means <= 0).mean()), "items": len(diff), "seeds": len(seeds),
            "resamples": resamples}


def rounds_table(summaries: list[dict]) -> dict:
    """Per method: mean over seeds (and language groups) of dev accuracy and precision per round."""
    out: dict[str, dict] = {}
    for method in SELECTORS:
        mine = [s for s in summaries if s["method"] == method]
        if not mine:
            continue
        longest = max(len(s["dev_accuracy"]) for s in mine)
        out[method] = {
            key: [_mean([s[key][r] for s in mine if r < len(s[key]) and s[key][r] is not None])
                  for r in range(longest)]
            for key in ("dev_accuracy", "pseudo_precision")
        }
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# ---- writing -----------------------------------------------------------------------------------

def pct(stats: dict | None, sd: bool = True) -> str:
    if not stats:
        return "-"
    text = f"{100 * stats['mean']:.1f}"
    return text + (f" ± {100 * stats['sd']:.1f}" if sd and stats.get("n", 1) > 1 else "")


def render_markdown(result: dict) -> str:
    meta, lines = result["meta"], []
    smoke = result["profile"]["name"] == "smoke"
    lines += ["# Reproducing Dong & de Melo (2019) with xlc", ""]
    if smoke:
        lines += ["> **SMOKE RUN.** A tiny random encoder on a slice of the bundled demo: this file shows",
                  "> the shape of the results and checks the code path. Its numbers mean nothing.", ""]
    lines += [
        f"- command: `{meta['command']}`",
        f"- profile: **{result['profile']['name']}**: {result['profile']['note']}",
        f"- seeds: {', '.join(str(s) for s in result['profile']['seeds'])}; data slices are the same for "
        f"every seed (sampling seed 0); bootstrap: {BOOTSTRAP_RESAMPLES} resamples, numpy seed 0",
        f"- model: `{meta['model']}`; epochs per round {result['profile']['epochs']}, batch "
        f"{result['profile']['batch_size']}, lr {result['profile']['lr']}, max rounds "
        f"{result['profile']['max_rounds']}, patience {result['profile']['patience']}, embeddings "
        f"{'frozen' if result['profile']['freeze_embeddings'] else 'trained'}",
        f"- started {meta['started']}, wall time **{meta['wall_minutes']:.1f} minutes** for this invocation; "
        f"the runs reported here took **{meta['runs_minutes']:.1f} minutes** summed (runs finished by an "
        f"earlier invocation of the same `--work` folder are reused and counted here, not in the wall time)",
        f"- hardware: {meta['hardware']['cpu']} ({meta['hardware']['cores']} cores visible, torch threads "
        f"{meta['hardware']['torch_threads']}), GPU: {meta['hardware']['gpu']}, {meta['hardware']['platform']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "Accuracy and macro-F1 are on the target-language test sets, in percent, mean ± standard "
        "deviation over seeds. *zero-shot* is round 0 of the balanced run (English training only); "
        "each self-learning method reports its best round on the target dev set; *control* trains on "
        "the English data alone for at least as many optimiser steps as the balanced run took; "
        "*pool-prior* is the `prior` selector of the xlc-classprior plugin with `proportions=pool` "
        "and `per_lang=true` (as many texts as balanced, split across languages by pool size and "
        "across classes by each language pool's mean predicted class probabilities); "
        "*logreg* is a logistic regression on frozen mean-pooled embeddings (deterministic).",
        "",
    ]
    lines += ["## Summary", "", "Test accuracy, all target languages:", "",
              "| data set | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name, ds in result["datasets"].items():
        acc = ds["accuracy"]["all"]
        lines.append(f"| {name} | " + " | ".join(pct(acc.get(m)) for m in METHODS) + " |")
    labels = [f"{a} − {b}" for a, b in COMPARISONS]
    lines += ["", "Paired differences in accuracy points, with 95% bootstrap intervals:", "",
              "| data set | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, ds in result["datasets"].items():
        lines.append(f"| {name} | " + " | ".join(_ci(ds["bootstrap"].get(f"{a} - {b}")) for a, b in COMPARISONS)
                     + " |")
    for name, ds in result["datasets"].items():
        lines += dataset_markdown(name, ds)
    lines += ["", "## Deviations from the paper's protocol", ""]
    lines += [f"- {d}" for d in result["deviations"]]
    lines += ["", "## Same-compute control: what it matches and what it does not", "", CONTROL_NOTE]
    return "\n".join(lines) + "\n"


def _ci(boot: dict | None) -> str:
    if not boot:
        return "-"
    return f"{100 * boot['diff']:+.1f} [{100 * boot['low']:+.1f}, {100 * boot['high']:+.1f}]"


def dataset_markdown(name: str, ds: dict) -> list[str]:
    spec, methods = ds["spec"], ds["methods"]
    lines = ["", f"## {name}: {spec['title']}", "",
             f"Slices: English train {ds['sizes']['train']}, pool {ds['sizes']['pool']}, dev "
             f"{ds['sizes']['dev']}, test {ds['sizes']['test']} (target languages: {', '.join(ds['langs'])}); "
             f"classes: {', '.join(ds['classes'])}; Kt = {spec['kt']}; max length {ds['max_length']} tokens.",
             "", "### Test accuracy per target language (cf. the paper's Table 1)", "",
             "| language | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for scope, row in ds["accuracy"].items():
        label = "**all**" if scope == "all" else scope
        lines.append(f"| {label} | " + " | ".join(pct(row.get(m)) for m in methods) + " |")
    gap = ds.get("gap")
    if gap:
        closed = ", ".join(f"{m} {100 * v:+.0f}%" for m, v in gap["closed"].items() if v is not None)
        lines += ["", f"**Transfer gap**: round 0 scores {100 * gap['english']:.1f}% on held-out English and "
                  f"{100 * (gap['english'] - gap['gap']):.1f}% on the target languages, a gap of "
                  f"{100 * gap['gap']:.1f} points; share of it each method closes: {closed or '-'}."]
    lines += ["", "### Macro-F1, all target languages", "", "| " + " | ".join(methods) + " |",
              "|" + "---|" * len(methods), "| " + " | ".join(pct(ds["macro_f1"].get(m)) for m in methods) + " |"]
    if ds["precision"]:
        sels = [s for s in SELECTORS if s in ds["precision"]["all"]]
        lines += ["", "### Pseudo-label precision per language, all rounds (cf. the paper's Table 3)", "",
                  "| language | " + " | ".join(f"{s} (labels, all seeds)" for s in sels) + " |",
                  "|---|" + "---|" * len(sels)]
        for scope, row in ds["precision"].items():
            cells = [f"{pct(row.get(s))} ({row[s]['labels']})" if s in row else "-" for s in sels]
            lines.append(f"| {'**all**' if scope == 'all' else scope} | " + " | ".join(cells) + " |")
    shares = ds["class_shares"]
    cols = list(shares)
    lines += ["", "### Share of each class among the pseudo-labels (all rounds and seeds), %", "",
              "| class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c in ds["classes"]:
        lines.append(f"| {c} | " + " | ".join(f"{100 * shares[k][c]:.1f}" for k in cols) + " |")
    if ds["bootstrap"]:
        lines += ["", "### Paired bootstrap, all target languages (accuracy points)", "",
                  "| comparison | difference | 95% CI | resamples ≤ 0 | items × seeds |", "|---|---|---|---|---|"]
        for label, b in ds["bootstrap"].items():
            lines.append(f"| {label} | {100 * b['diff']:+.2f} | [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}] | "
                         f"{100 * b['share_not_above_zero']:.1f}% | {b['items']} × {b['seeds']} |")
    lines += ["", "### Runs", "", "| method | seed | group | rounds | best round | stop | pseudo-labels | "
              "train steps | epochs/round | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(ds["runs"], key=lambda s: (METHODS.index(s["method"]), s["seed"], s["group"])):
        lines.append(f"| {s['method']} | {s['seed']} | {s['group']} | {s['rounds']} | {s['best_round']} | "
                     f"{s['stop_reason']} | {s['pseudo_labels']} | {s['train_steps']} | "
                     f"{s['settings'].get('epochs', 'default')} | "
                     f"{s['seconds']['selftrain'] + s['seconds']['test']:.0f} |")
    lines += [""] + [f"![{name} {what}]({file})" for what, file in ds.get("plots", {}).items()]
    return lines


CONTROL_NOTE = (
    "The control is `xlc.selftrain(..., max_rounds=0, epochs=E)`: one round on the English "
    "labeled data, with E = ceil(S / ceil(|L| / batch)) where S is the number of optimiser steps "
    "the balanced run of the same seed took over all its rounds (each round trains the configured "
    "epochs on the labeled set of that round, which grows by the pseudo-labels). So the control "
    "gets at least as many gradient steps (and as many or more example-passes of *labeled* data) "
    "as self-learning, without pseudo-labels. It is not identical compute in every respect: "
    "self-learning restarts AdamW with a fresh warm-up and linear decay every round (warm start "
    "from the previous round's weights), whereas the control runs one long schedule; the control "
    "repeats the same few English texts many times, while self-learning sees new target-language "
    "texts; self-learning also spends time scoring the pool (inference, not training); and the "
    "control has no dev-based choice between rounds (its only round is its result), whereas "
    "self-learning keeps its best round on the dev set. The extra steps of self-learning that "
    "come after its best round are counted too, which favours the control."
)


def deviations(profile: Profile) -> list[str]:
    out = [
        "Encoder: multilingual-e5-small (118 M parameters, mean pooling, linear head) instead of "
        "multilingual BERT; `--model PATH` runs any local Hugging Face encoder (pass `--lr 3e-5` for "
        "base-size ones).",
        "Data: stand-ins for the paper's sets (SIB-200 topics for MLDoc, ChnSentiCorp hotel reviews "
        "with English movie-review sentences for Yelp -> Chinese hotels, XLM-T tweets); the "
        "published numbers are on other data and are not comparable one to one.",
        "Every round continues from the previous round's model (warm start) with a fresh optimiser.",
        "Ordinal MSE (the paper's Table 2) is not reported: none of these data sets has ordinal labels "
        "(`xlc evaluate --ordinal` computes it for data that has).",
        f"Throttling takes n = Kt × classes texts per round (as many as balanced at most); "
        f"thresholded takes every text with confidence >= {profile.threshold}.",
    ]
    if profile.pooled:
        out.append("Target languages are pooled: one run per selector and seed for all target languages "
                   "of a data set (one pool, one dev set for early stopping), instead of one run per "
                   "language. Balanced takes Kt per class from the pooled pool, so about Kt / languages "
                   "per language and class.")
    if profile.head_lr != DEFAULTS.head_lr:
        out.append(f"Head learning rate {profile.head_lr:g} (xlc's default is {show(DEFAULTS.head_lr)}): "
                   f"with so few steps per round the default head barely learns (round-0 dev accuracy on "
                   f"SIB-200, 1 epoch: 0.31 with 1e-3, 0.48 with 1e-2; 2 epochs with 1e-2: 0.70 to 0.76).")
    if profile.freeze_embeddings:
        out.append("The word-embedding table is frozen (30-40% faster steps on a CPU).")
    sliced = [d for d in profile.data if any(v is not None for v in (d.train, d.pool, d.dev, d.test))]
    for d in sliced:
        out.append(f"{d.name}: slices, not the full sets: English train {d.train or 'all'}, per target "
                   f"language pool {d.pool or 'all'}, dev {d.dev or 'all'}, test {d.test or 'all'}.")
    out.append(f"Max length: the 95th percentile of token counts of train + pool, capped at "
               f"{profile.max_length_cap} tokens.")
    out.append(f"Self-learning rounds after round 0: at most {profile.max_rounds}, patience "
               f"{profile.patience}; epochs per round: {profile.epochs}.")
    if not profile.test_every_round:
        out.append("Test sets are scored only with the best and the round-0 models (not every round), "
                   "to save time.")
    return out


def write_plots(out: Path, stem: str, name: str, ds: dict) -> dict[str, str]:
    """Bars of accuracy per language and method; class shares per selector; rounds per selector."""
    drawn = {}
    fig = plots.figure(max(7.5, 1.1 * len(ds["accuracy"]) + 3), 4.4)
    ax = fig.subplots()
    groups = list(ds["accuracy"])
    plots.grouped_bars(ax, groups, {m: [ds["accuracy"][g].get(m, {}).get("mean") for g in groups]
                                     for m in ds["methods"]},
                        {m: [ds["accuracy"][g].get(m, {}).get("sd") for g in groups] for m in ds["methods"]})
    low = min((v["mean"] for row in ds["accuracy"].values() for v in row.values()), default=0)
    ax.set_ylim(max(0, low - 0.1), 1)
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    ax.set_title(f"{name}: test accuracy per target language and method")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    drawn["accuracy"] = plots.save_png(fig, out / f"{stem}-{name}-accuracy.png").name

    shares = ds["class_shares"]
    if len(shares) > 1:
        fig = plots.figure(7.5, 4.2)
        ax = fig.subplots()
        plots.stacked_bars(ax, list(shares), {c: [shares[k][c] for k in shares] for c in ds["classes"]})
        ax.set_ylabel("share of pseudo-labels")
        ax.set_title(f"{name}: class of the pseudo-labels, per selector (all rounds and seeds)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        drawn["pseudo-label classes"] = plots.save_png(fig, out / f"{stem}-{name}-classes.png").name

    if ds["rounds"]:
        fig = plots.figure(10, 4)
        axes = fig.subplots(1, 2)
        for (method, row), color in zip(ds["rounds"].items(), plots.colors(len(ds["rounds"])), strict=True):
            for ax, key in zip(axes, ("dev_accuracy", "pseudo_precision"), strict=True):
                ys = row[key]
                ax.plot(range(len(ys)), plots.gaps(ys), marker="o", color=color, label=method)
        axes[0].set_title("dev accuracy per round (mean over seeds)")
        axes[1].set_title("pseudo-label precision per round (mean over seeds)")
        longest = max(len(row["dev_accuracy"]) for row in ds["rounds"].values())
        for ax in axes:
            ax.set_xlabel("round")
            ax.set_xticks(range(longest))
            ax.set_xlim(-0.3, longest - 0.7)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, frameon=False)
        drawn["rounds"] = plots.save_png(fig, out / f"{stem}-{name}-rounds.png").name
    return drawn


def runs_minutes(datasets: Any, work: Path) -> float:
    """Minutes of every reported run (self-training, test scoring, logistic regression), summed."""
    seconds = sum(r["seconds"]["selftrain"] + r["seconds"]["test"] for ds in datasets for r in ds["runs"])
    for ds in datasets:
        logreg = work / ds["spec"]["name"] / "logreg" / "summary.json"
        if "logreg" in ds["methods"] and logreg.is_file():
            seconds += json.loads(logreg.read_text())["seconds"]
    return seconds / 60


def hardware() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None, "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    return {d: package_version(d) for d in ("xlc", "torch", "transformers", "optimum-onnx", "onnxruntime",
                                            "polars", "scikit-learn", "numpy", "matplotlib")}


# ---- main --------------------------------------------------------------------------------------

def check_work(bench: Bench, all_splits: dict[str, Splits]) -> None:
    """Refuse a --work folder whose finished runs were made with other settings (no silent reuse).

    Seeds, data sets and the throttling/thresholded seed count may differ between invocations
    (more seeds or another data set later); everything that changes a run's result may not.
    """
    free = ("data", "seeds", "note", "selector_seeds", "threads", "logreg")
    plan = json.loads(json.dumps({
        "settings": {k: v for k, v in asdict(bench.profile).items() if k not in free},
        "model": bench.model,
        "datasets": {name: {"spec": asdict(next(d for d in bench.profile.data if d.name == name)),
                            "max_length": bench.max_lengths[name],
                            "sizes": {x: getattr(s, x).height for x in ("train", "pool", "dev", "test")}}
                     for name, s in all_splits.items()},
    }, default=str))
    path = bench.work / "plan.json"
    if path.is_file():
        found = json.loads(path.read_text())
        differs = [k for k in ("settings", "model") if found.get(k) != plan[k]]
        differs += [name for name, value in plan["datasets"].items()
                    if name in found.get("datasets", {}) and found["datasets"][name] != value]
        if differs:
            raise XlcError(f"--work {bench.work} holds runs made with different {', '.join(differs)}; "
                           f"pass another --work folder or delete this one")
        plan["datasets"] = {**found.get("datasets", {}), **plan["datasets"]}
    path.write_text(json.dumps(plan, indent=2))


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def check_plugin_selectors(methods: Sequence[str]) -> None:
    """Fail before any run when a method's plugin selector is missing or too old for its options."""
    from xlc.selectors import resolve_options

    for method, selector in PLUGIN_SELECTORS.items():
        if method in methods:
            try:
                resolve_options(selector, POOL_PRIOR_OPTIONS)
            except XlcError as exc:
                raise XlcError(f"method {method} needs the xlc-classprior plugin ({exc}); install it with "
                               f"`pip install -e plugins/xlc-classprior` (`make install` does), or leave "
                               f"{method} out of --methods") from None


def result_stem(profile: Profile) -> str:
    """paper.md for the default benchmark; paper-full.md, paper-smoke.md for the other profiles."""
    return "paper" if profile.name == "budget" else f"paper-{profile.name}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny random model on the bundled demo slice")
    mode.add_argument("--full", action="store_true", help="the paper's protocol (a GPU machine)")
    mode.add_argument("--powered", action="store_true", help="larger slices, round 0 to its best epoch, "
                      "cached lower layers: ~3 hours on 2 CPU cores")
    ap.add_argument("--plan", action="store_true", help="print the plan and its time estimate, run nothing")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"shared data sets [default: {DATA_DIR}]")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where paper.md, paper.json and the plots go [default: benchmarks/results]")
    ap.add_argument("--work", type=Path, help="run folders (resumable) [default: runs/paper-<profile>]")
    ap.add_argument("--datasets", help="comma-separated subset of the profile's data sets")
    ap.add_argument("--seeds", help="comma-separated seeds [default: the profile's]")
    ap.add_argument("--methods", help="comma-separated subset of "
                    f"{', '.join(METHODS)} [default: the profile's; all but default, except --powered]")
    ap.add_argument("--model", help="encoder for every run [default: multilingual-e5-small; --smoke: tiny]")
    ap.add_argument("--lr", type=float, help="encoder learning rate [default: the profile's]")
    ap.add_argument("--epochs", type=int, help="epochs per round [default: the profile's: budget 2, full 3]")
    ap.add_argument("--selector-seeds", type=int, help="run throttling and thresholded on the first N "
                    "seeds only, 0 = all [default: the profile's: budget 1, full all]")
    ap.add_argument("--threads", type=int, help="CPU threads [default: all]")
    ap.add_argument("--keep-models", action="store_true", help="keep each run's models (~2 GB per run)")
    return ap.parse_args(argv)


def choose_profile(args: argparse.Namespace) -> Profile:
    profile = SMOKE if args.smoke else FULL if args.full else POWERED if args.powered else BUDGET
    if args.datasets:
        wanted = [x.strip() for x in args.datasets.split(",") if x.strip()]
        known = {d.name for d in profile.data}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise XlcError(f"--datasets: unknown {unknown}; this profile has {', '.join(sorted(known))}")
        profile = replace(profile, data=tuple(d for d in profile.data if d.name in wanted))
    if args.seeds:
        profile = replace(profile, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.lr:
        profile = replace(profile, lr=args.lr)
    if args.epochs:
        profile = replace(profile, epochs=args.epochs)
    if args.selector_seeds is not None:
        profile = replace(profile, selector_seeds=args.selector_seeds or None)
    return profile


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    profile = choose_profile(args)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else profile.methods
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise XlcError(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    check_plugin_selectors(methods)
    work = args.work or ROOT / "runs" / f"paper-{profile.name}"
    work.mkdir(parents=True, exist_ok=True)
    model_name = args.model or profile.model
    if model_name == "tiny":
        from xlc.model import build_tiny

        tiny = work / "tiny-encoder"
        if not (tiny / "config.json").is_file():
            build_tiny(tiny)
        model_name = str(tiny)
    threads = args.threads or profile.threads
    if threads:
        import torch

        torch.set_num_threads(threads)  # the logistic-regression embeddings too
    bench = Bench(profile, args.data_dir, work, args.out, model_name, methods, args.keep_models, threads)

    from xlc.model import load_tokenizer, resolve_base

    base, prefix = resolve_base(model_name)
    tokenizer = load_tokenizer(base)
    all_splits, total = {}, 0.0
    for spec in profile.data:
        splits = load_splits(spec, args.data_dir)
        all_splits[spec.name] = splits
        bench.max_lengths[spec.name] = fit_max_length(splits, tokenizer, prefix, profile.max_length_cap)
        tokens = {k: mean_tokens(getattr(splits, k), tokenizer, prefix, bench.max_lengths[spec.name])
                  for k in ("train", "pool", "dev", "test")}
        groups = len(unit_groups(profile, splits))
        cost = estimate(profile, spec, splits, tokens, methods, groups)
        seconds = sum(v * len(seeds_for(profile, k)) for k, v in cost.items())
        if "logreg" in methods and profile.logreg:
            seconds += COSTS["logreg_s"]
        total += seconds
        log.info("%s: train %d, pool %d, dev %d, test %d, %d classes, max length %d, mean tokens %s; "
                 "estimate %.0f min (%s per seed)", spec.name, splits.train.height, splits.pool.height,
                 splits.dev.height, splits.test.height, len(splits.classes), bench.max_lengths[spec.name],
                 {k: round(v) for k, v in tokens.items()}, seconds / 60,
                 ", ".join(f"{k} {v / 60:.1f}" for k, v in cost.items() if v))
    log.info("profile %s, seeds %s: estimated at most %.0f minutes (cost model of multilingual-e5-small "
             "on 2 idle CPU cores)", profile.name,
             ",".join(map(str, profile.seeds)), total / 60)
    if args.plan:
        return None
    check_work(bench, all_splits)

    for spec in profile.data:
        splits = all_splits[spec.name]
        if "logreg" in methods and profile.logreg:
            run_logreg(bench, spec, splits)
        for seed in profile.seeds:
            for group in unit_groups(profile, splits):
                run_unit(bench, spec, splits, seed, group)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(profile)
    result: dict[str, Any] = {
        "profile": {k: v for k, v in asdict(profile).items() if k != "data"},
        "deviations": deviations(profile),
        "datasets": {},
    }
    for spec in profile.data:
        ds = collect(bench, spec, all_splits[spec.name])
        ds["plots"] = write_plots(args.out, stem, spec.name, ds)
        result["datasets"][spec.name] = ds
    result["meta"] = {
        "command": " ".join([Path(sys.executable).name, *(sys.argv if argv is None else
                                                          ["benchmarks/paper.py", *argv])]),
        "model": args.model or profile.model, "started": started.isoformat(timespec="seconds"),
        "wall_minutes": (time.perf_counter() - clock) / 60, "estimate_minutes": total / 60,
        "runs_minutes": runs_minutes(result["datasets"].values(), work),
        "hardware": hardware(), "versions": versions(), "work": _relative(work),
    }
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(render_markdown(result))
    log.info("wrote %s (%.1f minutes)", args.out / f"{stem}.md", result["meta"]["wall_minutes"])
    return result


def setup_logging() -> None:
    """Progress lines with the time of day on stderr; library chatter silenced."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("transformers", "optimum", "torch", "onnxruntime", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


if __name__ == "__main__":
    setup_logging()
    try:
        main()
    except XlcError as exc:
        sys.exit(f"Error: {exc}")
