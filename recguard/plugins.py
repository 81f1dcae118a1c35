"""The plugin host: built-ins first, then entry points, each load guarded.

``RECGUARD_PLUGINS`` limits which entry-point plugins load: a comma-separated
list of plugin (entry-point) names; empty means built-ins only; unset means all.
A plugin that raises at import or while registering is listed as failed with
its error, and everything else keeps working.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from recguard import __version__, hookspecs
from recguard.contracts import Attack, Backbone, Defense, Metric
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
        self.loaded.append(info)
        return info

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and every component it registered (used by test fixtures)."""
        for info in [i for i in self.loaded if i.name == name]:
            for kind, names in info.components.items():
                for component in names:
                    self.registry(kind).remove(component)
            self.loaded.remove(info)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)

    def load_builtins(self) -> None:
        from recguard import builtin_plugin

        self.register_plugin(builtin_plugin, BUILTIN_PLUGIN,
                             Provenance(BUILTIN_PLUGIN, "recguard", __version__))

    def load_entry_points(self) -> None:
        allowed = _allowed_plugins()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                module = ep.load()
                self.register_plugin(module, ep.name, Provenance(ep.name, dist, version))
            except Exception as exc:  # a broken plugin must not take the CLI down
                self.failed.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))


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
