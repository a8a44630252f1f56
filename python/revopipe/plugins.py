"""Plugin discovery and the registries of component types, notification channels,
optimizer actions and dashboard widgets.

Built-in plugins and third-party plugins are found the same way: entry points in the
``revopipe`` group. The core never imports a plugin by name.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import pluggy

from revopipe import hookspecs
from revopipe.actions import Action
from revopipe.components import Component, ComponentClass, Kind
from revopipe.config.errors import did_you_mean
from revopipe.notify import Channel
from revopipe.widgets import Widget, WidgetClass

ENTRY_POINT_GROUP = "revopipe"
hookimpl = pluggy.HookimplMarker("revopipe")
log = logging.getLogger("revopipe.plugins")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


class UnknownChannelType(PluginError, LookupError):
    """No installed plugin provides the requested notification channel type."""


class UnknownActionType(PluginError, LookupError):
    """No installed plugin provides the requested optimizer action type."""


class UnknownWidgetType(PluginError, LookupError):
    """No installed plugin provides the requested dashboard widget type."""


@dataclass(frozen=True, slots=True)
class ComponentType:
    kind: Kind
    name: str
    cls: ComponentClass
    plugin: str

    @property
    def description(self) -> str:
        doc = self.cls.description or (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True, slots=True)
class NamedType:
    """A class registered under a type name by a plugin (a channel or an action)."""

    name: str
    cls: Any
    plugin: str

    @property
    def description(self) -> str:
        doc = getattr(self.cls, "description", "") or (self.cls.__doc__ or "").strip()
        return str(doc).splitlines()[0] if doc else ""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    types: tuple[ComponentType, ...]
    channels: tuple[NamedType, ...] = ()
    actions: tuple[NamedType, ...] = ()
    widgets: tuple[NamedType, ...] = ()


class Registry:
    """The component types known to this process, keyed by (kind, type name), and the
    notification channel types, keyed by type name."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        plugins: list[PluginInfo],
        failed: dict[str, str] | None = None,
    ) -> None:
        self.pm = pm
        self.plugins = plugins
        self.failed = failed or {}
        """Plugins that could not be imported: name -> error. They are reported, not
        fatal, so one broken package does not take every pipeline down."""
        self._types: dict[tuple[str, str], ComponentType] = {
            (t.kind, t.name): t for p in plugins for t in p.types
        }
        self._channels: dict[str, NamedType] = {c.name: c for p in plugins for c in p.channels}
        self._actions: dict[str, NamedType] = {a.name: a for p in plugins for a in p.actions}
        self._widgets: dict[str, NamedType] = {w.name: w for p in plugins for w in p.widgets}

    def get(self, kind: Kind, name: str) -> ComponentType | None:
        return self._types.get((kind, name))

    def names(self, kind: Kind) -> list[str]:
        return sorted(n for k, n in self._types if k == kind)

    def unknown_type_message(self, kind: Kind, name: str) -> tuple[str, str]:
        """(problem, fix) for a type that is not registered as `kind`."""
        elsewhere = [k for k, n in self._types if n == name]
        if elsewhere:
            return (
                f"{name!r} is a {elsewhere[0]} type, not a {kind} type",
                f"move it under [{elsewhere[0]}s.<name>]",
            )
        known = self.names(kind)
        broken = "".join(f"; plugin {p!r} failed to load: {e}" for p, e in self.failed.items())
        return (
            f"unknown {kind} type {name!r}{did_you_mean(name, known)}",
            "known types: "
            + (", ".join(known) or "none installed")
            + "; `revopipe plugins` lists them"
            + broken,
        )

    def channel_names(self) -> list[str]:
        return sorted(self._channels)

    def channel_type(self, name: str) -> NamedType | None:
        return self._channels.get(name)

    def action_names(self) -> list[str]:
        return sorted(self._actions)

    def action_class(self, name: str, *, where: str = "") -> type[Action[Any]]:
        """The optimizer action class registered as `name`; raises `UnknownActionType`
        naming the known types and the fix, prefixed by `where` when given."""
        cls: type[Action[Any]] = self._named(
            self._actions, name, "optimizer action", "actions", UnknownActionType, where
        )
        return cls

    def widget_names(self) -> list[str]:
        return sorted(self._widgets)

    def widget_class(self, name: str, *, where: str = "") -> WidgetClass:
        """The dashboard widget class registered as `name`; raises `UnknownWidgetType`
        naming the known types and the fix, prefixed by `where` when given."""
        cls: WidgetClass = self._named(
            self._widgets, name, "dashboard widget type", "widget types", UnknownWidgetType, where
        )
        return cls

    def _named(
        self,
        table: dict[str, NamedType],
        name: str,
        what: str,
        plural: str,
        error: type[PluginError],
        where: str,
    ) -> Any:
        """The class registered as `name` in `table`; else `error` naming the known ones,
        the closest match and the fix, prefixed by `where` (the config that asked)."""
        found = table.get(name)
        if found is not None:
            return found.cls
        known = sorted(table)
        prefix = f"{where}: " if where else ""
        raise error(
            f"{prefix}unknown {what} {name!r}{did_you_mean(name, known)}; "
            f"known {plural}: {', '.join(known) or 'none installed'}; install the plugin "
            "that provides it (`revopipe plugins` lists what is installed)" + self._broken()
        )

    def _broken(self) -> str:
        return "".join(f"; plugin {p!r} failed to load: {e}" for p, e in self.failed.items())

    def channel_class(self, name: str, *, where: str = "") -> type[Channel]:
        """The channel class registered as `name`; raises `UnknownChannelType` naming the
        known types and the fix. `where` (e.g. "alerts channel 'oncall'") prefixes the
        message so the error points at the config that asked."""
        cls: type[Channel] = self._named(
            self._channels,
            name,
            "notification channel type",
            "channel types",
            UnknownChannelType,
            where,
        )
        return cls


def _types_of(pm: pluggy.PluginManager, plugin: object, name: str) -> tuple[ComponentType, ...]:
    impl = getattr(plugin, "revopipe_component_types", None)
    if impl is None:
        return ()
    out = []
    for cls in impl() or ():
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise PluginError(f"plugin {name!r}: {cls!r} is not a Source, Processor or Sink class")
        if not getattr(cls, "type_name", None):
            raise PluginError(f"plugin {name!r}: {cls.__name__} has no type_name")
        out.append(ComponentType(cls.kind, cls.type_name, cls, name))
    return tuple(out)


def _named_of(plugin: object, name: str, hook: str, base: type, what: str) -> tuple[NamedType, ...]:
    """The classes a plugin returns from `hook`, each a subclass of `base` with a
    type_name; `what` names them in errors ("channel class")."""
    impl = getattr(plugin, hook, None)
    if impl is None:
        return ()
    out = []
    for cls in impl() or ():
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {name!r}: {cls!r} from {hook} is not a subclass of "
                f"{base.__module__}.{base.__name__}"
            )
        type_name = getattr(cls, "type_name", None)
        if not type_name:
            raise PluginError(f"plugin {name!r}: {what} {cls.__name__} has no type_name")
        out.append(NamedType(str(type_name), cls, name))
    return tuple(out)


def _claim(seen: dict[str, str], entries: tuple[NamedType, ...], plugin: str, what: str) -> None:
    for e in entries:
        other = seen.get(e.name)
        if other is not None:
            raise PluginError(
                f"{what} type {e.name!r} is provided by both plugin {other!r} and "
                f"plugin {plugin!r}; uninstall one of them"
            )
        seen[e.name] = plugin


def build_registry(extra_plugins: Iterable[tuple[str, ModuleType | object]] = ()) -> Registry:
    """Load every entry-point plugin (plus `extra_plugins`, for embedding and tests)."""
    pm = pluggy.PluginManager("revopipe")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    seen: dict[tuple[str, str], str] = {}
    seen_channels: dict[str, str] = {}
    seen_actions: dict[str, str] = {}
    seen_widgets: dict[str, str] = {}

    def register(name: str, plugin: object, dist: str, version: str) -> None:
        pm.register(plugin, name=name)
        types = _types_of(pm, plugin, name)
        for t in types:
            other = seen.get((t.kind, t.name))
            if other is not None:
                raise PluginError(
                    f"{t.kind} type {t.name!r} is provided by both plugin {other!r} and "
                    f"plugin {name!r}; uninstall one of them"
                )
            seen[(t.kind, t.name)] = name
        channels = _named_of(
            plugin, name, "revopipe_notification_channels", Channel, "channel class"
        )
        _claim(seen_channels, channels, name, "notification channel")
        actions = _named_of(plugin, name, "revopipe_optimizer_actions", Action, "action class")
        _claim(seen_actions, actions, name, "optimizer action")
        widgets = _named_of(plugin, name, "revopipe_dashboard_widgets", Widget, "widget class")
        _claim(seen_widgets, widgets, name, "dashboard widget")
        infos.append(PluginInfo(name, dist, version, types, channels, actions, widgets))

    failed: dict[str, str] = {}
    eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in eps:
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "?"
            failed[ep.name] = f"{exc!r} (from {dist}; fix or uninstall that package)"
            log.error("plugin %r failed to import: %s", ep.name, failed[ep.name])
            continue
        dist_name = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        register(ep.name, plugin, dist_name, version)
    for name, plugin in extra_plugins:
        register(name, plugin, "(registered in process)", "")
    return Registry(pm, infos, failed)


@cache
def default_registry() -> Registry:
    """The registry of installed plugins, loaded once per process."""
    return build_registry()
