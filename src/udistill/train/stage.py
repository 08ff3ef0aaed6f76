"""The stage runner: the one place where a run-folder stage is locked, checked against what it
was built from, reused, refused, set aside, started, configured and finished.

Every stage of a run (the members, the student, the light student, the control, and the
single-pass temperature, feature density and multi-head) is a :class:`Stage` handed to
:func:`run_stage`, which does, in this order:

1. take the stage's lock (:mod:`udistill.runlock`): a stage lock (``member-3``), the whole run
   exclusively (:data:`RUN`: the student and the control write across the run), or none
   (``lock=None``: the caller holds what is needed);
2. record the inputs (``inputs``: a record of :mod:`udistill.train.provenance`, or a function
   returning one, called under the lock);
3. decide reuse: a finished output built from the same inputs (or written before records
   existed) is reused and nothing else runs; one built from other inputs is stale: refused with
   :class:`StaleStageError` naming what changed, or, inside :func:`rebuilding_stale`
   (``udistill experiment``), moved aside to ``<run>/.stale/`` and rebuilt; a stage with
   ``refit_stale`` (the temperature, one small JSON file) is simply refitted;
4. ``load()``: read and check what the stage needs (data, the model it starts from); it must
   write nothing, so a refused run leaves the run folder as it was;
5. start: for a stage that resumes a training state (``resumes``), the partial record
   ``built_from.partial.json``; an unfinished state left by a run of other inputs is moved to
   ``<run>/.stale/`` first (:func:`start_stage`), so a resume never continues someone else's
   training;
6. ``prepare(loaded)``: work after the start and before training (the student's teacher cache
   and its σ initialisation);
7. save the stage's config (``config``) as ``config.yaml`` beside its weights: written when
   the training proper starts (the kill tests watch for it);
8. ``build(prepared, inputs)``: the training or fitting, which writes the checkpoint with the
   ``built_from`` record in its metadata (an atomic save);
9. finish: for a JSON stage (``record="json"``) the runner writes build's record with its
   ``built_from`` entry, atomically.

A build that raises leaves no finished output, so the next run starts (or resumes) it again.

Read-only users of a stage (evaluation, the single-pass predictors) call :meth:`Stage.check`
or :func:`check_finished`: StaleStageError when stale, nothing otherwise. :func:`check_run`
checks a whole run's members and students.

Why in ``train/``: the single-pass stages use the runner and evaluation checks staleness,
and neither may import the pipeline (the same reason provenance lives here).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import save_config
from ..errors import StaleStageError
from ..layout import RunLayout
from ..runlock import run_lock
from ..sharding import barrier, is_main
from . import provenance
from .provenance import differences, label, member_inputs, student_inputs

__all__ = [
    "RUN",
    "Stage",
    "check_finished",
    "check_run",
    "rebuilding_stale",
    "rebuilds_stale",
    "reusable",
    "run_stage",
    "set_aside",
    "start_stage",
]

RUN = ":run"  # Stage.lock: hold the whole run exclusively (the student, the control)
_REBUILD = contextvars.ContextVar("udistill_rebuild_stale", default=False)


@contextlib.contextmanager
def rebuilding_stale() -> Iterator[None]:
    """Inside this block stale stages are set aside and rebuilt instead of refused."""
    token = _REBUILD.set(True)
    try:
        yield
    finally:
        _REBUILD.reset(token)


def rebuilds_stale(fn: Callable) -> Callable:
    """Decorator: run ``fn`` inside :func:`rebuilding_stale` (``run_experiment``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with rebuilding_stale():
            return fn(*args, **kwargs)

    return wrapper


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run folder: what messages call it, where it writes, what marks it finished.

    ``output``: the finished file whose record says what it was built from (a checkpoint, or a
    JSON file with ``record="json"``). Its folder is the stage's: what a stale stage moves
    aside, where a resuming stage keeps its state and where the stage's config is saved (a
    stage at the run's top, ``temperature.json``, refits in place and saves neither)."""

    what: str
    run_dir: Path
    output: Path
    lock: str | None = None
    record: str = "checkpoint"
    resumes: bool = False
    refit_stale: bool = False

    @property
    def folder(self) -> Path:
        return self.output.parent

    # --- locking --------------------------------------------------------------------------------
    def locked(self):
        """The stage's lock as a context manager (see the module docstring, step 1)."""
        if self.lock is None:
            return contextlib.nullcontext()
        return run_lock(self.run_dir) if self.lock == RUN else run_lock(self.run_dir, stage=self.lock)

    # --- reuse and staleness ----------------------------------------------------------------------
    def reusable(self, inputs: dict, log: Callable[[str], None] = print) -> bool:
        """True when the finished output may be reused; False when it must be (re)built, after
        setting a stale one aside (inside :func:`rebuilding_stale`) or before refitting it
        (``refit_stale``). Raises :class:`StaleStageError` for a stale stage otherwise."""
        changed = self._changed(inputs, unreadable_is_current=self.record == "checkpoint")
        if changed is None:
            return False
        if not changed:
            return True
        why = "; ".join(changed)
        if self.refit_stale:
            log(f"[{self.what}] stale ({why}): refitting")
            return False
        if not _REBUILD.get():
            raise self._stale_error(why)
        moved = set_aside(self.folder, self.run_dir)
        log(f"[{self.what}] stale ({why}): moved to {moved}, rebuilding")
        return False

    def check(self, inputs: dict) -> None:
        """For read-only users of a stage (evaluation): StaleStageError if it is stale; nothing
        when it is current, missing or unreadable (whoever loads it reports that)."""
        changed = self._changed(inputs, unreadable_is_current=True)
        if changed:
            raise self._stale_error("; ".join(changed))

    def _changed(self, inputs: dict, unreadable_is_current: bool) -> list[str] | None:
        """What changed since the output was built ([]: nothing); None when there is nothing to
        reuse (no output, or an unreadable one that is not ``unreadable_is_current``)."""
        if not self.output.exists():
            return None
        try:
            recorded = provenance.read_record(self.output, self.record)
        except provenance.RecordUnreadable:
            # a checkpoint: whoever loads it reports the problem with its own message; a JSON record is refitted
            return [] if unreadable_is_current else None
        if recorded is None:
            return []  # written before provenance was recorded
        return differences(recorded, inputs)

    def _stale_error(self, why: str) -> StaleStageError:
        if self.record == "json":
            return StaleStageError(
                f"{self.output}: the {self.what} is stale ({why}); refit it with `udistill experiment`"
            )
        return StaleStageError(
            f"{self.output}: the {self.what} is stale ({why}); rebuild it with `udistill experiment` "
            f"(or delete {self.folder})"
        )

    # --- start, config, finish ---------------------------------------------------------------------
    def start(self, inputs: dict, log: Callable[[str], None] = print) -> None:
        """Step 5: the partial record of a resuming stage (nothing for the others)."""
        if self.resumes:
            start_stage(self.folder, inputs, self.what, log, run=self.run_dir)

    def save_config(self, cfg) -> None:
        """Step 7: the stage's config beside its weights (rank 0 only)."""
        if is_main():
            self.folder.mkdir(parents=True, exist_ok=True)
            save_config(cfg, RunLayout.config_in(self.folder))

    def finish(self, inputs: dict, built: Any):
        """Step 9: the finished output (a JSON stage's record is written here, atomically)."""
        if self.record == "json":
            return provenance.write_json_record(self.output, built, inputs)
        return self.output

    def finished(self):
        """What :func:`run_stage` returns for a reused stage: the output, or a JSON stage's record."""
        if self.record == "json":
            return provenance.read_json_record(self.output)
        return self.output


def run_stage(
    stage: Stage,
    inputs: dict | Callable[[], dict],
    build: Callable[[Any, dict], Any],
    *,
    load: Callable[[], Any] | None = None,
    prepare: Callable[[Any], Any] | None = None,
    config: Any = None,
    log: Callable[[str], None] = print,
):
    """Run ``stage`` (the steps of the module docstring, in that order). Returns the finished
    output's path, or for a JSON stage (``record="json"``) its record.

    ``config``: the stage's config to save, a function of ``prepare``'s result returning it, or
    None (the stage saves none). ``build(prepared, inputs)`` gets the input record to store in
    what it writes."""
    with stage.locked():
        record = inputs() if callable(inputs) else inputs
        if stage.reusable(record, log):
            return stage.finished()
        loaded = load() if load is not None else None
        stage.start(record, log)
        prepared = prepare(loaded) if prepare is not None else loaded
        cfg = config(prepared) if callable(config) else config
        if cfg is not None:
            stage.save_config(cfg)
        built = build(prepared, record)
        return stage.finish(record, built)


# --- the older entry points, each a thin call into the above --------------------------------------


def _checkpoint_stage(model_path: str | Path, what: str, run: str | Path | None = None) -> Stage:
    model_path = Path(model_path)
    return Stage(what, Path(run) if run is not None else _run_of(model_path.parent), model_path)


def reusable(model_path: str | Path, inputs: dict, what: str, log: Callable[[str], None] = print) -> bool:
    """:meth:`Stage.reusable` of the checkpoint stage finished at ``model_path``."""
    return _checkpoint_stage(model_path, what).reusable(inputs, log)


def check_finished(model_path: str | Path, inputs: dict, what: str) -> None:
    """:meth:`Stage.check` of the checkpoint stage at ``model_path`` (evaluation's check)."""
    _checkpoint_stage(model_path, what).check(inputs)


def check_run(cfg) -> None:
    """Refuse (StaleStageError) when any finished member or student of ``cfg``'s run is stale."""
    layout = RunLayout.of(cfg)
    for k in range(cfg.teacher.members):
        Stage(f"member {k}", layout.out_dir, layout.member_model(k)).check(member_inputs(cfg, k))
    heads = [cfg.model.uncertainty_head] + (
        ["light"] if cfg.distill.light_student and cfg.model.uncertainty_head != "light" else []
    )
    for h in heads:
        model_cfg = dataclasses.replace(cfg.model, uncertainty_head=h)
        what = "student" if h == "paper" else f"student ({h} head)"
        stage = Stage(what, layout.out_dir, layout.model_in(layout.student(h)))
        stage.check(student_inputs(cfg, model_cfg, provenance.init_path_of(cfg)))


def _run_of(folder: Path) -> Path:
    """The run a stage folder belongs to, for the older entry points, which are given a path only
    (members lie one deeper). The runner itself always knows its run (:attr:`Stage.run_dir`)."""
    return folder.parent.parent if folder.parent.name == "members" else folder.parent


def set_aside(folder: str | Path, run: str | Path | None = None) -> Path:
    """Move a stale stage folder to ``<run>/.stale/<name>-<time>`` (kept, not deleted; out of
    the way of ``members/member-*`` globs and of the training state a rerun would resume)."""
    folder = Path(folder)
    layout = RunLayout(run if run is not None else _run_of(folder))
    dest = layout.stale / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(dest))
    return dest


def start_stage(
    folder: str | Path,
    inputs: dict,
    what: str,
    log: Callable[[str], None] = print,
    run: str | Path | None = None,
) -> None:
    """Before a stage trains into ``folder``: an unfinished state left there by an earlier
    run is resumed only if that run was building from the same inputs; a state of other
    inputs (another recipe, retrained members) is moved to ``<run>/.stale/`` first, so a
    resume never continues someone else's training. Records the inputs for the next start
    (:func:`udistill.train.provenance.write_partial`). Under torchrun rank 0 decides and the
    others wait for it. (Step 5 of :func:`run_stage`; ``udistill.provenance.start_stage``.)"""
    if is_main():
        folder = Path(folder)
        partial = (
            [p for p in (*folder.glob("last.state*"), folder / "metrics.csv") if p.exists()] if folder.is_dir() else []
        )
        if partial and not RunLayout.model_in(folder).exists():
            recorded = provenance.read_partial(folder)
            # a state from before this record existed (no marker) is resumed as it always was
            if recorded is not None and recorded != inputs:
                why = "it was built from other inputs: " + "; ".join(differences(recorded, inputs))
                layout = RunLayout(run if run is not None else _run_of(folder))
                dest = layout.stale / f"{folder.name}-partial-{time.strftime('%Y%m%d-%H%M%S')}"
                dest.mkdir(parents=True, exist_ok=True)
                for p in partial:
                    shutil.move(str(p), str(dest / p.name))
                log(f"[{label(what)}] an unfinished earlier state is not resumed ({why}); moved to {dest}")
        folder.mkdir(parents=True, exist_ok=True)
        provenance.write_partial(folder, inputs)
    barrier()
