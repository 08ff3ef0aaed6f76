"""Atomic file writes: a file is either the old version or the complete new one.

Every writer goes through a temporary file in the same folder, fsync, then ``os.replace``,
so a crash or a kill never leaves half a checkpoint, config or report behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UdistillError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise UdistillError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise UdistillError(f"{path}: write failed ({exc.strerror or exc})") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that :func:`atomic_path` leaves in
    ``folder`` when its process is killed mid-write. Call it where the current command is
    the folder's only writer (a run's own output folder, when it resumes)."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as strict JSON: a non-finite number (NaN, infinity), which strict parsers
    reject, is written as ``null``."""
    atomic_write_text(path, json_text(obj) + "\n")


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (non-finite numbers as ``null``; arrays and paths converted)."""
    return json.dumps(finite_json(obj), indent=indent, sort_keys=False, allow_nan=False)


def finite_json(obj: Any) -> Any:
    """``obj`` with arrays, tensors and numpy numbers as plain values and NaN / infinity as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return finite_json(_json_default(obj))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UdistillError(f"{path}: {what} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UdistillError(f"{path}: {what} is not valid JSON ({exc})") from None


def remove_temp_files_of(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` leaves for this one ``path``
    (``.NAME.XXXX.tmp`` beside it) when its writer was killed: safe in a folder shared with
    other files, since only temporaries of this name are touched."""
    import glob

    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_set(files: list[tuple[Path, Any]], last: Path, last_data: bytes, journal: Path) -> None:
    """Write ``files`` and then ``last`` as one set, so a reader that trusts ``last`` never
    sees a mixed or partial set. A file's data may be a callable returning the bytes: it is
    called when that file is written, so only one file's bytes are held at a time.

    Why this order: every file first goes to a temporary name; ``journal`` (a fixed name,
    holding ``last``'s content) is written before anything is renamed, so a killed writer
    leaves a mark naming its files; an older ``last`` is removed before the others are
    replaced (an old record never vouches for new files) and ``last`` is renamed from the
    journal at the very end: it exists only beside a complete set."""
    temps: list[tuple[Path, Path]] = []
    touched = False  # once the old set is changed, the journal must stay to mark it
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((Path(tmp), path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data() if callable(data) else data)
                fh.flush()
                os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        atomic_write_bytes(journal, last_data)
        if last.is_file() or last.is_symlink():
            touched = True
            last.unlink()
        for tmp, path in temps:
            touched = True
            os.replace(tmp, path)
        os.replace(journal, last)
    except OSError as exc:
        raise UdistillError(f"{exc.filename or last}: write failed ({exc.strerror or exc})") from None
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if not touched:
            journal.unlink(missing_ok=True)


def json_bytes(obj: Any) -> bytes:
    """The bytes :func:`atomic_write_json` writes for ``obj``."""
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode("utf-8")
