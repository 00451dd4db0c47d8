"""Paired bootstrap intervals: is one model better than another on the same test items, or is it noise?"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000


def paired_bootstrap(diff: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """The mean of per-item differences (e.g. correct with B minus correct with A) and its 95% interval.

    The items are resampled with replacement `resamples` times (fixed `seed`) and the mean recomputed;
    the interval covers the sampling of the test set, not training randomness.
    """
    diff = np.asarray(diff, dtype=float)
    if diff.size == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"diff": float(diff.mean()), "low": float(low), "high": float(high),
            "share_not_above_zero": float((means <= 0).mean()), "items": int(len(diff)), "resamples": resamples}
