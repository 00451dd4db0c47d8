"""Selectors: which pseudo-labelled texts move from the pool into the labelled set."""

from xlc.selectors.hookspecs import Option, SelectionContext, Selector, hookimpl
from xlc.selectors.manager import add_plugin, available, get_selector, remove_plugin, resolve_options, select

__all__ = [
    "Option", "SelectionContext", "Selector", "add_plugin", "available", "get_selector", "hookimpl",
    "remove_plugin",
    "resolve_options", "select",
]
