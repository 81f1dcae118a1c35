"""The plugin index: what each entry-point plugin registers, so the host need not import it.

For every plugin (entry point of the group ``recguard``) that loaded, the index stores its
provenance, whether it adds CLI commands, and its components by kind: each one's name and
the ``describe()`` text `recguard list` prints. It lives in the cache folder
(``cache_dir()/plugins/``, one file per Python environment) and is keyed by a fingerprint
computed without importing any plugin: the entry points (names, values, distribution names
and versions), the size and mtime of every ``.py`` file of each plugin's top-level package
(found with ``importlib.util.find_spec``, so editable installs count) and recguard's own
version and files. A missing, stale or unreadable index reads as None; the host then loads
every plugin (as without an index) and writes a new one, atomically.

``RECGUARD_PLUGIN_INDEX=off`` bypasses the index (neither read nor written) for debugging:
every plugin is imported at start, as before the index existed.

Core module: it imports neither torch nor the kit nor the pipeline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from recguard import __version__
from recguard.files import atomic_write_json, cache_dir, loads_json

INDEX_ENV = "RECGUARD_PLUGIN_INDEX"
OFF_VALUES = {"off", "0", "false", "no"}
FORMAT = 1   # bump when the file's layout changes: an old file then reads as stale

# {"provenance": {plugin, distribution, version}, "commands": bool,
#  "components": {kind: [{"name": ..., "description": ...}]}}
Record = dict[str, Any]


def enabled() -> bool:
    return os.environ.get(INDEX_ENV, "").strip().lower() not in OFF_VALUES


def index_path() -> Path:
    # one file per environment: two virtualenvs sharing ~/.cache/recguard would otherwise
    # overwrite each other's index on every start
    environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / "plugins" / f"index-{environment}.json"


# ------------------------------------------------------------------ fingerprint


def fingerprint(entry_points: Iterable[Any]) -> str:
    """A digest of everything a plugin's registrations could depend on, read from metadata
    and file stats only: no plugin is imported."""
    parts: list[Any] = [FORMAT, __version__, source_stats("recguard")]
    for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
        dist = (ep.dist.name, ep.dist.version) if ep.dist else None
        parts.append([ep.name, ep.value, dist, source_stats(ep.value.split(":")[0].split(".")[0])])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def source_stats(top_module: str) -> list[Any]:
    """(path, size, mtime) of each ``.py`` file of a top-level module or package, located
    without importing it; a module that cannot be found is marked so (its load will fail)."""
    try:
        spec = importlib.util.find_spec(top_module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return ["missing"]
    files = [Path(spec.origin)] if spec.origin and not spec.submodule_search_locations else []
    for folder in spec.submodule_search_locations or ():
        files += _python_files(Path(folder))
    return [_stat(path) for path in sorted(files)]


def _python_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [Path(root) / n for n in names if n.endswith(".py")]
    return found


def _stat(path: Path) -> list[Any]:
    try:
        info = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), info.st_size, info.st_mtime_ns]


# ------------------------------------------------------------------ reading and writing


def read(expected: str, kinds: Iterable[str]) -> dict[str, Record] | None:
    """The plugin records of the index whose fingerprint is ``expected``, or None when the
    file is missing, unreadable, malformed or stale."""
    try:
        data = loads_json(index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("fingerprint") != expected:
        return None
    plugins = data.get("plugins")
    if not isinstance(plugins, dict) or not all(valid_record(r, set(kinds)) for r in plugins.values()):
        return None
    return plugins


def write(fingerprint_: str, plugins: dict[str, Record]) -> None:
    """Write the index atomically; a cache folder we cannot write only costs the speed-up."""
    try:
        atomic_write_json(index_path(), {"format": FORMAT, "fingerprint": fingerprint_,
                                         "plugins": plugins}, allow_nan=False)
    except OSError:
        pass


def discard() -> None:
    """Forget the index (what it says proved wrong): the next start rebuilds it."""
    try:
        index_path().unlink()
    except OSError:
        pass


def valid_record(record: Any, kinds: set[str]) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("commands"), bool):
        return False
    provenance = record.get("provenance")
    components = record.get("components")
    if not (isinstance(provenance, dict) and _strings(provenance, ("plugin", "distribution", "version"))):
        return False
    if not isinstance(components, dict) or not set(components) <= kinds:
        return False
    return all(isinstance(items, list) and all(_component(c) for c in items)
               for items in components.values())


def _component(item: Any) -> bool:
    return isinstance(item, dict) and _strings(item, ("name", "description")) and bool(item["name"])


def _strings(obj: dict, keys: tuple[str, ...]) -> bool:
    return all(isinstance(obj.get(key), str) for key in keys)
