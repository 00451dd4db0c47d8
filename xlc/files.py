"""Atomic writes, output markers and locks.

A reader never sees a half-written file or folder: every file goes through `atomic_file`, every
output folder through `atomic_dir`. A folder is replaced or deleted only when xlc made it (its
`.xlc` marker says so); one process at a time writes an output (`locked`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import mmap
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from xlc.errors import XlcError

log = logging.getLogger("xlc")


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


def temp_path(path: Path) -> Path:
    """The hidden name beside `path` that an atomic write of `path` goes through."""
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path` to write whole; on success it is committed over `path`.

    The block writes the temp path itself or hands it to a library that wants a path
    (`savefig`, `write_parquet`, ...). The file and its folder are fsynced (see `commit`).
    On any exception the temp file is removed and the exception re-raised: an existing
    `path` is left as it was. A temp file left by a killed process is replaced.
    """
    tmp = temp_path(path)
    if tmp.is_symlink() or tmp.is_file():  # never write through a stale link
        tmp.unlink()
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def is_io_error(exc: BaseException) -> bool:
    """An OSError, or a serializer's error that wraps one (safetensors, polars, onnx say 'os error')."""
    return isinstance(exc, OSError) or "os error" in str(exc) or "I/O error" in str(exc)


def advice(exc: BaseException) -> str:
    """What a user can do about a failed file operation: only a full disk gets 'free some space'."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "os error 28" in text:
        return "free some space or choose another folder"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "Read-only file system" in text:
        return "fix the permissions or choose another folder"
    return "check the path or choose another folder"


def write_error(path: Path, exc: BaseException) -> XlcError:
    """A one-line error for a failed write (full disk, read-only folder, ...)."""
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
    return XlcError(f"{path}: cannot write ({reason}); {advice(exc)}")


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: Path, blob: bytes) -> None:
    """Write `blob` to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(blob)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, default=str) + "\n")


MARKER = ".xlc"
"""The file in every folder xlc creates as an output; only such folders are ever replaced or deleted."""


def mark(folder: Path, kind: str) -> None:
    """Claim `folder` as xlc's own output (`kind`: run, model, export, score parts, ...)."""
    from xlc import __version__

    write_text(folder / MARKER, json.dumps({"made_by": "xlc", "kind": kind, "version": __version__}) + "\n")


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def marked_kind(folder: Path) -> str | None:
    """The kind of output xlc recorded in `folder`'s marker ("" when unreadable), None without one."""
    if not is_marked(folder):
        return None
    try:
        found = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(found.get("kind", "")) if isinstance(found, dict) else ""


def check_replaceable(path: Path, option: str = "", overwrite: bool = False, kind: str | None = None) -> None:
    """Refuse to replace `path` unless it is missing, empty or an xlc output of this `kind`.

    `overwrite` also allows a flat folder of files that xlc did not write (an export from an
    older xlc, say). Never replaced, not even with `overwrite`: a file, a symbolic link, a
    folder with subfolders that xlc did not write, and any folder that holds the current
    folder, a home folder or this Python (`protected`).
    """
    if not path.exists() and not path.is_symlink():
        return
    name = f"{option} {path}" if option else str(path)
    if path.is_symlink() or not path.is_dir():
        what = "a symbolic link" if path.is_symlink() else "not a folder"
        raise XlcError(f"{name}: exists and is {what}; choose another path")
    guarded = protected(path)
    if guarded:
        raise XlcError(f"{name}: {guarded}; xlc never replaces such a folder, not even with --overwrite; "
                       f"choose a new folder (e.g. {path / 'xlc-model'})")
    found = marked_kind(path)
    if not any(path.iterdir()) or (found is not None and found == (kind or found)):
        return
    if overwrite and found is None and not any(p.is_dir() for p in path.iterdir()):
        return
    if found is not None:
        what = f"holds an xlc {found or 'output'} folder, not an xlc {kind} folder"
    else:
        what = f"a folder with files that xlc did not write (no {MARKER} marker)"
    if overwrite or not option:
        hint = "" if found is not None or not overwrite else \
            " and subfolders, which even --overwrite leaves alone (delete it yourself if you must)"
        raise XlcError(f"{name}: {what}{hint}; choose a new or empty folder")
    raise XlcError(f"{name}: {what}; choose a new or empty folder, or pass --overwrite to replace a folder of "
                   f"files (without subfolders)")


def protected(path: Path) -> str:
    """What makes `path` a folder xlc must never replace (it holds the current folder, a home
    folder, this Python or xlc itself, or it is a top-level folder); "" when nothing does."""
    import pwd
    import sys

    resolved = path.resolve()
    if resolved.parent == resolved or resolved.parent == Path(resolved.anchor):
        return "is a top-level folder of the file system"
    homes = {Path(os.path.expanduser("~")), Path(pwd.getpwuid(os.getuid()).pw_dir)}
    places = {"holds the current folder": [Path.cwd()], "holds a home folder": sorted(homes),
              "holds the running Python": [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent],
              "holds xlc itself": [Path(__file__).parent]}
    for what, folders in places.items():
        for folder in folders:
            inside = folder.resolve()
            if inside == resolved or resolved in inside.parents:
                return what
    return ""


def _clear_tmp(tmp: Path) -> None:
    """Remove a temp folder left by an earlier, interrupted write: only if xlc made it."""
    if not tmp.exists() and not tmp.is_symlink():
        return
    if tmp.is_dir() and not tmp.is_symlink() and (is_marked(tmp) or not any(tmp.iterdir())):
        shutil.rmtree(tmp)
        return
    raise XlcError(f"{tmp}: is in the way of an xlc output and was not written by xlc; move or delete it")


@contextmanager
def atomic_dir(path: Path, kind: str = "model", option: str = "", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `path`, marked as a `kind` output; on success it replaces `path` whole.

    An existing `path` is replaced only when xlc made it as a `kind` folder (its marker says
    so), it is empty, or `overwrite` is passed (see `check_replaceable`); the check comes
    before any write. `option` names the path in errors (e.g. "--out").
    """
    check_replaceable(path, option, overwrite, kind)
    tmp, old = temp_path(path), path.with_name(f".{path.name}.old")
    _clear_tmp(tmp)
    _clear_tmp(old)
    try:
        tmp.mkdir(parents=True)
        mark(tmp, kind)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_io_error(exc):
            raise write_error(path, exc) from exc
        raise
    check_replaceable(path, option, overwrite, kind)  # nothing of the user's appeared meanwhile
    try:
        if path.exists():
            os.replace(path, old)
            commit(tmp, path)
            shutil.rmtree(old)
        else:
            commit(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from exc


class Busy(XlcError):
    """Another process holds the lock on an output."""


@contextmanager
def locked(lock_file: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive OS lock (flock) on `lock_file` while the block runs.

    The lock dies with its process, so a killed holder never leaves a stale lock. The
    holder's pid is written into the file so that a refused process can name it. With
    `wait`, block until the holder is done instead of failing. The file is removed on release.
    """
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd) or "unknown"
                if not wait:
                    raise Busy(f"{what} is in use by another xlc process (pid {pid}); wait for it to "
                               f"finish, stop it, or choose another output") from None
                log.info("waiting for another xlc process (pid %s) working on %s", pid, what)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file: then lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(lock_file)
        except OSError:
            pass
        os.close(fd)


def _read_pid(fd: int) -> str | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else None


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (no extra disk), copying where links are impossible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def same_bytes(path: Path, blob: bytes | memoryview, offset: int | None = None) -> bool:
    """Whether the file `path` holds exactly `blob` (a missing file holds nothing).

    With `offset`: whether it holds `blob` from byte `offset` on (and maybe more around it).
    Compared through a memory map in blocks (a 384 MB table in ~0.1 s).
    """
    import numpy as np

    want, block = np.frombuffer(blob, dtype=np.uint8), 1 << 24
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if (size != want.size) if offset is None else (size < offset + want.size):
                return False
            if not want.size:
                return True
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                found = np.frombuffer(mapped, dtype=np.uint8, count=want.size, offset=offset or 0)
                same = all(np.array_equal(found[start:start + block], want[start:start + block])
                           for start in range(0, want.size, block))
                del found  # the map closes only once no array looks into it
                return same
    except (OSError, ValueError):
        return False


def write_or_link(target: Path, blob: bytes, candidates: Iterable[Path]) -> Path | None:
    """Hard-link the first of `candidates` that holds exactly `blob` to `target`, else write `blob` there.

    For a large file that often stays the same (frozen weights): stored once, however many folders
    hold it. `target` is inside a folder being written (`atomic_dir`), so it is never seen half
    written. Returns the candidate linked, or None when `blob` was written (no candidate holds the
    same bytes, or links are impossible here, e.g. across file systems).
    """
    seen = set()
    for candidate in candidates:
        try:
            found = candidate.stat()
        except OSError:
            continue
        if (found.st_dev, found.st_ino) in seen or found.st_size != len(blob):
            continue
        seen.add((found.st_dev, found.st_ino))
        if same_bytes(candidate, blob):
            try:
                os.link(candidate, target)
                return candidate
            except OSError:
                break
    target.write_bytes(blob)
    return None
