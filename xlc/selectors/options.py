"""Selector options from the command line: `--selector-opt key=value` and `--selector-config FILE`.

Values stay as given (strings from flags, TOML types from files); `validate.resolve`
converts and validates them against the selector's `Option`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xlc._compat import tomllib
from xlc.errors import XlcError


def parse_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`key=value` strings as a dict; a later key wins."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise XlcError(f"--selector-opt {pair!r}: write it as key=value, e.g. --selector-opt kt=40")
        options[key.strip()] = value.strip()
    return options


def read_file(path: Path) -> dict[str, Any]:
    """A TOML file of `key = value` lines, one per option of the chosen selector."""
    try:
        values = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise XlcError(f"--selector-config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise XlcError(f"--selector-config {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise XlcError(f"--selector-config {path}: not valid TOML: {exc}") from None
    for key, value in values.items():
        if isinstance(value, (dict, list)):
            raise XlcError(
                f"--selector-config {path}: {key!r} is a {type(value).__name__}; the file holds one "
                f"selector's options as key = value lines (numbers, strings, true/false)"
            )
    return values


def gather(config_file: Path | None, shortcuts: Mapping[str, Any],
           pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The options the command line gives: the file's, overridden by the shortcut flags given, then by pairs.

    `shortcuts`: `--kt`, `--n`, `--threshold` as given (None = not given).
    """
    return ((read_file(config_file) if config_file else {})
            | {k: v for k, v in shortcuts.items() if v is not None}
            | parse_pairs(pairs))
