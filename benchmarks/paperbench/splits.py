"""The data sets, sliced: reading them, cutting reproducible slices and fitting the max length."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from xlc import data as xdata
from xlc.errors import XlcError

from .profiles import DataSpec, Profile


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


def unit_groups(profile: Profile, splits: Splits) -> list[str]:
    """"all" for a pooled run, else one group per target language."""
    return ["all"] if profile.pooled or len(splits.langs) == 1 else splits.langs
