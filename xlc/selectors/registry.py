"""The selector registry: one pluggy manager, the built-ins and entry-point plugins registered alike.

It loads plugins once per process (``XLC_PLUGINS`` limits which), records every selector with the
plugin and package that provide it, reports broken plugins instead of failing, and lets a notebook
or a test add and remove plugins at run time. What a selector is checked against is `validate`'s job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from xlc.errors import XlcError
from xlc.selectors import builtin, hookspecs
from xlc.selectors.hookspecs import Selector
from xlc.selectors.validate import check_selector

ENTRY_POINT_GROUP = "xlc"
BUILTIN_PLUGIN = "xlc.builtin"
PLUGINS_ENV = "XLC_PLUGINS"
"""Which third-party plugins load: unset = all; "" or "none" = none; "a,b" = those plugins, each
named by its entry point name or its package name. The built-in selectors always load."""


@dataclass(frozen=True)
class Registered:
    """A selector and where it came from."""

    selector: Selector
    plugin: str
    package: str
    version: str

    @property
    def who(self) -> str:
        """How errors name it: "selector 'x' (plugin 'p', package q)"."""
        return f"selector {self.selector.name!r} (plugin {self.plugin!r}, package {self.package})"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    package: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (package {self.package}): {self.error}"


@dataclass
class Plugins:
    """The loaded plugin manager and what its plugins registered."""

    pm: pluggy.PluginManager
    selectors: dict[str, Registered] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


_plugins: Plugins | None = None


def wanted_plugins(value: str | None) -> set[str] | None:
    """The plugin names an XLC_PLUGINS value asks for: None = all, an empty set = none."""
    if value is None:
        return None
    names = {_normal(n) for n in value.split(",") if n.strip()}
    return set() if "none" in names else names


def _normal(name: str) -> str:
    """Package names compare as pip does: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, XlcError) else f"{type(exc).__name__}: {text}"


def _source(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist else ("?", "?")


def _load() -> Plugins:
    from xlc import __version__  # here, not at the top: `import xlc` imports this package

    pm = pluggy.PluginManager("xlc")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    sources = {BUILTIN_PLUGIN: ("xlc", __version__)}
    pm.register(builtin, name=BUILTIN_PLUGIN)
    wanted = wanted_plugins(os.environ.get(PLUGINS_ENV))
    found: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value)):
        package, package_version = _source(ep)
        names = {_normal(ep.name), _normal(package)}
        if wanted is not None and not names & wanted:
            continue
        found |= names
        if ep.name in sources:
            plugins.failures.append(PluginFailure(ep.name, package, (
                f"entry point name {ep.name!r} is already used by package {sources[ep.name][0]}; "
                f"rename the entry point in one of the two packages"
            )))
            continue
        try:
            _register_entry_point(pm, ep)
        except Exception as exc:  # a broken plugin must not hide the others
            plugins.failures.append(PluginFailure(ep.name, package, _describe(exc)))
            continue
        sources[ep.name] = (package, package_version)
    for name in sorted((wanted or set()) - found):
        plugins.failures.append(PluginFailure(name, "?", (
            f"{PLUGINS_ENV} names {name!r}, but no installed package declares an entry point "
            f"or is called that in group {ENTRY_POINT_GROUP!r}; check the spelling or pip install it"
        )))
    for impl in pm.hook.xlc_register_selectors.get_hookimpls():  # registration order: built-ins first
        package, package_version = sources[impl.plugin_name]
        try:
            plugins.selectors |= _collect(impl, package, package_version, plugins.selectors)
        except Exception as exc:
            pm.unregister(name=impl.plugin_name)
            plugins.failures.append(PluginFailure(impl.plugin_name, package, _describe(exc)))
    return plugins


def _register_entry_point(pm: pluggy.PluginManager, ep: EntryPoint) -> None:
    """Import the plugin and register it; on any error leave the manager as it was."""
    plugin = ep.load()
    pm.register(plugin, name=ep.name)
    try:
        pm.check_pending()  # a misspelt hook name becomes an error, not silence
        if not pm.get_hookcallers(plugin):
            raise XlcError(
                f"entry point {ep.value!r} implements no xlc hook; mark a function "
                f"xlc_register_selectors(register) with @xlc.hookimpl"
            )
    except Exception:
        pm.unregister(name=ep.name)
        raise


def _collect(
    impl: pluggy.HookImpl, package: str, package_version: str, taken: Mapping[str, Registered]
) -> dict[str, Registered]:
    """Call one plugin's hook; the selectors it registers, all checked, or an error (all or none)."""
    new: dict[str, Registered] = {}

    def register(selector: Selector) -> None:
        check_selector(selector)
        owner = taken.get(selector.name) or new.get(selector.name)
        if owner:
            raise XlcError(
                f"selector name {selector.name!r} is already registered by plugin "
                f"{owner.plugin!r} (package {owner.package}); choose another name"
            )
        new[selector.name] = Registered(selector, impl.plugin_name, package, package_version)

    impl.function(register=register)
    return new


def plugins() -> Plugins:
    """The process-wide plugin manager, loaded on first use."""
    global _plugins
    if _plugins is None:
        _plugins = _load()
    return _plugins


def reload() -> Plugins:
    """Forget the loaded plugins and load them again (after installing one, in tests)."""
    global _plugins
    _plugins = None
    return plugins()


def available() -> dict[str, Registered]:
    return dict(plugins().selectors)


def get_selector(name: str) -> Registered:
    """The selector called `name`, or an error listing the installed ones and broken plugins."""
    loaded = plugins()
    if name in loaded.selectors:
        return loaded.selectors[name]
    broken = "".join(
        f"; plugin {f.plugin!r} (package {f.package}) failed to load: {f.error}" for f in loaded.failures
    )
    raise XlcError(
        f"--selector {name!r}: no such selector; installed: {', '.join(sorted(loaded.selectors))}{broken}"
    )


def add_plugin(plugin: object, name: str, package: str = "(registered at run time)") -> list[str]:
    """Register a plugin object in this process (a notebook, a test); returns its selector names.

    Errors are raised (as XlcError naming the plugin), not recorded, since the caller is right here.
    """
    loaded = plugins()
    loaded.pm.register(plugin, name=name)
    try:
        loaded.pm.check_pending()
        new: dict[str, Registered] = {}
        for impl in loaded.pm.hook.xlc_register_selectors.get_hookimpls():
            if impl.plugin_name == name:
                new = _collect(impl, package, "", loaded.selectors)
    except Exception as exc:
        loaded.pm.unregister(name=name)
        raise XlcError(str(PluginFailure(name, package, _describe(exc)))) from exc
    loaded.selectors |= new
    return sorted(new)


def remove_plugin(name: str) -> None:
    """Unregister a plugin added with `add_plugin` and forget its selectors."""
    loaded = plugins()
    if loaded.pm.has_plugin(name):
        loaded.pm.unregister(name=name)
    for key in [k for k, v in loaded.selectors.items() if v.plugin == name]:
        del loaded.selectors[key]


def describe() -> dict[str, list[dict[str, Any]]]:
    """Every selector and every broken plugin as plain data (for `xlc selectors`)."""
    loaded = plugins()
    selectors = [
        {
            "name": name, "package": entry.package, "version": entry.version, "plugin": entry.plugin,
            "description": entry.selector.description,
            "options": [
                {"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help,
                 "requirement": o.requirement}
                for o in entry.selector.options
            ],
        }
        for name, entry in sorted(loaded.selectors.items())
    ]
    broken = [{"plugin": f.plugin, "package": f.package, "error": f.error} for f in loaded.failures]
    return {"selectors": selectors, "broken": broken}
