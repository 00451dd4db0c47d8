"""The settings of a self-training run: one frozen dataclass, validated, TOML in and out."""

from __future__ import annotations

import dataclasses
import os
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
ROUND_RULES = ("auto", "dev", "last", "average")
TRACKERS = ("mlflow",)
UNTRACKED = ("out", "track", "track_uri")
"""Settings that do not change what a run computes: not in its fingerprint (a run resumes across them)."""

EARLIER = {"student_noise": 0.0}
"""Settings whose default changed after xlc began to write runs, with what a run that does not record
them did: a run folder of an older xlc resumes as it began (`resolve`, `rundir._absolute`)."""

MAX_SEED = 2**32 - 1


def flag(name: str) -> str:
    """The command-line spelling of a config key."""
    return "--" + name.replace("_", "-")


def setting(default: Any, help: str, *, none: str | None = None, off: str | None = None,
            choices: tuple[str, ...] | None = None, file: bool = False) -> Any:
    """A `SelfTrainConfig` field with what its command-line option needs (cli.py builds the option).

    help: the option's help, without its default (`cli_help` adds that); none: what None means,
    shown as the default; off: the flag that sets a bool False (its on flag is `flag(name)`);
    choices: the only values; file: the value is the path of a file.
    """
    cli = {"help": help, "none": none, "off": off, "choices": choices, "file": file}
    return field(default=default, metadata={"cli": cli})


@dataclass(frozen=True)
class SelfTrainConfig:
    """Every setting of `xlc selftrain`; each field is also a TOML key and, with `setting`, a CLI option."""

    out: str = setting("runs/xlc", "Output folder for the run (re-running on an unfinished run resumes it).")
    train: str | None = setting(None, "Labeled source-language data (CSV, Parquet, JSONL).", file=True)
    unlabeled: str | None = setting(None, "Unlabeled target-language pool.", file=True)
    dev: str | None = setting(None, "Labeled target-language data for choosing epochs and rounds (without it, "
                              "--dev-share of --train is held out instead).", file=True)
    test: str | None = setting(None, "Labeled target-language data for the final accuracy.", file=True)
    extra_train: str | None = setting(None, "More labeled data, e.g. target-language texts checked with `xlc "
                                            "audit` (text, label, lang), added to the labeled set from round 0.",
                                      file=True)
    pool_gold: str | None = setting(None, "True labels of the pool (id and label columns), for pseudo-label "
                                    "precision only; never used for training or selection.", file=True)
    dev_share: float = setting(data.DEV_SHARE, "Without --dev: the share of each class of --train held out as "
                                               "the dev set.")
    text_column: str = setting("text", "Column holding the text.")
    label_column: str = setting("label", "Column holding the label.")
    id_column: str | None = setting(None, "Pool column with unique ids.", none="row number")
    lang_column: str = setting("lang", "Optional column for per-language metrics.")
    demo_langs: tuple[str, ...] = setting(data.DEMO_TARGETS, "Demo only: comma-separated target languages.")
    model: str = setting(DEFAULT_MODEL, f"{DEFAULT_MODEL!r} or a local Hugging Face encoder folder.")
    text_prefix: str | None = setting(None, "Put before every text (E5 encoders expect 'query: ').",
                                      none="a sentence-transformers prompt of the model, else 'query: ' for E5 "
                                           "models, else none")
    selector: str = setting("balanced", "Selector name (see `xlc selectors`).")
    selector_options: Mapping[str, Any] = field(default_factory=dict)  # the CLI has its own options for them
    max_rounds: int = setting(3, "Self-training rounds after round 0.")
    patience: int = setting(1, "Stop after this many rounds without dev gain.")
    select_round: str = setting("auto", "Which model to deliver: the best round on dev (with patience), the last "
                                        "of --max-rounds, or the average of the weights of rounds 1 to "
                                        "--max-rounds; auto: dev with a target-language --dev, average without one.",
                                choices=ROUND_RULES)
    epochs: int = setting(5, "Epochs per round (the most, with --select-epoch).")
    select_epoch: bool = setting(True, "Score dev after each epoch and keep the best epoch, or train exactly "
                                       "--epochs.", off="--fixed-epochs")
    epoch_patience: int = setting(2, "--select-epoch: stop a round after this many epochs without dev gain "
                                     "(0: never).")
    max_steps: int | None = setting(None, "Optimiser steps per round, overriding --epochs (e.g. the "
                                          "same-compute control).")
    train_layers: int = setting(0, "Train only the top N encoder layers and the head; the frozen layers below "
                                   "run once per text (0: all layers).")
    targets: str = setting("hard", "What pseudo-labeled texts train on: the selected label, or the model's "
                                   "class probabilities (soft: self-distillation).", choices=TARGETS)
    student_noise: float = setting(0.3, "Noisy Student's input noise: while a round trains, each pseudo-labeled "
                                        "text hides this share of its tokens, drawn anew in every batch (English "
                                        "texts and all scoring see every token; 0: off, the paper's method).")
    warm_start: bool = setting(True, "Each round continues from the last round's model, or starts from the "
                                     "base model.", off="--from-base")
    keep_round_models: bool = setting(False, "Keep every round's model (checkpoint and ONNX), not only the best "
                                             "and the last round's.", off="--prune-round-models")
    batch_size: int = setting(32, "Training batch size.")
    max_length: int = setting(64, "Max tokens per text; stored with the model, which is then scored at it.")
    lr: float = setting(2e-4, "Encoder learning rate (3e-5 suits base-size encoders).")
    head_lr: float = setting(1e-3, "Classification head learning rate.")
    warmup: float = setting(0.1, "Share of steps for linear warm-up.")
    freeze_embeddings: bool = setting(True, "Freeze the word-embedding table (faster on CPU).",
                                      off="--train-embeddings")
    seed: int = setting(0, "Random seed.")
    score_batch_size: int = setting(inference.BATCH_SIZE, "Batch size for ONNX scoring.")
    threads: int | None = setting(None, "CPU threads for training and scoring.", none="all")
    track: str | None = setting(None, "Log the finished run (settings, per-round metrics, report, plots) to "
                                      "an experiment tracker (pip install 'xlc[mlflow]').", choices=TRACKERS,
                                none="none")
    track_uri: str | None = setting(None, "--track mlflow: the tracking store.",
                                    none="$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    engine: str = setting("local", "Where each round's pool is scored: here, or on Ray actors.",
                           choices=ENGINES)  # ray: xlc/scoring/ray.py
    ray_address: str | None = setting(None, "--engine ray: cluster to join (HOST:PORT).", none="a local Ray")
    workers: int | None = setting(None, "--engine ray: actors.", none="cluster CPUs / 2")

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
        _require("select_round", self.select_round in ROUND_RULES, f"one of {', '.join(ROUND_RULES)}",
                 self.select_round)
        _require("track", self.track is None or self.track in TRACKERS, f"one of {', '.join(TRACKERS)}",
                 self.track)
        _require("engine", self.engine in ENGINES, f"one of {', '.join(ENGINES)}", self.engine)
        _require("workers", self.workers is None or self.workers >= 1, ">= 1", self.workers)
        if self.engine != "ray" and (self.ray_address or self.workers):
            raise XlcError("--ray-address and --workers are for --engine ray")
        for name in ("lr", "head_lr"):
            _require(name, 0 < getattr(self, name) < 1, "in (0, 1)", getattr(self, name))
        _require("warmup", 0 <= self.warmup < 1, "in [0, 1)", self.warmup)
        _require("student_noise", 0 <= self.student_noise < 1, "in [0, 1) (0: off)", self.student_noise)
        if self.pool_gold and not self.unlabeled:
            raise XlcError("--pool-gold holds the true labels of an --unlabeled pool; pass --unlabeled too")
        _require("dev_share", 0 < self.dev_share <= 0.5, "in (0, 0.5]", self.dev_share)
        files = {"train": self.train, "unlabeled": self.unlabeled}
        given = [k for k, v in files.items() if v]
        if (given or self.dev or self.test) and len(given) < 2:
            missing = ", ".join(flag(k) for k in files if k not in given)
            raise XlcError(
                f"own data needs --train and --unlabeled (--dev and --test are optional); missing {missing} "
                f"(or give no data options to run the bundled demo)"
            )

    @property
    def uses_demo(self) -> bool:
        return self.train is None

    @property
    def round_rule(self) -> str:
        """How the delivered model is chosen: "dev" (the best round on a target-language dev set), "last" or
        "average" (of the weights of rounds 1..the last; both run every round of --max-rounds)."""
        if self.select_round != "auto":
            return self.select_round
        return "dev" if self.dev or self.uses_demo else "average"

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (for TOML and JSON); None fields are left out."""
        values = dataclasses.asdict(self)
        values["demo_langs"] = list(self.demo_langs)
        values["selector_options"] = dict(self.selector_options)
        return {k: v for k, v in values.items() if v is not None}

    def write_toml(self, path: Path) -> None:
        """Write every setting; paths are written absolute, so the file reads the same from anywhere."""
        files.write_text(path, tomli_w.dumps(self.absolute().to_dict()))

    def absolute(self) -> SelfTrainConfig:
        """These settings with every file and folder path absolute (a --model name is left as it is)."""
        return self.replace(**{name: os.path.abspath(value) for name, value in self.paths().items()})

    def paths(self) -> dict[str, str]:
        """The settings that are paths, as given: data files, --out and a local --model folder."""
        found = {name: getattr(self, name) for name in PATH_SETTINGS if getattr(self, name) is not None}
        if self.model != DEFAULT_MODEL and Path(self.model).is_dir():
            found["model"] = self.model
        return found

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
        for name in ("train", "unlabeled", "dev", "test", "extra_train", "pool_gold", "out"):
            if clean.get(name) is not None:
                clean[name] = str(clean[name])
        for name, value in clean.items():
            _check_type(source, name, str(fields[name].type), value)
        return cls(**clean)

    @classmethod
    def from_toml(cls, path: Path, overrides: Mapping[str, Any] | None = None,
                  relative_to_file: bool = True, missing: Mapping[str, Any] | None = None) -> SelfTrainConfig:
        """Read a TOML file; `overrides` (e.g. command-line flags) win over its values.

        Relative paths in the file (data files, out, a local model folder) are taken from the
        file's folder, as a user who moves the file with its data expects; `relative_to_file`
        False takes them from the current folder (how a run's config.toml was read before
        xlc wrote it with absolute paths). `missing` gives settings the file does not hold (for a
        run's own config.toml, `EARLIER`: what the older xlc that wrote it did).
        """
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
        if relative_to_file:
            values = _rebase(values, Path(path).parent)
        return cls.from_mapping({**(missing or {}), **values, **(overrides or {})}, source=f"--config {path}")

    def replace(self, **changes: Any) -> SelfTrainConfig:
        return dataclasses.replace(self, **changes)


PATH_SETTINGS = ("train", "unlabeled", "dev", "test", "extra_train", "pool_gold", "out")
"""The settings that name a file or folder (and `model`, when it names a local folder)."""


def _rebase(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`values` with their relative paths taken from `folder`; a model is rebased only if that folder holds it."""
    rebased = dict(values)
    for name in PATH_SETTINGS:
        value = values.get(name)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            rebased[name] = str(folder / value)
    model = values.get("model")
    if (isinstance(model, str) and model and model != DEFAULT_MODEL and not Path(model).is_absolute()
            and (folder / model).is_dir()):
        rebased["model"] = str(folder / model)
    return rebased


def cli_fields() -> list[dataclasses.Field]:
    """The fields that are command-line options, in their order."""
    return [f for f in dataclasses.fields(SelfTrainConfig) if "cli" in f.metadata]


def show(value: Any) -> str:
    """A default as --help shows it: floats in their shortest exact spelling (2e-4, 0.1), lists comma-separated."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        mantissa, exponent = f"{value:e}".split("e")
        short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return short if float(short) == value and len(short) < len(repr(value)) else repr(value)
    return str(value)


def cli_help(option: dataclasses.Field) -> str:
    """The option's help with its default, "[default: ...]" as click writes it, from the field's own default."""
    cli = option.metadata["cli"]
    if isinstance(option.default, bool):
        shown: str | None = flag(option.name)[2:] if option.default else cli["off"][2:]
    else:
        shown = cli["none"] if option.default is None else show(option.default)
    return f"{cli['help']}  [default: {shown}]" if shown is not None else cli["help"]


def resolve(settings: Mapping[str, Any], config: str | Path | SelfTrainConfig | None = None, *,
            resume: Path | None = None, selector_options: Mapping[str, Any] | None = None,
            source: str = "command line") -> SelfTrainConfig:
    """The settings of a run, for `xlc selftrain` and `xlc.selftrain()` alike.

    `settings` (flags, keyword arguments) win over `config` (a TOML file or a SelfTrainConfig),
    which wins over the defaults; no data settings anywhere means the bundled demo.
    `resume`: an earlier run folder, whose config.toml is then the config file (no other `config`
    or `out`). `selector_options` are merged into the resolved config's own.
    """
    values = dict(settings)
    if resume is not None:
        if config is not None or str(values.get("out", resume)) != str(resume):
            raise XlcError("--resume DIR takes its settings from DIR/config.toml; drop --config and --out")
        config, values["out"] = resume / "config.toml", str(resume)
        if not config.is_file():
            raise XlcError(f"--resume {resume}: no config.toml there; it does not hold an xlc run")
    if isinstance(config, SelfTrainConfig):
        resolved = SelfTrainConfig.from_mapping({**config.to_dict(), **values})
    elif config is not None:
        resolved = SelfTrainConfig.from_toml(Path(config), values, relative_to_file=resume is None,
                                             missing=EARLIER if resume is not None else None)
    else:
        resolved = SelfTrainConfig.from_mapping(values, source=source)
    if selector_options:
        resolved = resolved.replace(selector_options={**resolved.selector_options, **selector_options})
    return resolved


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


DEFAULTS = SelfTrainConfig()
"""The default settings: the one place a default is written (model.py and the benchmarks read them here)."""
