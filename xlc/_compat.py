"""What differs between Pythons and installs, in one place: the TOML parser and package versions."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = ["package_version", "tomllib"]


def package_version(dist: str, missing: str = "not installed") -> str:
    """The installed version of distribution `dist`, or `missing` when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return missing
