"""The selection rules, as pure functions of a scored pool (no plugin machinery here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from xlc import SelectionContext, XlcError


def quotas(total: int, counts: Mapping[str, int], classes: Sequence[str]) -> dict[str, int]:
    """Split `total` across `classes` in proportion to `counts`; the quotas sum to exactly `total`.

    Largest remainder (Hamilton) rounding, in exact integer arithmetic: each class first gets
    floor(total * count / sum of counts); the texts still missing go one each to the classes
    with the largest remainders, ties to the class listed first. A class with count 0 gets 0.
    If every count is 0 the split is even.
    """
    weights = [max(int(counts.get(c, 0)), 0) for c in classes]
    mass = sum(weights)
    if mass == 0:
        weights, mass = [1] * len(classes), len(classes)
    share = [total * w // mass for w in weights]
    remainder = [total * w % mass for w in weights]
    missing = total - sum(share)
    for i in sorted(range(len(classes)), key=lambda i: (-remainder[i], i))[:missing]:
        share[i] += 1
    return dict(zip(classes, share, strict=True))


def take_per_class(pool: pl.DataFrame, quota: Mapping[str, int], score: str) -> pl.DataFrame:
    """Up to quota[label] rows per predicted label, highest `score` first, ties broken by id."""
    ranked = pool.sort([score, "id"], descending=[True, False])
    limit = pl.col("label").replace_strict(dict(quota), default=0, return_dtype=pl.Int64)
    return ranked.filter(pl.int_range(pl.len()).over("label") < limit)


def prior_total(options: Mapping[str, Any], classes: Sequence[str]) -> int:
    """Texts to take this round: `n`, or `kt` per class on average when `n` is 0."""
    return options["n"] or options["kt"] * len(classes)


def bbse_shares(confusion: Sequence[Sequence[int]], predicted: Sequence[int]) -> np.ndarray:
    """The pool's class shares by black-box shift estimation (BBSE; Lipton, Wang and Smola, 2018,
    "Detecting and Correcting for Label Shift with Black Box Predictors").

    `confusion` holds a model's dev counts (rows gold, columns predicted), `predicted` how many pool
    texts the same model predicts as each class. Under label shift (the classes' shares change, the
    texts of a class do not) the pool's predicted shares mu equal C w, with C[i, j] = P(predicted i,
    gold j) on dev and w the ratio of pool to dev class shares; w is solved by least squares and
    clipped at 0, and the shares are w times dev's gold shares, renormalised. An even split when
    nothing is left (no pool or no dev texts). A class that dev lacks gets share 0.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    k = counts.shape[0]
    joint = counts.T / max(counts.sum(), 1.0)  # C[i, j] = P(predicted i, gold j)
    found = np.asarray(predicted, dtype=np.float64)
    mu = found / max(found.sum(), 1.0)
    weights = np.clip(np.linalg.lstsq(joint, mu, rcond=None)[0], 0, None)
    shares = weights * joint.sum(axis=0)  # w times dev's gold class shares
    return shares / shares.sum() if shares.sum() > 0 else np.full(k, 1 / k)


def class_counts(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> dict[str, int]:
    """Integer weights for `quotas`: the labeled set's counts, or the pool's class proportions (in
    millionths) as the model sees them (`pool`: the mean predicted probability of each class) or as
    black-box shift estimation corrects them with the round's dev confusion matrix (`bbse`).

    The mean probability is a biased estimate under label shift, but a bounded one: an EM
    re-estimate (Saerens et al., 2002) can run off to a class that no text is predicted as
    when the model is unsure, and then the round takes nothing.
    """
    if options["proportions"] == "labeled":
        return dict(context.labeled_counts)
    if options["proportions"] == "bbse":
        if context.dev_confusion is None:
            raise XlcError("selector 'prior': proportions=bbse needs the round's dev predictions "
                           "(SelectionContext.dev_confusion), and none were given; xlc selftrain and xlc select "
                           "pass them, or use proportions=pool or proportions=labeled")
        found = dict(pool["label"].value_counts().iter_rows())
        shares = bbse_shares(context.dev_confusion, [found.get(c, 0) for c in context.classes])
    elif pool.height == 0:
        return {c: 0 for c in context.classes}
    else:
        shares = pool["probs"].to_numpy().astype(np.float64).reshape(-1, len(context.classes)).mean(axis=0)
    return {c: int(round(1_000_000 * p)) for c, p in zip(context.classes, shares, strict=True)}


def prior(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    """The most confident texts per predicted class, per-class counts following a class prior.

    The prior is the labeled set's (`proportions="labeled"`), the pool's mean predicted
    probabilities (`proportions="pool"`) or the pool's shares by black-box shift estimation on the
    round's dev predictions (`proportions="bbse"`, see `bbse_shares`). With `per_lang`, the total is
    first split across languages in proportion to their pool sizes, and each language gets its own
    class split (and estimate; with `bbse`, from that language's predictions and the one dev matrix).
    A class with fewer candidates than its quota gives what it has; the shortfall is not moved
    to other classes, which would let the model's favourite class take over.
    """
    total = prior_total(options, context.classes)
    if not options["per_lang"]:
        groups = [(total, pool)]
    else:
        lang = pl.col("lang").fill_null("")  # texts without a language form one group
        sizes = dict(pool.select(lang)["lang"].value_counts().iter_rows())
        langs = sorted(sizes)
        per_lang = quotas(total, sizes, langs)
        groups = [(per_lang[code], pool.filter(lang == code)) for code in langs]
    taken = []
    for n, part in groups:
        share = quotas(n, class_counts(part, options, context), context.classes)
        candidates = part.filter(pl.col("confidence") >= options["min_confidence"])
        taken.append(take_per_class(candidates, share, "confidence"))
    return pl.concat(taken) if taken else pool.head(0)


def top2_margin(probs: pl.Expr, width: int) -> pl.Expr:
    """Top-1 minus top-2 probability of an Array column (the top-1 itself when width is 1)."""
    ordered = probs.arr.sort(descending=True)
    second = ordered.arr.get(1) if width > 1 else pl.lit(0.0)
    return ordered.arr.get(0) - second


def margin(pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext) -> pl.DataFrame:
    """Up to kt texts per predicted class with the largest top-2 margin, at least `min_margin`."""
    scored = pool.with_columns(top2_margin(pl.col("probs"), len(context.classes)).alias("margin"))
    candidates = scored.filter(pl.col("margin") >= options["min_margin"])
    return take_per_class(candidates, {c: options["kt"] for c in context.classes}, "margin")
