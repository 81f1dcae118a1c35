"""The plugin host: built-ins first, then entry points, each load guarded.

``RECGUARD_PLUGINS`` limits which entry-point plugins load: a comma-separated
list of plugin (entry-point) names; empty means built-ins only; unset means all.
A plugin that raises at import or while registering is listed as failed with
its error, and everything else keeps working.

Plugins are imported lazily: when the plugin index (`recguard.plugin_index`) is fresh, the
host registers each indexed plugin's components as lazy entries (names, provenance and
descriptions, nothing imported), so listing names and options imports no plugin module. The
first lookup of a lazy component imports and registers its whole plugin, all or nothing and
guarded as at start: a plugin that now fails is recorded in ``failed`` and the lookup raises
a one-line `RecguardError`. Plugins missing from the index (new, failed before, filtered out
when it was written) and plugins that add CLI commands are imported at start, as are all of
them when the index is stale; the index is then rewritten. ``RECGUARD_PLUGIN_INDEX=off``
bypasses it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from recguard import __version__, hookspecs, plugin_index
from recguard.contracts import Attack, Backbone, Defense, Metric
from recguard.errors import RecguardError
from recguard.registry import Provenance, Registry, instance_check, subclass_check

ENTRY_POINT_GROUP = "recguard"
PLUGINS_ENV = "RECGUARD_PLUGINS"
# The built-ins' plugin name, as records and leaderboard entries carry it in their provenance
# (the module is recguard.builtin_plugin: `builtins` shadowed the standard library's name).
BUILTIN_PLUGIN = "recguard.builtins"

# hook name -> registry attribute of `Host`
REGISTER_HOOKS = {
    "register_backbones": "backbones",
    "register_attacks": "attacks",
    "register_defenses": "defenses",
    "register_metrics": "metrics",
    "register_datasets": "datasets",
    "register_protocols": "protocols",
}
KINDS = tuple(attr[:-1] for attr in REGISTER_HOOKS.values())   # 'backbone', ..., 'protocol'


@dataclass
class PluginFailure:
    name: str
    distribution: str
    error: str


@dataclass
class PluginInfo:
    name: str
    provenance: Provenance
    components: dict[str, list[str]] = field(default_factory=dict)


class Host:
    """Registries of every component kind, filled from plugins."""

    def __init__(self) -> None:
        from recguard.data.datasets import DatasetSpec
        from recguard.protocols import Protocol

        self.pm = pluggy.PluginManager("recguard")
        self.pm.add_hookspecs(hookspecs)
        self.backbones: Registry[type[Backbone]] = Registry("backbone", subclass_check(Backbone), _name)
        self.attacks: Registry[type[Attack]] = Registry("attack", subclass_check(Attack), _name)
        self.defenses: Registry[type[Defense]] = Registry("defense", subclass_check(Defense), _name)
        self.metrics: Registry[type[Metric]] = Registry("metric", subclass_check(Metric), _name)
        self.datasets: Registry[DatasetSpec] = Registry("dataset", instance_check(DatasetSpec), _name)
        self.protocols: Registry[Protocol] = Registry("protocol", instance_check(Protocol), _name)
        self.loaded: list[PluginInfo] = []
        self.failed: list[PluginFailure] = []
        # plugins registered from the index, not imported yet: name -> (entry point, index record)
        self._indexed: dict[str, tuple[metadata.EntryPoint, plugin_index.Record]] = {}
        for kind in KINDS:
            self.registry(kind).set_loader(self.load_indexed_plugin)

    def registry(self, kind: str) -> Registry:
        """The registry of one kind: 'backbone', 'attack', 'defense', 'metric', 'dataset', 'protocol'."""
        return getattr(self, f"{kind}s")

    # ------------------------------------------------------------ loading

    def register_plugin(self, plugin: ModuleType | Any, name: str, provenance: Provenance) -> PluginInfo:
        """Register one plugin object and its components; all or nothing."""
        self.pm.register(plugin, name=name)
        staged: list[tuple[Registry, Any]] = []
        try:
            for hook_name, attr in REGISTER_HOOKS.items():
                registry = getattr(self, attr)
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=lambda obj, r=registry: staged.append((r, obj)))
            added: list[tuple[Registry, str]] = []
            try:
                for registry, obj in staged:
                    registry.add(obj, provenance)
                    added.append((registry, _name(obj)))
            except Exception:
                for registry, obj_name in added:
                    registry.remove(obj_name)
                raise
        except Exception:
            self.pm.unregister(plugin)
            raise
        info = PluginInfo(name, provenance)
        for registry, obj in staged:
            info.components.setdefault(registry.kind, []).append(_name(obj))
        self._record_loaded(info)
        return info

    def _record_loaded(self, info: PluginInfo) -> None:
        """Add to `loaded`; a plugin loaded from its index entry keeps that entry's place."""
        for i, known in enumerate(self.loaded):
            if known.name == info.name:
                self.loaded[i] = info
                return
        self.loaded.append(info)

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and every component it registered (used by test fixtures)."""
        for info in [i for i in self.loaded if i.name == name]:
            for kind, names in info.components.items():
                for component in names:
                    self.registry(kind).remove(component)
            self.loaded.remove(info)
        self._indexed.pop(name, None)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)

    def load_builtins(self) -> None:
        from recguard import builtin_plugin

        self.register_plugin(builtin_plugin, BUILTIN_PLUGIN,
                             Provenance(BUILTIN_PLUGIN, "recguard", __version__))

    def load_entry_points(self) -> None:
        """Entry-point plugins in name order: lazily from a fresh plugin index, else imported."""
        every = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        allowed = _allowed_plugins()
        chosen = [ep for ep in every if allowed is None or ep.name in allowed]
        if not plugin_index.enabled():
            for ep in chosen:
                self._load_entry_point(ep)
            return
        key = plugin_index.fingerprint(every)
        indexed = plugin_index.read(key, KINDS)
        records = {ep.name: self._load_or_index(ep, (indexed or {}).get(ep.name)) for ep in chosen}
        # plugins left out by RECGUARD_PLUGINS keep their records; failed ones get none
        kept = {name: r for name, r in (indexed or {}).items() if name not in records}
        updated = kept | {name: r for name, r in records.items() if r is not None}
        if updated != indexed:
            plugin_index.write(key, updated)

    def _load_or_index(self, ep: metadata.EntryPoint,
                       record: plugin_index.Record | None) -> plugin_index.Record | None:
        """Register ``ep``'s plugin lazily from its index record when it has one (and adds no
        CLI commands, which need the module); else import it. Its record, None if it failed."""
        if record is not None and not record["commands"] and self._add_indexed(ep, record):
            return record
        info = self._load_entry_point(ep)
        return None if info is None else self._index_record(info)

    def _add_indexed(self, ep: metadata.EntryPoint, record: plugin_index.Record) -> bool:
        """Lazy entries for the record's components, all or nothing: False on a duplicate
        name (the import that follows then fails with the error a full load gives)."""
        provenance = _provenance(ep)   # what the record stores too: the fingerprint holds the versions
        added: list[tuple[Registry, str]] = []
        try:
            for kind, components in record["components"].items():
                for component in components:
                    self.registry(kind).add_lazy(component["name"], provenance, component["description"])
                    added.append((self.registry(kind), component["name"]))
        except RecguardError:
            for registry, name in added:
                registry.remove(name)
            return False
        components = {kind: [c["name"] for c in items] for kind, items in record["components"].items()}
        self.loaded.append(PluginInfo(ep.name, provenance, components))
        self._indexed[ep.name] = (ep, record)
        return True

    def _load_entry_point(self, ep: metadata.EntryPoint) -> PluginInfo | None:
        """Import and register one entry-point plugin, guarded: a failure is recorded in
        `failed` (and None returned), never raised."""
        provenance = _provenance(ep)
        try:
            return self.register_plugin(ep.load(), ep.name, provenance)
        except Exception as exc:  # a broken plugin must not take the CLI down
            error = f"{type(exc).__name__}: {exc}"
            self.failed.append(PluginFailure(ep.name, provenance.distribution, error))
            return None

    def load_indexed_plugin(self, name: str) -> None:
        """Import and register a plugin known from the index, now that one of its components
        is needed. A failure is recorded in `failed`, its lazy entries are dropped and a
        one-line `RecguardError` names it."""
        if name not in self._indexed:
            raise RecguardError(f"plugin {name} is not waiting to be loaded")
        ep, record = self._indexed.pop(name)
        info = self._load_entry_point(ep)
        for kind in KINDS:
            self.registry(kind).drop_lazy(name)   # what it did not register after all
        if info is None:
            self.loaded = [i for i in self.loaded if i.name != name]
            plugin_index.discard()   # the next start loads everything and records the failure
            raise RecguardError(f"plugin {name} failed to load: {self.failed[-1].error.splitlines()[0]}")
        if self._index_record(info) != record:
            plugin_index.discard()   # it registers something else than the index says

    def _index_record(self, info: PluginInfo) -> plugin_index.Record | None:
        """What the index stores of a loaded plugin; None when a component's describe()
        raises (that plugin is then imported at every start, as without an index)."""
        try:
            components = {kind: [{"name": name, "description": self.registry(kind).description(name)}
                                 for name in names]
                          for kind, names in info.components.items()}
        except Exception:
            return None
        module = self.pm.get_plugin(info.name)
        commands = any(impl.plugin is module for impl in self.pm.hook.register_commands.get_hookimpls())
        return {"provenance": info.provenance.to_dict(), "commands": commands, "components": components}


def _provenance(ep: metadata.EntryPoint) -> Provenance:
    if ep.dist is None:
        return Provenance(ep.name, "?", "?")
    return Provenance(ep.name, ep.dist.name, ep.dist.version)


def _name(obj: Any) -> str:
    return getattr(obj, "name", "")


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get(PLUGINS_ENV)
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


_HOST: Host | None = None


def get_host() -> Host:
    """The process-wide host, loaded on first use."""
    global _HOST
    if _HOST is None:
        host = Host()
        host.load_builtins()
        host.load_entry_points()
        _HOST = host
    return _HOST


def registered(kind: str, name: str) -> Any:
    """The component registered as ``name`` of ``kind`` ('backbone', 'attack', 'defense',
    'metric', 'dataset', 'protocol'): how a plugin builds another plugin's component (an
    attack's surrogate recommender, LLaRA's SASRec). An unknown name is a `RecguardError`
    that lists the registered ones."""
    return get_host().registry(kind).get(name)


def registered_names(kind: str) -> list[str]:
    """The names registered of ``kind``, sorted."""
    return get_host().registry(kind).names()


def reset_host() -> None:
    """Forget the loaded host (tests; after installing a plugin)."""
    global _HOST
    _HOST = None
    sys.modules.pop("recguard.builtin_plugin", None)
