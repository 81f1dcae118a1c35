"""Name -> component, with base-class checks, duplicate errors, suggestions and provenance.

A registry may also hold *lazy* entries (`LazyEntry`): a component known from the plugin
index (name, provenance, description) whose plugin is not imported yet. Asking for its
object (`get`, `entry`, iteration) has the registry's loader import and register the
whole plugin first; `names`, `in`, suggestions and `listed` never import anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from recguard.errors import RecguardError, unknown

T = TypeVar("T")


@dataclass(frozen=True)
class Provenance:
    """Where a component comes from: the plugin (module) and its distribution's version."""

    plugin: str
    distribution: str
    version: str

    def to_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version}


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    provenance: Provenance

    @property
    def description(self) -> str:
        return description_of(self.obj)


@dataclass(frozen=True)
class LazyEntry:
    """A component known from the plugin index, its plugin not imported yet."""

    name: str
    provenance: Provenance
    description: str


def description_of(obj: Any) -> str:
    """What `recguard list` prints of a component: its ``describe()``, if it has one."""
    return obj.describe() if hasattr(obj, "describe") else ""


class Registry(Generic[T]):
    """Components of one kind, by name.

    ``check`` validates what is registered (a base class, a spec type) and
    returns an error message or None. Registering a name twice raises an error
    that names both plugins.
    """

    def __init__(self, kind: str, check: Callable[[Any], str | None], name_of: Callable[[Any], str]):
        self.kind = kind
        self._check = check
        self._name_of = name_of
        self._entries: dict[str, Entry[T] | LazyEntry] = {}
        self._load_plugin: Callable[[str], None] | None = None

    def set_loader(self, load_plugin: Callable[[str], None]) -> None:
        """``load_plugin(plugin name)`` imports and registers a plugin whose entries are lazy;
        it raises a `RecguardError` when the plugin fails."""
        self._load_plugin = load_plugin

    def add(self, obj: T, provenance: Provenance) -> None:
        problem = self._check(obj)
        if problem:
            raise RecguardError(f"plugin {provenance.plugin} registered an invalid {self.kind}: {problem}")
        name = self._name_of(obj)
        if not name:
            raise RecguardError(f"plugin {provenance.plugin} registered a {self.kind} without a name: {obj!r}")
        self._refuse_duplicate(name, provenance)
        self._entries[name] = Entry(name, obj, provenance)

    def add_lazy(self, name: str, provenance: Provenance, description: str) -> None:
        """A component of a plugin not imported yet, as the plugin index knows it."""
        self._refuse_duplicate(name, provenance)
        self._entries[name] = LazyEntry(name, provenance, description)

    def _refuse_duplicate(self, name: str, provenance: Provenance) -> None:
        existing = self._entries.get(name)
        if existing is None or _replaces(existing, provenance):
            return
        raise RecguardError(f"{self.kind} {name!r} is registered twice: by plugin "
                            f"{existing.provenance.plugin} and by plugin {provenance.plugin}")

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def drop_lazy(self, plugin: str) -> None:
        """Forget the lazy entries of ``plugin`` (it failed, or did not register them after all)."""
        for name in [n for n, e in self._entries.items() if _is_lazy_of(e, plugin)]:
            del self._entries[name]

    def lazy_plugins(self) -> list[str]:
        """The plugins, in registration order, of which this registry holds lazy entries."""
        return list(dict.fromkeys(e.provenance.plugin for e in self._entries.values()
                                  if isinstance(e, LazyEntry)))

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries)
        found = self._entries[name]
        if isinstance(found, LazyEntry):
            self._load(found.provenance.plugin)
            if not isinstance(self._entries.get(name), Entry):   # the plugin no longer registers it
                raise unknown(self.kind, name, self._entries)
            found = self._entries[name]
        return found

    def _load(self, plugin: str) -> None:
        if self._load_plugin is None:
            raise RecguardError(f"plugin {plugin} is known from the plugin index but cannot be loaded")
        self._load_plugin(plugin)

    def load_all(self) -> None:
        """Import every plugin with lazy entries here; one that fails is skipped (its entries
        dropped, the failure recorded by the loader), as a full load would have skipped it."""
        for plugin in self.lazy_plugins():
            try:
                self._load(plugin)
            except RecguardError:
                self.drop_lazy(plugin)

    def description(self, name: str) -> str:
        """The component's description, without importing its plugin."""
        return self._entries[name].description

    def listed(self) -> list[Entry[T] | LazyEntry]:
        """Every entry, lazy or loaded, sorted by name, without importing any plugin: for
        listings of names, provenance and descriptions."""
        return sorted(self._entries.values(), key=lambda e: e.name)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def registered(self) -> list[Entry[T]]:
        """Entries in the order they were registered (built-ins first, then plugins by name);
        lazy plugins are loaded first."""
        self.load_all()
        return list(self._entries.values())  # type: ignore[arg-type]  # none lazy now

    def iter_objects(self) -> Iterator[T]:
        return (entry.obj for entry in self)

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load_all()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._entries)


def _is_lazy_of(entry: Entry | LazyEntry, plugin: str) -> bool:
    return isinstance(entry, LazyEntry) and entry.provenance.plugin == plugin


def _replaces(existing: Entry | LazyEntry, provenance: Provenance) -> bool:
    """A plugin loaded at last replaces its own lazy entries (same plugin, distribution and
    version); anything else is a duplicate."""
    return isinstance(existing, LazyEntry) and existing.provenance == provenance


def subclass_check(base: type) -> Callable[[Any], str | None]:
    def check(obj: Any) -> str | None:
        if not (isinstance(obj, type) and issubclass(obj, base)):
            return f"{obj!r} is not a subclass of {base.__module__}.{base.__name__}"
        if obj is base:
            return f"the base class {base.__name__} itself cannot be registered"
        return None
    return check


def instance_check(cls: type) -> Callable[[Any], str | None]:
    def check(obj: Any) -> str | None:
        return None if isinstance(obj, cls) else f"{obj!r} is not a {cls.__name__}"
    return check
