"""The dataset specs recguard registers itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recguard.components import Config
from recguard.config import param
from recguard.data import loaders
from recguard.data.cache import cached_interactions, file_signature
from recguard.data.datasets import DatasetSpec
from recguard.data.interactions import Interactions
from recguard.errors import RecguardError


@dataclass
class CSVConfig(Config):
    item_text: str | None = param(None, "an item,text file with item titles")
    delimiter: str | None = param(None, "field separator; default from the extension (.tsv: tab)")


def _cached(name: str, load: Callable[..., Interactions], needs: str | None = None):
    """A spec loader that goes through the prepared-data cache."""

    def run(path: Path | None, config: Config) -> Interactions:
        if path is None and needs:
            raise RecguardError(f"dataset {name!r} needs --data-path PATH ({needs})")
        options = config.to_dict()
        sources = {"data": file_signature(path) if path is not None else None}
        if options.get("item_text"):
            sources["item_text"] = file_signature(loaders.existing(options["item_text"]))
        if path is None:  # the embedded default: its files identify it
            sources["data"] = file_signature(loaders.recbole_ml100k_folder())
        key = {"dataset": name, "sources": sources, "options": options}
        return cached_interactions(key, lambda: load(path, **{k: v for k, v in options.items()}))
    return run


def _load_csv(path, item_text=None, delimiter=None):
    return loaders.load_csv(path, Path(item_text) if item_text else None, delimiter)


DATASETS = (
    DatasetSpec("ml-100k", "MovieLens-100K with titles: the recbole wheel's copy, or a GroupLens "
                           "ml-100k folder / zip or RecBole atomic folder by path",
                _cached("ml-100k", lambda path: loaders.load_ml100k(path))),
    DatasetSpec("ml-1m", "MovieLens-1M: a folder or zip with ratings.dat and movies.dat",
                _cached("ml-1m", lambda path: loaders.load_ml1m(path),
                        "a folder or zip with ratings.dat and movies.dat"), needs_path=True),
    DatasetSpec("atomic", "RecBole atomic files: <name>.inter (+ <name>.item for item text)",
                _cached("atomic", lambda path: loaders.load_atomic(path),
                        "a folder with <name>.inter"), needs_path=True),
    DatasetSpec("csv", "CSV/TSV lines user,item[,rating][,timestamp]; item texts by option",
                _cached("csv", _load_csv, "a .csv or .tsv file"), Config=CSVConfig, needs_path=True),
)
