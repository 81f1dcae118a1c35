"""The prepared-data cache: parsed datasets stored as ``.npz`` files.

An entry is named by the sha256 of its key (canonical JSON, with the cache
format version) and lives at ``cache_dir()/data/<hash>.npz``. Strings are
stored as numpy unicode arrays and read back with ``allow_pickle=False``;
entries are written atomically. A corrupt or unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from recguard.data.interactions import Interactions
from recguard.errors import RecguardError
from recguard.files import atomic_write, cache_dir, canonical_json

FORMAT_VERSION = 1
ARRAYS = ("user", "item", "rating", "timestamp", "user_ids", "item_ids")
SCALARS = ("n_users", "n_items", "feedback", "rating_max", "name")


def file_signature(path: Path | str) -> dict:
    """What identifies a file's content cheaply: its resolved path, size and mtime_ns.

    For a folder: the total size, the latest mtime_ns, the number of files and
    a digest of every file's relative path, size and mtime_ns (so adding,
    removing, renaming or touching any file changes it).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise RecguardError(f"dataset path '{path}' does not exist")
    path = path.resolve()
    if not path.is_dir():
        stat = path.stat()
        return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    listing, size, mtime = [], 0, 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            file = Path(root, name)
            try:
                stat = file.stat()
            except OSError:  # a dangling link or a file removed meanwhile
                continue
            name = file.relative_to(path).as_posix()
            listing.append(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}")
            size, mtime = size + stat.st_size, max(mtime, stat.st_mtime_ns)
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
    return {"path": str(path), "size": size, "mtime_ns": mtime, "files": len(listing),
            "listing": digest}


def key_json(key: dict) -> str:
    """The canonical JSON of a cache key, with the cache format version."""
    return canonical_json({"format": FORMAT_VERSION, "key": key}, compact=True)


def cache_path(key: dict) -> Path:
    """Where the entry for ``key`` is stored."""
    digest = hashlib.sha256(key_json(key).encode()).hexdigest()
    return cache_dir() / "data" / f"{digest}.npz"


def save(data: Interactions, path: Path, key: dict | None = None) -> None:
    """Write ``data`` to ``path`` atomically (no pickled objects)."""
    arrays = {name: np.asarray(getattr(data, name)) for name in ARRAYS}
    arrays["user_ids"] = arrays["user_ids"].astype(str)
    arrays["item_ids"] = arrays["item_ids"].astype(str)
    if data.item_text is not None:
        arrays["item_text"] = np.asarray(data.item_text).astype(str)
    meta = {name: getattr(data, name) for name in SCALARS}
    meta["n_users"], meta["n_items"] = int(data.n_users), int(data.n_items)
    meta["rating_max"] = float(data.rating_max)
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["key"] = np.array(key_json(key) if key is not None else "")
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load(path: Path, key: dict | None = None) -> Interactions:
    """Read an entry written by `save`; ValueError if it is not one (or not ``key``'s)."""
    with np.load(path, allow_pickle=False) as npz:
        if key is not None and str(npz["key"]) != key_json(key):
            raise ValueError("the entry belongs to another key")
        meta = json.loads(str(npz["meta"]))
        text = npz["item_text"].astype(object) if "item_text" in npz.files else None
        arrays = {name: npz[name] for name in ARRAYS}
    data = Interactions(item_text=text, **arrays, **{name: meta[name] for name in SCALARS})
    for index, count in ((data.user, data.n_users), (data.item, data.n_items)):
        if len(index) and (index.min() < 0 or index.max() >= count):
            raise ValueError("indices out of range")
    if len(data.user_ids) != data.n_users or len(data.item_ids) != data.n_items:
        raise ValueError("identifier arrays do not match the counts")
    return data


def cached_interactions(key: dict, build: Callable[[], Interactions]) -> Interactions:
    """The dataset stored for ``key``; on a miss (or a corrupt entry) ``build()`` it and store it.

    ``key`` must be JSON-serialisable and identify the content: include a
    `file_signature` of the source files and every option the build reads.
    """
    path = cache_path(key)
    if path.is_file():
        try:
            return load(path, key)
        except Exception:  # corrupt, truncated or from another format: rebuild
            pass
    data = build()
    try:
        save(data, path, key)
    except OSError:
        pass  # an unwritable cache costs time, not correctness
    return data
