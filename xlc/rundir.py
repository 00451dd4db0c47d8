"""The run folder of `xlc selftrain` (`--out DIR`): its layout, fingerprint, lock, publish and prune.

`RunDir` and `RoundDir` name the files and folders a run writes (besides the report's plots,
`plots.PLOTS`, and the `.xlc` markers); only this module spells those names, and the loop,
the CLI, the API, the report and the benchmarks ask it for paths.
The loop commits each round's phases into `round-NN/`; at the end `best/` and `final/` are
published from the best and the last round (with --select-round average, `best/` from `average/`:
the rounds' weights averaged), and report.json marks the run finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from xlc import data, files, modelcard
from xlc.config import EARLIER, PATH_SETTINGS, UNTRACKED, SelfTrainConfig
from xlc.errors import XlcError
from xlc.modeldir import META_FILE
from xlc.onnx import ONNX_DATA, ONNX_FILE

log = logging.getLogger("xlc")

RUN_FILE = "run.json"
TRAIN_FILE = "train.json"
ROUND_PREFIX = "round-"


class RoundDir:
    """`round-NN/`: one round's phase outputs, each committed atomically, in the order the loop writes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.model = path / "model"  # train: the Hugging Face checkpoint; pruned unless best or latest
        self.train_file = self.model / TRAIN_FILE  # train: its facts, committed inside model/
        self.onnx = path / "onnx"  # export: model.onnx with tokenizer and class names
        self.onnx_file = self.onnx / ONNX_FILE
        self.evaluation = path / "eval.json"  # evaluate: dev (and test) metrics
        self.test_predictions = path / "test_predictions.parquet"  # evaluate: text, lang, gold, label
        self.scored = path / "scored.parquet"  # score: the scored pool
        self.selected = path / "selected.parquet"  # select: the pseudo-labels taken
        self.metrics = path / "metrics.json"  # close: the round's record; written last, it closes the round

    @property
    def number(self) -> int:
        return int(self.path.name.removeprefix(ROUND_PREFIX))

    @property
    def closed(self) -> bool:
        return self.metrics.is_file()

    def __repr__(self) -> str:
        return f"RoundDir({str(self.path)!r})"


class RunDir:
    """An `xlc selftrain` output folder: the path of each of its parts, whether it exists yet or not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.toml"  # every setting, resolved: `xlc selftrain --config` reruns it
        self.run_file = path / RUN_FILE  # the fingerprint a resume must match
        self.lock = path / ".lock"  # held while a process works on the run
        self.inputs = path / "inputs"  # in-memory data handed to the Python API
        self.best, self.final = path / "best", path / "final"  # the delivered and the last model
        self.pseudo_labels = path / "pseudo_labels.parquet"  # every pseudo-label of the run
        self.report, self.report_md = path / "report.json", path / "report.md"  # written last: it is finished

    def round(self, number: int) -> RoundDir:
        return RoundDir(self.path / f"{ROUND_PREFIX}{number:02d}")

    @property
    def average(self) -> RoundDir:
        """--select-round average: the rounds' weights averaged, laid out as a round's model/, onnx/,
        eval.json and test predictions."""
        return RoundDir(self.path / "average")

    def rounds(self) -> list[RoundDir]:
        """The round folders on disk, by number."""
        found = [RoundDir(p) for p in self.path.glob(f"{ROUND_PREFIX}*")
                 if p.name.removeprefix(ROUND_PREFIX).isdigit()]
        return sorted(found, key=lambda r: r.number)

    def input(self, role: str) -> Path:
        """Where the Python API saves in-memory `role` data (train, unlabeled, dev, test)."""
        return self.inputs / f"{role}.parquet"

    def model_folders(self) -> list[Path]:
        """The folders holding weights: best/, final/, each round's (most of their bytes are hard links
        of one another's files: see `publish` and `model.save_weights`)."""
        folders = [self.best, self.final, *(p for r in [*self.rounds(), self.average] for p in (r.onnx, r.model))]
        return [p for p in folders if p.exists()]

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def find_model(path: Path) -> Path:
    """The folder holding model.onnx: `path` itself, a run folder's `best/` or a round folder's `onnx/`."""
    for candidate in (path, RunDir(path).best, RoundDir(path).onnx):
        if (candidate / ONNX_FILE).is_file():
            return candidate
    raise XlcError(f"{path}: no {ONNX_FILE} here or in its best/ folder; pass a run folder, its best/ or "
                   f"final/ folder, or a folder written by `xlc export`")


def find_checkpoint(path: Path) -> Path:
    """The folder holding Hugging Face weights: a run folder's `best/`, or `path` itself."""
    best = RunDir(path).best
    source = best if (best / META_FILE).is_file() else path
    if not (source / "config.json").is_file():
        raise XlcError(f"--model {path}: no Hugging Face weights here or in best/; pass a run folder")
    return source


# ---- starting and resuming -------------------------------------------------------------------------

def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as run.json records each input."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(config: SelfTrainConfig) -> dict:
    """What a resumed run must share with the interrupted one: settings, input bytes, model."""
    config = config.absolute()  # a path is the same setting however it was spelled (config.toml: absolute)
    settings = {k: v for k, v in config.to_dict().items() if k not in UNTRACKED}
    roles = {"demo": str(data.demo_path())} if config.uses_demo else {
        role: getattr(config, role) for role in ("train", "unlabeled", "dev", "test", "pool_gold")
        if getattr(config, role)}
    if config.extra_train:
        roles["extra_train"] = config.extra_train
    inputs = {role: sha256(Path(path)) for role, path in roles.items()}
    base = Path(config.model)
    weights = sorted(base.glob("*.safetensors")) + sorted(base.glob("*.bin")) if base.is_dir() else []
    model_id = {"model": config.model, **{p.name: p.stat().st_size for p in weights}}
    return {"settings": settings, "inputs": inputs, "model": model_id}


def _absolute(stamp: dict) -> dict:
    """A fingerprint from an older xlc as this one writes it: absolute paths (an older xlc kept them as
    given, relative to the folder it ran in), and for settings it did not have yet what it did: today's
    default, or the earlier behaviour where the default changed since (`EARLIER`)."""
    known = {k: v for k, v in {**SelfTrainConfig().to_dict(), **EARLIER}.items() if k not in UNTRACKED}
    settings = {**known, **stamp.get("settings", {})} if "settings" in stamp else {}
    for name, value in settings.items():
        if isinstance(value, str) and (name in PATH_SETTINGS or name == "model" and Path(value).is_dir()):
            settings[name] = os.path.abspath(value)
    model = dict(stamp.get("model", {}))
    if isinstance(model.get("model"), str) and Path(model["model"]).is_dir():
        model["model"] = os.path.abspath(model["model"])
    return {**stamp, "settings": settings, "model": model}


def check_out(out: Path) -> dict | None:
    """Refuse an output folder that xlc must not write into; writes nothing.

    Returns the fingerprint of the unfinished run the folder holds, or None for a new run
    (a missing or empty folder, or one xlc made). A file, a finished run and a folder with
    files that xlc did not write are refused.
    """
    run = RunDir(out)
    if out.exists() and not out.is_dir():
        raise XlcError(f"--out {out}: exists and is not a folder; choose another path")
    if run.report.exists():
        raise XlcError(f"--out {out}: already holds a finished run; choose another folder or delete it")
    if run.run_file.is_file():
        try:
            found = json.loads(run.run_file.read_text())
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
def _creating(out: Path) -> Iterator[None]:
    """Create `out` with its marker, then run the block's writes; a failed write is named with its fix."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not files.is_marked(out):
            files.mark(out, "run")
        yield
    except OSError as exc:
        raise XlcError(f"--out {out}: cannot write there ({exc.strerror}); {files.advice(exc)}") from None


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
    with _creating(out):
        pass  # the folder and its marker only
    try:
        with files.locked(RunDir(out).lock, f"--out {out}"):
            yield check_out(out)
    finally:
        if created and {p.name for p in out.iterdir()} <= {files.MARKER}:
            shutil.rmtree(out, ignore_errors=True)


def same_run(found: dict, stamp: dict) -> bool:
    """Whether a run folder's fingerprint `found` is that of `stamp` (paths compared absolute)."""
    return json.loads(json.dumps(_absolute(found))) == json.loads(json.dumps(stamp))


def has_work(out: Path) -> bool:
    """Whether the run in `out` has committed anything worth resuming: a phase output of some round."""
    return any(not item.name.startswith(".") for rnd in RunDir(out).rounds() for item in rnd.path.iterdir())


def _show(value: object) -> str:
    return "(none)" if value is None else value if isinstance(value, str) else json.dumps(value)


def _setting_changes(old: dict, new: dict) -> list[str]:
    """Each differing setting as `name: old -> new` (selector options one by one, by their own name)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "selector_options" and isinstance(before or {}, dict) and isinstance(after or {}, dict):
            changes += _setting_changes(before or {}, after or {})
        else:
            changes.append(f"{key}: {_show(before)} -> {_show(after)}")
    return changes


def resumes(out: Path, stamp: dict) -> bool:
    """True when `out` holds an unfinished run with the fingerprint `stamp`; False for a new run.

    A finished run, a folder xlc did not write, or a run made with other settings, data or
    model, is refused with what differs (each setting as `name: old -> new`). A run that
    committed nothing yet (it failed or was stopped before its first phase) is no reason to
    refuse: it is started again with the new settings.
    """
    found = check_out(out)
    if found is None:
        return False
    found = _absolute(found)
    settings = _setting_changes(found.get("settings", {}), stamp["settings"])
    old_inputs, old_model = found.get("inputs", {}), found.get("model", {})
    changed = [f"the {role} file ({stamp['settings'].get(role, role)})"
               for role in sorted(set(old_inputs) | set(stamp["inputs"]))
               if old_inputs.get(role) != stamp["inputs"].get(role)
               and found.get("settings", {}).get(role) == stamp["settings"].get(role)]
    if old_model != stamp["model"] and old_model.get("model") == stamp["model"].get("model"):
        changed.append(f"the model's files ({stamp['model'].get('model')})")
    if not (settings or changed):
        return True
    if not has_work(out):
        log.info("%s: the unfinished run there committed nothing yet; starting it again", out)
        return False
    if settings:
        raise XlcError(f"--out {out}: holds an unfinished run with different settings ({'; '.join(settings)}); "
                       f"resume it with --resume {out} or choose another --out")
    raise XlcError(f"--out {out}: holds an unfinished run, and {', '.join(changed)} changed on disk since it "
                   f"started, so it cannot be resumed; restore {'them' if len(changed) > 1 else 'it'} or "
                   f"choose another --out")


def start(out: Path, config: SelfTrainConfig, stamp: dict) -> None:
    """Start a new run in `out`: its marker, config.toml (reruns it) and run.json (the fingerprint)."""
    run = RunDir(out)
    with _creating(out):
        config.write_toml(run.config)
        files.write_json(run.run_file, stamp)


def discard(out: Path) -> None:
    """Undo `start` for a run that failed before committing anything, so that nothing blocks a retry.

    Removes only what `start` and the first round wrote (run.json, config.toml, empty round
    folders); a run with a committed phase is left to resume.
    """
    run = RunDir(out)
    if has_work(out) or run.report.exists():
        return
    for rnd in run.rounds():
        with suppress(OSError):
            rnd.path.rmdir()  # empty: nothing committed
    for path in (run.run_file, run.config):
        with suppress(OSError):
            path.unlink(missing_ok=True)


# ---- finishing ----------------------------------------------------------------------------------

def publish(source: RoundDir, target: Path, card: str | None = None) -> None:
    """Put a round's Hugging Face checkpoint and ONNX model into `target` (replaced only if xlc made it).

    Every file is a hard link to the round's, but ONNX external data (model.onnx_data), which is
    copied: the onnx library refuses to read external data with more than one link, and the
    rounds' onnx/ folders are pruned once the run is finished (`prune`). A `target` published
    before its round's onnx/ was pruned (a run killed while finishing) is kept as it is.
    `card`: the model card (`modelcard.render`), written as target/README.md.
    """
    if not source.onnx_file.is_file() and (target / ONNX_FILE).is_file() and files.is_marked(target):
        return
    with files.atomic_dir(target, "model") as tmp:
        for item in source.model.iterdir():
            if item.name not in (TRAIN_FILE, files.MARKER):
                files.link_or_copy(item, tmp / item.name)
        files.link_or_copy(source.onnx_file, tmp / ONNX_FILE)
        if (source.onnx / ONNX_DATA).is_file():
            shutil.copyfile(source.onnx / ONNX_DATA, tmp / ONNX_DATA)
        if card is not None:
            modelcard.write(tmp, card)


def prune(run: RunDir, keep: set[int], keep_onnx: set[int] | None = None) -> None:
    """Drop the models (Hugging Face checkpoint and ONNX) of closed rounds not in `keep` (the best and the
    latest), and the ONNX models of those not in `keep_onnx` (default `keep`; none once `best/` and
    `final/` hold them, and then the average's neither); each round's records and scored pool stay.
    Only folders that xlc marked as its own go; files that another round's model shares (hard links)
    stay with that model."""
    keep_onnx = keep if keep_onnx is None else keep_onnx
    if not keep_onnx and run.average.onnx.is_dir() and files.is_marked(run.average.onnx):
        shutil.rmtree(run.average.onnx)
    for rnd in run.rounds():
        if not rnd.closed:
            continue
        if rnd.number not in keep and rnd.model.is_dir() and (files.is_marked(rnd.model) or rnd.train_file.is_file()):
            shutil.rmtree(rnd.model)
        if rnd.number not in keep_onnx and rnd.onnx.is_dir() and files.is_marked(rnd.onnx):
            shutil.rmtree(rnd.onnx)
