"""One writer per run folder and per stage: lock files held with ``flock`` while a stage writes.

A shared leaf (it used to be ``udistill.pipeline.runlock``, which still re-exports it) because the
stage runner (:mod:`udistill.train.stage`) takes these locks for every stage, the single-pass
stages included, and neither it nor ``single_pass`` may import the pipeline.

Why: two ``udistill experiment`` runs on one ``out_dir`` would both train member 0 and
overwrite each other's checkpoints. But members are also meant to be trained by independent
jobs at once (``train-teacher --member K`` on a cluster). So there are two levels:

- the run: ``<run>/.udistill.lock``, held *exclusively* by ``experiment`` and ``evaluate``
  (they write everywhere in the run) and *shared* by every stage job;
- a stage: ``<run>/.locks/<stage>.lock`` (``member-3``, ``student``, ``student-light``),
  held exclusively by the job writing that stage.

Two experiments on one run, an experiment and a ``distill`` on it, or two jobs training
member 3 exclude each other; jobs training members 2 and 3 do not. A refused writer gets a
message naming the holder (pid, host, command, start time), which each exclusive holder
writes into its lock file.

Why ``flock``: the kernel releases a lock when its process dies, however it dies (SIGKILL,
OOM), so a lock left by a killed run is simply free: the next writer takes it over
atomically, with no pid probing and no race between two takers; the stale content only tells
whom it belonged to (reported as a takeover). Lock files are removed when released.

Locks are re-entrant inside one process (``run_experiment`` holds the run while calling the
stages). Under ``torchrun`` only rank 0 locks: the ranks of one job are one writer.
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
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import UdistillError
from .layout import LOCK_NAME, STAGE_LOCKS, RunLayout
from .sharding import launched_rank

__all__ = ["LOCK_NAME", "STAGE_LOCKS", "RunLockedError", "holder", "locks_run", "run_lock"]

_held: dict[str, list] = {}  # lock file path -> [file object, depth, exclusive]


class RunLockedError(UdistillError):
    """Another process is writing to the run folder or the stage."""


def _read(path: Path) -> dict | None:
    """The holder recorded in a lock file ({} if empty or unreadable, None if no file)."""
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


def holder(run_dir: str | os.PathLike) -> dict | None:
    """The recorded exclusive holder of the run folder's lock."""
    return _read(RunLayout(run_dir).lock)


def _describe(info: dict | None) -> str:
    if not info:
        return "another udistill process"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    stage = f", stage {info['stage']}" if info.get("stage") else ""
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')} ({info.get('command', '?')}{stage}, since {when})"
    )


def _stage_holders(run: Path) -> str:
    infos = [_read(p) for p in sorted(RunLayout(run).stage_locks.glob("*.lock"))]
    named = [_describe(i) for i in infos if i]
    return "; ".join(named) if named else "another udistill process"


def _is_rank0() -> bool:
    return launched_rank() == 0


def _me(stage: str | None) -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "stage": stage,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
            "started": time.time(),
        }
    )


def _open_locked(path: Path, exclusive: bool):
    """Open and flock ``path`` (non-blocking); None if another process holds it. Retries when
    the file was removed and recreated between our open and flock."""
    for _ in range(100):
        path.parent.mkdir(exist_ok=True)  # .locks/ may have been removed by a finishing stage
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fh
        fh.close()
    raise RunLockedError(f"{path}: cannot take the lock (the file keeps changing)")


@contextlib.contextmanager
def _hold(path: Path, exclusive: bool, stage: str | None, refuse: Callable[[], str], log) -> Iterator[None]:
    key = str(path.resolve())
    if key in _held and (_held[key][2] or not exclusive):
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fh = _open_locked(path, exclusive)
    if fh is None:
        raise RunLockedError(refuse())
    try:
        previous = _read(path)
        if previous and previous.get("pid") != os.getpid():
            log(f"{path.parent}: taking over the lock of {_describe(previous)}, which is no longer running")
        if exclusive or previous:
            fh.seek(0)
            fh.truncate()  # shared holders only clear a dead holder's record
        if exclusive:
            fh.write(_me(stage))
            fh.flush()
        _held[key] = [fh, 1, exclusive]
        yield
    finally:
        _held.pop(key, None)
        _release(path, fh, exclusive)


def _release(path: Path, fh, exclusive: bool) -> None:
    """Remove the lock file while holding it exclusively (a shared holder tries to become the
    last one), then unlock: anyone who opened the old file sees in _open_locked that it is gone."""
    try:
        if not exclusive:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(OSError):
            path.unlink()
    except OSError:
        pass  # other shared holders remain: the file stays
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


@contextlib.contextmanager
def run_lock(
    run_dir: str | os.PathLike, stage: str | None = None, log: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the run (``stage`` None: exclusively) or one stage of it (the run shared, the
    stage exclusively) for the ``with`` block; :class:`RunLockedError` naming the holder if
    another live process is in the way. Locks of dead processes are taken over (``log``-ged)."""
    run = Path(run_dir)
    log = log or _warn
    if not _is_rank0():
        yield run
        return
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    layout = RunLayout(run)
    try:
        if stage is None:
            with _hold(layout.lock, True, None, lambda: _refusal(run, None), log):
                yield run
            return
        with _hold(layout.lock, False, stage, lambda: _refusal(run, None), log):
            stage_lock = layout.stage_lock(stage)
            stage_lock.parent.mkdir(exist_ok=True)
            try:
                with _hold(stage_lock, True, stage, lambda: _refusal(run, stage), log):
                    yield run
            finally:
                with contextlib.suppress(OSError):
                    stage_lock.parent.rmdir()  # only when empty
    finally:
        if created:  # a stage that failed before writing anything leaves no empty run folder
            with contextlib.suppress(OSError):
                run.rmdir()


def _refusal(run: Path, stage: str | None) -> str:
    if stage is not None:
        who = _describe(_read(RunLayout(run).stage_lock(stage)))
        return f"{run}: stage {stage} is being written by {who}; wait for it to finish or use another out_dir"
    info = holder(run)
    who = _describe(info) if info else _stage_holders(run)
    return f"{run}: run folder is in use by {who}; wait for it to finish or use another out_dir"


def _warn(msg: str) -> None:
    print(f"udistill: warning: {msg}", file=sys.stderr)


def locks_run(fn: Callable) -> Callable:
    """Decorator for a stage ``fn(cfg, ...)`` that writes all over ``cfg.out_dir``: holds the
    run exclusively (``run_experiment``)."""

    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        with run_lock(cfg.out_dir):
            return fn(cfg, *args, **kwargs)

    return wrapper
