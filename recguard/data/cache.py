"""The prepared-data cache: parsed datasets as ``.npz`` files (no pickles), written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from recguard.data.interactions import Interactions
from recguard.io import atomic_write, cache_dir

FORMAT_VERSION = 1
ARRAYS = ("user", "item", "rating", "timestamp", "user_ids", "item_ids")


def file_signature(path: Path | None) -> dict | None:
    """What identifies a data file's content cheaply: path, size and modification time
    (of every file, for a folder)."""
    if path is None:
        return None
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {"path": str(path),
            "files": [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size,
                       p.stat().st_mtime_ns] for p in files]}


def cache_key(key: dict) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def save(data: Interactions, path: Path) -> None:
    arrays = {name: getattr(data, name) for name in ARRAYS}
    arrays["user_ids"] = arrays["user_ids"].astype(str)
    arrays["item_ids"] = arrays["item_ids"].astype(str)
    if data.item_text is not None:
        arrays["item_text"] = np.asarray(data.item_text).astype(str)
    meta = {"n_users": data.n_users, "n_items": data.n_items, "feedback": data.feedback,
            "rating_max": data.rating_max, "name": data.name}
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load(path: Path) -> Interactions:
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        text = npz["item_text"].astype(object) if "item_text" in npz.files else None
        return Interactions(user=npz["user"], item=npz["item"], rating=npz["rating"],
                            timestamp=npz["timestamp"], user_ids=npz["user_ids"],
                            item_ids=npz["item_ids"], item_text=text, **meta)


def cached_interactions(key: dict, build: Callable[[], Interactions]) -> Interactions:
    """The cached dataset for ``key``, built (and stored) on a miss or a corrupt entry."""
    path = cache_dir() / "data" / f"{cache_key(key)}.npz"
    if path.exists():
        try:
            return load(path)
        except Exception:  # corrupt or from an older format: rebuild below
            pass
    data = build()
    try:
        save(data, path)
    except OSError:
        pass  # an unwritable cache costs time, not correctness
    return data
