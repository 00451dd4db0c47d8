"""Pluggy wiring: load selector plugins (built-in and entry points), run them safely."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points, version
from typing import Any

import pluggy
import polars as pl

from xlc.errors import XlcError
from xlc.selectors import builtin, hookspecs
from xlc.selectors.hookspecs import Option, SelectionContext, Selector

ENTRY_POINT_GROUP = "xlc"
BUILTIN_PLUGIN = "xlc.builtin"
PLUGINS_ENV = "XLC_PLUGINS"
"""Which third-party plugins load: unset = all; "" or "none" = none; "a,b" = those plugins, each
named by its entry point name or its package name. The built-in selectors always load."""

OPTION_TYPES = (int, float, str, bool)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Registered:
    """A selector and where it came from."""

    selector: Selector
    plugin: str
    package: str
    version: str


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
    pm = pluggy.PluginManager("xlc")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    sources = {BUILTIN_PLUGIN: ("xlc", _version("xlc"))}
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


def _version(dist: str) -> str:
    try:
        return version(dist)
    except Exception:
        return "dev"


def check_selector(selector: Any) -> Selector:
    """`selector` if it is a usable Selector with valid option defaults, else an XlcError."""
    if not isinstance(selector, Selector):
        raise XlcError(f"register() takes an xlc.Selector, got {type(selector).__name__}")
    if not isinstance(selector.name, str) or not _NAME.fullmatch(selector.name):
        raise XlcError(
            f"selector name {selector.name!r} must start with a letter or digit and hold only "
            f"letters, digits, '_', '-' and '.'"
        )
    if not callable(selector.select):
        raise XlcError(f"selector {selector.name!r}: select must be a function (pool, options, context)")
    seen: set[str] = set()
    for option in selector.options:
        if not isinstance(option, Option):
            raise XlcError(f"selector {selector.name!r}: options must be xlc.Option, got {option!r}")
        if not _NAME.fullmatch(option.name) or option.name in seen:
            raise XlcError(f"selector {selector.name!r}: option name {option.name!r} is invalid or repeated")
        if option.type not in OPTION_TYPES:
            raise XlcError(
                f"selector {selector.name!r}: option {option.name} has type {option.type!r}; "
                f"use int, float, str or bool"
            )
        seen.add(option.name)
        try:
            if _convert(selector, option, option.default) != option.default:  # a string for an int
                raise XlcError(
                    f"selector {selector.name!r}: option {option.name} must be {option.type.__name__}, "
                    f"got {option.default!r}"
                )
        except XlcError as exc:
            raise XlcError(f"{exc} (the option's default)") from None
    return selector


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


def _convert(selector: Selector, option: Option, value: Any) -> Any:
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
    if option.type is int and not -(2**63) <= value < 2**63:  # Polars and numpy count in 64 bits
        raise XlcError(f"selector {selector.name!r}: option {option.name} is too large: {value} "
                       f"(at most {2**63 - 1})")
    try:
        valid = option.check is None or bool(option.check(value))
    except Exception as exc:  # a plugin's check that crashes is the plugin's bug: name it
        raise XlcError(f"selector {selector.name!r}: the check of option {option.name} failed on {value!r} "
                       f"({type(exc).__name__}: {exc}); fix the plugin or pass another value") from None
    if not valid:
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
        if isinstance(chosen, pl.LazyFrame):
            chosen = chosen.collect()
    except XlcError:
        raise
    except Exception as exc:
        raise XlcError(f"{who} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(chosen, pl.DataFrame) or not {"id", "label"} <= set(chosen.columns):
        got = type(chosen).__name__ if not isinstance(chosen, pl.DataFrame) else f"columns {chosen.columns}"
        raise XlcError(f"{who} must return a Polars frame with columns id and label, got {got}")
    return _check_choice(who, chosen.select("id", pl.col("label").cast(pl.String)), pool, context)


def _check_choice(
    who: str, chosen: pl.DataFrame, pool: pl.DataFrame, context: SelectionContext
) -> pl.DataFrame:
    """The chosen rows joined to the pool, or an error naming the first bad row."""
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
