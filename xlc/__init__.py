"""xlc: cross-lingual self-training of text classifiers (Dong & de Melo, 2019)."""

from importlib.metadata import PackageNotFoundError, version

from xlc.errors import XlcError
from xlc.selectors.hookspecs import Option, SelectionContext, Selector, hookimpl

try:
    __version__ = version("xlc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Option", "SelectionContext", "Selector", "XlcError", "__version__", "hookimpl"]
