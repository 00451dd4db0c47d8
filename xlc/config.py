"""The settings of a self-training run: one frozen dataclass, validated, TOML in and out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from xlc import data, files, inference
from xlc._compat import tomllib
from xlc.default_model import NAME as DEFAULT_MODEL
from xlc.errors import XlcError

ENGINES = ("local", "ray")
TARGETS = ("hard", "soft")
MAX_SEED = 2**32 - 1


def flag(name: str) -> str:
    """The command-line spelling of a config key."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class SelfTrainConfig:
    """Every setting of `xlc selftrain`; each field is also a CLI option and a TOML key."""

    out: str = "runs/xlc"
    train: str | None = None
    unlabeled: str | None = None
    dev: str | None = None
    test: str | None = None
    pool_gold: str | None = None   # the pool's true labels (id + label), for pseudo-label precision only
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    lang_column: str = "lang"
    demo_langs: tuple[str, ...] = data.DEMO_TARGETS
    model: str = DEFAULT_MODEL
    selector: str = "balanced"
    selector_options: Mapping[str, Any] = field(default_factory=dict)
    max_rounds: int = 3
    patience: int = 1
    epochs: int = 5
    select_epoch: bool = True
    epoch_patience: int = 2
    max_steps: int | None = None
    train_layers: int = 0
    targets: str = "hard"      # what pseudo-labelled texts train on: "hard" labels or "soft" teacher probabilities
    warm_start: bool = True    # each round continues from the last; False: from the base model again
    batch_size: int = 32
    max_length: int = 64      # also what the exported models are scored at (stored in their xlc.json)
    lr: float = 2e-4
    head_lr: float = 1e-3
    warmup: float = 0.1
    freeze_embeddings: bool = True
    seed: int = 0
    score_batch_size: int = inference.BATCH_SIZE
    threads: int | None = None
    engine: str = "local"  # where each round's pool is scored: "local", or "ray" (xlc/scoring/ray.py)
    ray_address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            _require(name, getattr(self, name) >= 1, ">= 1", getattr(self, name))
        inference.check(max_length=self.max_length, score_batch_size=self.score_batch_size, threads=self.threads)
        _require("max_rounds", self.max_rounds >= 0, ">= 0", self.max_rounds)
        _require("epoch_patience", self.epoch_patience >= 0, ">= 0", self.epoch_patience)
        _require("max_steps", self.max_steps is None or self.max_steps >= 1, ">= 1", self.max_steps)
        _require("train_layers", self.train_layers >= 0, ">= 0 (0 trains every layer)", self.train_layers)
        _require("seed", 0 <= self.seed <= MAX_SEED, f"between 0 and {MAX_SEED}", self.seed)
        _require("targets", self.targets in TARGETS, f"one of {', '.join(TARGETS)}", self.targets)
        _require("engine", self.engine in ENGINES, f"one of {', '.join(ENGINES)}", self.engine)
        _require("workers", self.workers is None or self.workers >= 1, ">= 1", self.workers)
        if self.engine != "ray" and (self.ray_address or self.workers):
            raise XlcError("--ray-address and --workers are for --engine ray")
        for name in ("lr", "head_lr"):
            _require(name, 0 < getattr(self, name) < 1, "in (0, 1)", getattr(self, name))
        _require("warmup", 0 <= self.warmup < 1, "in [0, 1)", self.warmup)
        if self.pool_gold and not self.unlabeled:
            raise XlcError("--pool-gold holds the true labels of an --unlabeled pool; pass --unlabeled too")
        files = {"train": self.train, "unlabeled": self.unlabeled, "dev": self.dev}
        given = [k for k, v in files.items() if v]
        if (given or self.test) and len(given) < 3:
            missing = ", ".join(flag(k) for k in files if k not in given)
            raise XlcError(
                f"own data needs --train, --unlabeled and --dev together; missing {missing} "
                f"(or give none of them to run the bundled demo)"
            )

    @property
    def uses_demo(self) -> bool:
        return self.train is None

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (for TOML and JSON); None fields are left out."""
        values = dataclasses.asdict(self)
        values["demo_langs"] = list(self.demo_langs)
        values["selector_options"] = dict(self.selector_options)
        return {k: v for k, v in values.items() if v is not None}

    def write_toml(self, path: Path) -> None:
        files.write_text(path, tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> SelfTrainConfig:
        """Build from a mapping (a TOML file, keyword arguments), rejecting unknown keys."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise XlcError(
                f"{source}: unknown setting {unknown[0]!r}; known settings: {', '.join(fields)}"
            )
        clean = dict(values)
        if "demo_langs" in clean:
            clean["demo_langs"] = tuple(clean["demo_langs"])
        for name in ("train", "unlabeled", "dev", "test", "pool_gold", "out"):
            if clean.get(name) is not None:
                clean[name] = str(clean[name])
        for name, value in clean.items():
            _check_type(source, name, str(fields[name].type), value)
        return cls(**clean)

    @classmethod
    def from_toml(cls, path: Path, overrides: Mapping[str, Any] | None = None) -> SelfTrainConfig:
        """Read a TOML file; `overrides` (e.g. command-line flags) win over its values."""
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise XlcError(f"--config {path}: file not found") from None
        except UnicodeDecodeError as exc:
            raise XlcError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           f"save it as UTF-8") from None
        except OSError as exc:
            raise XlcError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise XlcError(f"--config {path}: not valid TOML: {exc}") from None
        return cls.from_mapping({**values, **(overrides or {})}, source=f"--config {path}")

    def replace(self, **changes: Any) -> SelfTrainConfig:
        return dataclasses.replace(self, **changes)


_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _check_type(source: str, name: str, annotation: str, value: Any) -> None:
    if value is None and "None" in annotation:
        return
    base = annotation.split("|")[0].strip()
    if base in _TYPES:
        ok = isinstance(value, _TYPES[base]) and not (base in ("int", "float") and isinstance(value, bool))
    elif base.startswith("tuple"):
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    else:  # selector_options
        ok = isinstance(value, Mapping)
    if not ok:
        raise XlcError(f"{source}: setting {name!r} must be {annotation}, got {value!r}")


def _require(name: str, ok: bool, requirement: str, value: Any) -> None:
    if not ok:
        raise XlcError(f"{flag(name)} must be {requirement}, got {value!r}")
