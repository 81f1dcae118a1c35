"""Atomic file writes, strict JSON and the cache folder: nothing is ever half-written, and
no record or entry recguard writes or accepts holds NaN or Infinity (which JSON does not
have)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from recguard.errors import RecguardError

CACHE_ENV = "RECGUARD_CACHE"


def cache_dir() -> Path:
    """``$RECGUARD_CACHE``, else ``$XDG_CACHE_HOME/recguard``, else ``~/.cache/recguard``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recguard"


def canonical_json(obj: Any, compact: bool = False) -> str:
    """``obj`` as JSON with sorted keys and ``str()`` of what JSON has no type for: the same
    text for the same content, whatever the order it was built in."""
    return json.dumps(obj, sort_keys=True, default=str,
                      separators=(",", ":") if compact else None)


def json_digest(obj: Any, length: int = 64, compact: bool = False) -> str:
    """The first ``length`` hex digits of the sha256 of `canonical_json` of ``obj``: the
    content address of a cache entry, a record or a result."""
    return hashlib.sha256(canonical_json(obj, compact).encode()).hexdigest()[:length]


def check_writable(path: str | os.PathLike, what: str, folder: bool = True) -> Path:
    """Refuse, before any work is done, an output ``path`` (a folder, else a file) that could
    not be written: its nearest existing ancestor must be a folder we may write in."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        raise RecguardError(f"{what} '{path}' is a {'file' if folder else 'folder'}, "
                            f"not a {'folder' if folder else 'file'}")
    target = path if folder else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        raise RecguardError(f"{what} '{path}': '{target}' is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RecguardError(f"{what} '{path}': no permission to write there")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))   # mkstemp makes it 0600
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to fill; renamed into place when the block ends,
    removed when it raises. If another writer put ``folder`` there first, theirs is kept
    (a cache entry of the same key holds the same thing)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(folder), suffix=".tmp", dir=folder.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _temporary_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: the temporary files and folders beside ``path`` name their writer,
    so that what a killed writer left (SIGKILL runs no clean-up) is removed by the next."""
    _remove_abandoned(path.parent)
    return f".{path.name}.{_HOST}-{os.getpid()}."


_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
_ABANDONED = re.compile(rf"^\..+\.{re.escape(_HOST)}-(\d+)\.[^.]*\.tmp$")
# a folder is looked over at most once a minute per process: a sweep writes thousands of
# records into one folder, and a listing per write would make that quadratic
_SWEEP_EVERY_S = 60.0
_last_swept: dict[Path, float] = {}


def _remove_abandoned(folder: Path) -> None:
    """Remove the temporaries in ``folder`` whose writer, a process of this host, is gone.
    Another host's (a cache on a shared disk) are left alone: their writer cannot be asked."""
    if os.name != "posix":   # os.kill(pid, 0) asks on POSIX; on Windows it terminates
        return
    now = time.monotonic()
    if now - _last_swept.get(folder, -_SWEEP_EVERY_S) < _SWEEP_EVERY_S:
        return
    _last_swept[folder] = now
    try:
        with os.scandir(folder) as entries:
            left = [(Path(e.path), int(m.group(1))) for e in entries
                    if (m := _ABANDONED.match(e.name))]
    except OSError:
        return
    for sibling, pid in left:
        if _running(pid):
            continue
        if sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        return True
    return True


def _mode_for(path: Path) -> int:
    """An existing file keeps its permissions; a new one gets what the user's umask gives."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)   # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def _jsonable(obj: Any) -> Any:
    """numpy scalars and arrays (which plugins may leave in notes) as plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def atomic_write_json(path: str | os.PathLike, obj: Any, allow_nan: bool = True) -> Path:
    """``obj`` as indented JSON. What is published (records, entries) passes ``allow_nan=False``;
    caches may hold the NaN of an undefined metric, which Python's json reads back."""
    return atomic_write_text(path, dumps_json(obj, path, allow_nan))


def dumps_json(obj: Any, path: str | os.PathLike = "JSON", allow_nan: bool = False) -> str:
    """Indented JSON text; unless ``allow_nan``, a non-finite number anywhere is a
    RecguardError naming where."""
    try:
        return json.dumps(obj, indent=2, default=_jsonable, allow_nan=allow_nan) + "\n"
    except ValueError:
        where = nonfinite_at(json.loads(json.dumps(obj, default=_jsonable))) or "a value"
        raise RecguardError(f"refusing to write {path}: {where} is not a finite number") from None


def nonfinite_at(obj: Any, where: str = "") -> str | None:
    """The path (``metrics.clean.HR@10.mean``) of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "the value")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        found = nonfinite_at(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def loads_json(text: str) -> Any:
    """``json.loads`` that refuses NaN / Infinity and too deep nesting (ValueError either way)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
