"""xlc: cross-lingual self-training of text classifiers (Dong & de Melo, 2019).

The public API (imported lazily, so `import xlc` stays fast):

- ``xlc.selftrain(train, unlabeled, dev, test, selector=..., selector_options=..., out=...)``
- ``xlc.load(path)`` -> ``TextClassifier`` with ``predict``, ``predict_proba``, ``classes_``
- ``xlc.score(model, texts)`` -> Polars frame
- ``xlc.SelfTrainConfig``, ``xlc.RunResult``, ``xlc.XlcError``
- for selector plugins: ``xlc.hookimpl``, ``xlc.Selector``, ``xlc.Option``, ``xlc.SelectionContext``
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from xlc.errors import XlcError
from xlc.selectors.hookspecs import Option, SelectionContext, Selector, hookimpl

try:
    __version__ = version("xlc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "selftrain": "xlc.api", "score": "xlc.api", "load": "xlc.api", "TextClassifier": "xlc.api",
    "SelfTrainConfig": "xlc.config", "RunResult": "xlc.loop",
}

if TYPE_CHECKING:
    from xlc.api import TextClassifier, load, score, selftrain
    from xlc.config import SelfTrainConfig
    from xlc.loop import RunResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xlc' has no attribute {name!r}")


__all__ = [
    "Option", "RunResult", "SelectionContext", "SelfTrainConfig", "Selector", "TextClassifier",
    "XlcError", "__version__", "hookimpl", "load", "score", "selftrain",
]
