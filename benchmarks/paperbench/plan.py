"""The --plan estimate: slices, fitted max lengths, mean token counts and worst-case minutes per data set."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from .profiles import COSTS, SELECTORS, Bench, DataSpec, Profile, seeds_for
from .splits import Splits, fit_max_length, load_splits, unit_groups

log = logging.getLogger("xlc.bench")


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


def plan(bench: Bench, tokenizer: Any, prefix: str) -> tuple[dict[str, Splits], float]:
    """Load and slice every data set, fit its max length (into `bench.max_lengths`) and log the estimate.

    Returns the splits by data set name and the estimated seconds of the whole invocation.
    """
    profile, methods = bench.profile, bench.methods
    all_splits, total = {}, 0.0
    for spec in profile.data:
        splits = load_splits(spec, bench.data_dir)
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
    return all_splits, total
