"""One writer per run folder: a lock file held with ``flock`` while a stage writes.

Why: two ``udistill experiment`` runs on one ``out_dir`` would both train member 0 and
overwrite each other's checkpoints. The lock is ``<run>/.udistill.lock``; it holds the
holder's pid, host, command and start time, so a second writer is refused with a message
naming the holder.

Why ``flock``: the kernel releases the lock when its process dies, however it dies (SIGKILL,
OOM, power off of a client), so a lock left behind by a killed run is simply free: the next
writer takes it over atomically, with no pid probing and no race between two takers. The
file's stale content then only tells whom it belonged to (reported as a takeover).

The lock is re-entrant inside one process (``run_experiment`` holds it while calling the
stages that take it too). Under ``torchrun`` only rank 0 takes it: the ranks of one job are
one writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import UdistillError

LOCK_NAME = ".udistill.lock"

_held: dict[str, list] = {}  # resolved run folder -> [file object, depth]


class RunLockedError(UdistillError):
    """Another process is writing to the run folder."""


def holder(run_dir: str | os.PathLike) -> Optional[dict]:
    """The recorded holder of ``run_dir``'s lock file ({} if unreadable, None if no file)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else {}
    except json.JSONDecodeError:
        return {}


def _describe(info: Optional[dict]) -> str:
    if not info:
        return "an unknown process"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} ({info.get('command', '?')}, since {when})"


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block; :class:`RunLockedError` if another
    live process holds it. A lock left by a dead process is taken over (and ``log``-ged).
    The lock file is removed on release (a clean run leaves nothing behind)."""
    run = Path(run_dir)
    if not _is_rank0():
        yield run
        return
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    key = str(run.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield run
        finally:
            _held[key][1] -= 1
        return
    path = run / LOCK_NAME
    fh = _acquire(path, run)
    try:
        previous = holder(run)
        if previous and previous.get("pid") != os.getpid():
            (log or _warn)(f"{run}: taking over the lock of {_describe(previous)}, which is no longer running")
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200], "started": time.time()}))
        fh.flush()
        _held[key] = [fh, 1]
        yield run
    finally:
        _held.pop(key, None)
        # unlink while still holding the lock, then release: a process that opened the old
        # file meanwhile sees (in _acquire) that it is no longer the lock file and retries
        with contextlib.suppress(OSError):
            path.unlink()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
        if created:  # a stage that failed before writing anything leaves no empty run folder
            with contextlib.suppress(OSError):
                run.rmdir()


def _acquire(path: Path, run: Path):
    """Open and flock ``path``; retry if the file was replaced meanwhile."""
    for _ in range(100):
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise RunLockedError(f"{run}: run folder is in use by {_describe(holder(run))}; wait for it to finish "
                                 f"or use another out_dir") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fh
        fh.close()  # the holder released and removed it between our open and flock: retry
    raise RunLockedError(f"{run}: cannot take the run folder lock {path} (it keeps changing)")


def _warn(msg: str) -> None:
    print(f"udistill: warning: {msg}", file=sys.stderr)


def locks_run(fn: Callable) -> Callable:
    """Decorator for a stage ``fn(cfg, ...)`` that writes under ``cfg.out_dir``: holds the lock."""

    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        with run_lock(cfg.out_dir):
            return fn(cfg, *args, **kwargs)

    return wrapper
