"""Name -> component, with base-class checks, duplicate errors, suggestions and provenance."""

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
        self._entries: dict[str, Entry[T]] = {}

    def add(self, obj: T, provenance: Provenance) -> None:
        problem = self._check(obj)
        if problem:
            raise RecguardError(f"plugin {provenance.plugin} registered an invalid {self.kind}: {problem}")
        name = self._name_of(obj)
        if not name:
            raise RecguardError(f"plugin {provenance.plugin} registered a {self.kind} without a name: {obj!r}")
        if name in self._entries:
            first = self._entries[name].provenance.plugin
            raise RecguardError(f"{self.kind} {name!r} is registered twice: by plugin {first} "
                                f"and by plugin {provenance.plugin}")
        self._entries[name] = Entry(name, obj, provenance)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries)
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def registered(self) -> list[Entry[T]]:
        """Entries in the order they were registered (built-ins first, then plugins by name)."""
        return list(self._entries.values())

    def iter_objects(self) -> Iterator[T]:
        return (entry.obj for entry in self)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)


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
