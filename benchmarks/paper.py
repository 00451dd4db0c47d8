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

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # run as a script its folder is on the path already; loaded by file path it may not be
    sys.path.insert(0, HERE)

from paperbench.cli import choose_profile, main, parse_args, setup_logging  # noqa: E402
from paperbench.plan import estimate, mean_tokens  # noqa: E402
from paperbench.profiles import (  # noqa: E402
    BOOTSTRAP_RESAMPLES,
    BUDGET,
    COMPARISONS,
    COSTS,
    FULL,
    METHODS,
    POWERED,
    SELECTORS,
    SMOKE,
    Bench,
    DataSpec,
    Profile,
    result_stem,
    seeds_for,
)
from paperbench.render import deviations, render_markdown  # noqa: E402
from paperbench.runs import control_epochs, run_method, run_unit, selector_options, train_steps  # noqa: E402
from paperbench.splits import Splits, fit_max_length, load_splits, unit_groups  # noqa: E402
from paperbench.stats import accuracy_table, collect, mean_sd, paired_bootstrap, transfer_gap  # noqa: E402

from xlc.errors import XlcError  # noqa: E402

__all__ = [
    "BOOTSTRAP_RESAMPLES", "BUDGET", "COMPARISONS", "COSTS", "FULL", "METHODS", "POWERED", "SELECTORS", "SMOKE",
    "Bench", "DataSpec", "Profile", "Splits", "XlcError", "accuracy_table", "choose_profile", "collect",
    "control_epochs", "deviations", "estimate", "fit_max_length", "load_splits", "main", "mean_sd", "mean_tokens",
    "paired_bootstrap", "parse_args", "render_markdown", "result_stem", "run_method", "run_unit", "seeds_for",
    "selector_options", "setup_logging", "train_steps", "transfer_gap", "unit_groups",
]

if __name__ == "__main__":
    setup_logging()
    try:
        main()
    except XlcError as exc:
        sys.exit(f"Error: {exc}")
