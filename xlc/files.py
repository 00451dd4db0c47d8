"""Atomic writes: a reader never sees a half-written file or folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xlc.errors import XlcError


def fsync(path: Path) -> None:
    """Flush a file's or a folder's contents (a rename is durable once its folder is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Durably rename a finished temp file or folder onto `path`."""
    for item in [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]:
        if item.is_file():
            fsync(item)
    os.replace(tmp, path)
    fsync(path.parent)


def is_io_error(exc: BaseException) -> bool:
    """An OSError, or a serializer's error that wraps one (safetensors, polars, onnx say 'os error')."""
    return isinstance(exc, OSError) or "os error" in str(exc) or "I/O error" in str(exc)


def write_error(path: Path, exc: BaseException) -> XlcError:
    """A one-line error for a failed write (full disk, read-only folder, ...)."""
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
    return XlcError(f"{path}: cannot write ({reason}); free some space or choose another folder")


def write_text(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then commit it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    commit(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, default=str) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_io_error(exc):
            raise write_error(path, exc) from exc
        raise
    if path.exists():
        shutil.rmtree(path)
    commit(tmp, path)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (no extra disk), copying where links are impossible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
