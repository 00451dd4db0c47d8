"""xlc: cross-lingual self-training of text classifiers (Dong & de Melo, 2019).

The public API (imported lazily, so `import xlc` stays fast):

- ``xlc.selftrain(train, unlabeled, dev, test, selector=..., selector_options=..., out=...)``
- ``xlc.load(path)`` -> ``TextClassifier``, a scikit-learn classifier: ``predict``, ``predict_proba``,
  ``classes_``, ``score(X, y)`` (accuracy), ``score_frame(X)``, ``get_params``/``set_params``
- ``xlc.score(model, texts)`` -> Polars frame
- ``xlc.SelfTrainConfig``, ``xlc.RunResult``, ``xlc.XlcError``
- for selector plugins: ``xlc.hookimpl``, ``xlc.Selector``, ``xlc.Option``, ``xlc.SelectionContext``,
  and the option checks ``xlc.at_least``, ``xlc.between``, ``xlc.one_of``
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from xlc._compat import package_version
from xlc.errors import XlcError
from xlc.selectors.hookspecs import Option, SelectionContext, Selector, hookimpl
from xlc.selectors.validate import at_least, between, one_of

__version__ = package_version("xlc", missing="0.0.0+unknown")  # unknown: a source tree not installed

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
    "XlcError", "__version__", "at_least", "between", "hookimpl", "load", "one_of", "score", "selftrain",
]
