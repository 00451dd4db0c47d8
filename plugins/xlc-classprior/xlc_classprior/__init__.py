"""xlc-classprior: class-prior-aware (`prior`) and top-2 margin (`margin`) selectors for xlc."""

from importlib.metadata import PackageNotFoundError, version

from xlc_classprior.selectors import bbse_shares, class_counts, margin, prior, quotas, take_per_class

try:
    __version__ = version("xlc-classprior")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "bbse_shares", "class_counts", "margin", "prior", "quotas", "take_per_class"]
