"""Sweep spec files: TOML grids of cells, read and checked for their shape (no plugin loaded).

A spec holds named groups (``[groups.NAME]``), each a grid: every key names one value or a
list of values, and the group's cells are the product of its lists. ``[defaults]`` fills
what a group leaves out; a file without ``[groups]`` is one group named ``main``. The
format is documented in docs/sweeps.md. Every error names the file and the line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recguard.errors import RecguardError, did_you_mean

# the axes of a grid, in the order a cell's label shows them
AXES = ("dataset", "data_path", "backbone", "protocol", "attack", "budget", "defense", "seeds")
ROLES = ("dataset", "backbone", "attack", "defense", "protocol")
OPTION_TABLES = tuple(f"{role}_options" for role in ROLES)
GROUP_KEYS = AXES + OPTION_TABLES + ("options", "exclude", "headline")
TOP_KEYS = ("groups", "defaults", "headline")
EXCLUDE_KEYS = tuple(a for a in AXES if a != "seeds") + ("seed",)
MAIN_GROUP = "main"

_ABSENT = object()   # a key a table does not have


@dataclass
class Group:
    """One grid: a value list per axis, options (a list is an axis too) and exclude rules."""

    name: str
    line: int
    axes: dict[str, list[Any]]
    role_options: dict[str, dict[str, list[str]]]        # role -> option -> values
    named_options: dict[str, dict[str, list[str]]]       # component name -> option -> values
    excludes: list[dict[str, list[Any]]]
    headline: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # key -> line, for messages


@dataclass
class SweepSpec:
    path: Path
    groups: list[Group]
    headline: str | None = None


class KeyLines:
    """Where each key of a TOML file is written: tomllib gives values, not positions. Keys
    are found by their table header and ``key =`` lines (dotted keys split; keys inside
    inline tables are given the line of the key that holds them)."""

    HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self.HEADER.match(line)
            if header:
                table = self._split(header.group(1))
                self.lines.setdefault(table, number)
                continue
            assign = self.ASSIGN.match(line)
            if assign:
                self.lines.setdefault(table + self._split(assign.group(1)), number)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        return tuple(part.strip().strip("\"'") for part in dotted.split("."))

    def line(self, *path: str) -> int:
        """The line of ``path``, else of its nearest enclosing key or table (1 at worst)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1


class SpecReader:
    """Reads one spec file, raising `RecguardError` ``file:line: message`` on the first problem."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.where = KeyLines(text)

    def fail(self, message: str, *key: str) -> RecguardError:
        return RecguardError(f"{self.path}:{self.where.line(*key)}: {message}")

    def check_keys(self, table: dict, allowed: tuple[str, ...], *at: str) -> None:
        for key in table:
            if key not in allowed:
                place = f"[{'.'.join(at)}]" if at else "the top level"
                raise self.fail(f"unknown key {key!r} in {place}{did_you_mean(key, allowed)}; "
                                f"allowed: {', '.join(allowed)}", *at, key)

    def read(self, data: dict) -> SweepSpec:
        grouped = "groups" in data
        ungrouped = TOP_KEYS + tuple(k for k in GROUP_KEYS if k not in TOP_KEYS)
        self.check_keys(data, TOP_KEYS if grouped else ungrouped)
        headline = self.text(data.get("headline"), "headline") if "headline" in data else None
        defaults = self.table(data.get("defaults", {}), "defaults")
        self.check_keys(defaults, GROUP_KEYS, "defaults")
        if not grouped:
            body = {k: v for k, v in data.items() if k not in TOP_KEYS}
            return SweepSpec(self.path, [self.group(MAIN_GROUP, body, defaults, ())], headline)
        groups = self.table(data["groups"], "groups")
        if not groups:
            raise self.fail("[groups] is empty: add a grid, e.g. [groups.main]", "groups")
        out = []
        for name, body in groups.items():
            body = self.table(body, "groups", name)
            self.check_keys(body, GROUP_KEYS, "groups", name)
            out.append(self.group(name, body, defaults, ("groups", name)))
        return SweepSpec(self.path, out, headline)

    def table(self, value: Any, *key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{'.'.join(key)} must be a table", *key)
        return value

    def text(self, value: Any, *key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"{'.'.join(key)} must be a non-empty string, not {value!r}", *key)
        return value

    def values(self, value: Any, axis: str, *key: str) -> list[Any]:
        """An axis's values: one or a list, each of the axis's type; never an empty list."""
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(f"{axis} is an empty list: give at least one value", *key)
        return [self.value(item, axis, *key) for item in items]

    def value(self, item: Any, axis: str, *key: str) -> Any:
        if axis in ("seeds", "seed"):
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2 ** 32:
                raise self.fail(f"{axis}: {item!r} is not a seed (an integer 0 ... 2**32-1)", *key)
            return item
        if axis == "budget":
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 1:
                raise self.fail(f"budget: {item!r} is not a fraction of genuine users in (0, 1)", *key)
            return float(item)
        return self.text(item, *key)

    def option_values(self, value: Any, *key: str) -> list[str]:
        """An option's values as the strings ``-o key=value`` would give."""
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(f"option {key[-1]} is an empty list", *key)
        out = []
        for item in items:
            if isinstance(item, (dict, list)):
                raise self.fail(f"option {key[-1]}: {item!r} is not a single value "
                                f"(write a tuple as a string: \"0.7,0.1,0.2\")", *key)
            out.append(str(item).lower() if isinstance(item, bool) else str(item))
        return out

    def options(self, table: Any, *key: str) -> dict[str, list[str]]:
        table = self.table(table, *key)
        return {name: self.option_values(value, *key, name) for name, value in table.items()}

    def group(self, name: str, own: dict, defaults: dict, at: tuple[str, ...]) -> Group:
        """The group at ``at`` (its own keys ``own``) over the spec's ``[defaults]``; each
        key's messages name the line where it is written, in the group or in the defaults."""
        body = {**defaults, **own}

        def path(key: str, *inner: str) -> tuple[str, ...]:
            return (*(at if key in own else ("defaults",)), key, *inner)

        def merged_options(*key: str) -> dict[str, list[str]]:
            """The options table at ``key`` of the defaults, updated option by option by the
            group's own (each value's messages name the line it is written on)."""
            out: dict[str, list[str]] = {}
            for where, table in ((("defaults",), defaults), (at, own)):
                for part in key:
                    table = table.get(part, _ABSENT) if isinstance(table, dict) else _ABSENT
                if table is not _ABSENT:
                    out.update(self.options(table, *where, *key))
            return out

        axes = {axis: self.values(body[axis], axis, *path(axis)) for axis in AXES if axis in body}
        role_options = {table[: -len("_options")]: merged_options(table)
                        for table in OPTION_TABLES if table in body}
        named = {**self.table(defaults.get("options", {}), "defaults", "options"),
                 **self.table(own.get("options", {}), *at, "options")}
        named_options = {component: merged_options("options", component) for component in named}
        rules = body.get("exclude", [])
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise self.fail("exclude must be a list of tables, e.g. [{attack = \"dp\", "
                            "defense = \"rvd\"}]", *path("exclude"))
        excludes = []
        for rule in rules:
            self.check_keys(rule, EXCLUDE_KEYS, *path("exclude"))
            if not rule:
                raise self.fail("an empty exclude rule would drop every cell", *path("exclude"))
            excludes.append({k: self.values(v, k, *path("exclude")) for k, v in rule.items()})
        headline = self.text(body["headline"], *path("headline")) if "headline" in body else None
        lines = {key: self.where.line(*path(key)) for key in body}
        return Group(name, self.where.line(*at) if at else 1, axes, role_options, named_options,
                     excludes, headline, lines)


def read_spec(path: str | Path) -> SweepSpec:
    """Parse and shape-check a spec file (names and options are checked by `recguard.sweep.grid`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecguardError(f"sweep spec '{path}' does not exist") from None
    except IsADirectoryError:
        raise RecguardError(f"'{path}' is a folder, not a sweep spec (a .toml file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecguardError(f"cannot read sweep spec '{path}': {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise RecguardError(f"{path}:{line.group(1) if line else 1}: not valid TOML: {exc}") from None
    return SpecReader(path, text).read(data)
