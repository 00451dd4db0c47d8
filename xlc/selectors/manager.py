"""Pluggy wiring: load selector plugins (built-in and entry points), run them safely."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points, version
from typing import Any

import pluggy
import polars as pl

from xlc.errors import XlcError
from xlc.selectors import builtin, hookspecs
from xlc.selectors.hookspecs import SelectionContext, Selector

ENTRY_POINT_GROUP = "xlc"
PLUGINS_ENV = "XLC_PLUGINS"
"""Which third-party plugins load: unset = all; "" or "none" = none; "a,b" = those entry points."""


@dataclass(frozen=True)
class Registered:
    """A selector and where it came from."""

    selector: Selector
    plugin: str
    package: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    package: str
    error: str


@dataclass
class Plugins:
    """The loaded plugin manager and what its plugins registered."""

    pm: pluggy.PluginManager
    selectors: dict[str, Registered] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


_plugins: Plugins | None = None


def _allowed(name: str) -> bool:
    wanted = os.environ.get(PLUGINS_ENV)
    if wanted is None:
        return True
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return name in names and "none" not in names


def _load() -> Plugins:
    pm = pluggy.PluginManager("xlc")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    sources = {"xlc.builtin": ("xlc", version("xlc") if _installed("xlc") else "dev")}
    pm.register(builtin, name="xlc.builtin")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if not _allowed(ep.name) or pm.has_plugin(ep.name):
            continue
        package = ep.dist.name if ep.dist else "?"
        package_version = ep.dist.version if ep.dist else "?"
        try:
            pm.register(ep.load(), name=ep.name)
            pm.check_pending()
        except Exception as exc:  # a broken plugin must not hide the others
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            plugins.failures.append(PluginFailure(ep.name, package, f"{type(exc).__name__}: {exc}"))
            continue
        sources[ep.name] = (package, package_version)
    for impl in pm.hook.xlc_register_selectors.get_hookimpls():  # registration order
        _collect(plugins, impl, *sources.get(impl.plugin_name, ("?", "?")))
    return plugins


def _installed(dist: str) -> bool:
    try:
        version(dist)
    except Exception:
        return False
    return True


def _collect(plugins: Plugins, impl: pluggy.HookImpl, package: str, package_version: str) -> None:
    name = impl.plugin_name

    def register(selector: Selector) -> None:
        if not isinstance(selector, Selector):
            raise XlcError(f"register() takes an xlc Selector, got {type(selector).__name__}")
        taken = plugins.selectors.get(selector.name)
        if taken:
            raise XlcError(
                f"selector name {selector.name!r} is already registered by plugin "
                f"{taken.plugin!r} (package {taken.package})"
            )
        plugins.selectors[selector.name] = Registered(selector, name, package, package_version)

    try:
        impl.function(register=register)
    except Exception as exc:
        plugins.failures.append(PluginFailure(name, package, f"{type(exc).__name__}: {exc}"))


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
    """The selector called `name`, or an error listing the installed ones."""
    loaded = plugins()
    if name in loaded.selectors:
        return loaded.selectors[name]
    broken = "".join(
        f"; plugin {f.plugin!r} (package {f.package}) failed to load: {f.error}" for f in loaded.failures
    )
    raise XlcError(
        f"--selector {name!r}: no such selector; installed: {', '.join(sorted(loaded.selectors))}{broken}"
    )


def _convert(selector: Selector, option: hookspecs.Option, value: Any) -> Any:
    if isinstance(value, str) and option.type is not str:
        try:
            if option.type is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            else:
                value = option.type(value)
        except ValueError:
            raise XlcError(
                f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, "
                f"got {value!r}"
            ) from None
    elif option.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        raise XlcError(
            f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, got {value!r}"
        )
    if option.check is not None and not option.check(value):
        raise XlcError(
            f"selector {selector.name!r}: option {option.name} must be {option.requirement or 'valid'}, "
            f"got {value!r}"
        )
    return value


def resolve_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given` (strings converted), validated; unknown keys rejected."""
    selector = get_selector(name).selector
    known = {o.name: o for o in selector.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise XlcError(f"selector {name!r} has no option {unknown[0]!r} (its options: {listed})")
    return {o.name: _convert(selector, o, given.get(o.name, o.default)) for o in selector.options}


def select(
    name: str, pool: pl.DataFrame, options: Mapping[str, Any], context: SelectionContext
) -> pl.DataFrame:
    """Run selector `name` on the scored pool and check what it returns.

    Returns the chosen pool rows with their pseudo-label in `label` and the model's
    `confidence`, in the order the selector returned them.
    """
    entry = get_selector(name)
    resolved = resolve_options(name, options)
    who = f"selector {name!r} (plugin {entry.plugin!r}, package {entry.package})"
    try:
        chosen = entry.selector.select(pool, resolved, context)
    except XlcError:
        raise
    except Exception as exc:
        raise XlcError(f"{who} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(chosen, pl.DataFrame) or not {"id", "label"} <= set(chosen.columns):
        raise XlcError(f"{who} must return a Polars frame with columns id and label")
    chosen = chosen.select("id", pl.col("label").cast(pl.String))
    if chosen["id"].is_duplicated().any():
        dup = chosen.filter(pl.col("id").is_duplicated())["id"][0]
        raise XlcError(f"{who} returned id {dup!r} more than once")
    if chosen["label"].null_count() or not set(chosen["label"].unique()) <= set(context.classes):
        bad = sorted(set(chosen["label"].unique().to_list()) - set(context.classes), key=str)
        raise XlcError(f"{who} returned label(s) {bad} outside the classes {list(context.classes)}")
    if chosen.height and chosen["id"].dtype != pool["id"].dtype:
        raise XlcError(f"{who} returned ids of type {chosen['id'].dtype}, the pool's are {pool['id'].dtype}")
    taken = chosen.join(pool.drop("label"), on="id", how="inner", maintain_order="left")
    if taken.height != chosen.height:
        stray = chosen.join(pool, on="id", how="anti")["id"][0]
        raise XlcError(f"{who} returned id {stray!r}, which is not in the pool")
    return taken


def add_plugin(plugin: object, name: str, package: str = "(registered at run time)") -> list[str]:
    """Register a plugin object in this process (a notebook, a test); returns its selector names.

    Errors while registering are raised, not recorded, since the caller is right here.
    """
    loaded = plugins()
    loaded.pm.register(plugin, name=name)
    try:
        loaded.pm.check_pending()
        before = set(loaded.selectors)
        failures = len(loaded.failures)
        for impl in loaded.pm.hook.xlc_register_selectors.get_hookimpls():
            if impl.plugin_name == name:
                _collect(loaded, impl, package, "")
        if len(loaded.failures) > failures:
            raise XlcError(f"plugin {name!r}: {loaded.failures.pop().error}")
    except Exception:
        remove_plugin(name)
        raise
    return sorted(set(loaded.selectors) - before)


def remove_plugin(name: str) -> None:
    """Unregister a plugin added with `add_plugin` and forget its selectors."""
    loaded = plugins()
    if loaded.pm.has_plugin(name):
        loaded.pm.unregister(name=name)
    for key in [k for k, v in loaded.selectors.items() if v.plugin == name]:
        del loaded.selectors[key]
