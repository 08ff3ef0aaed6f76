"""What each stage was built from, so a stale stage is never silently reused.

Why: stages are skipped when their ``model.safetensors`` exists. Retrain a member and the
student distilled from the old ensemble would be reused without a word. So every stage
records, in its checkpoint metadata under ``built_from``, digests of its inputs:

- a member: a digest of the config that shapes its weights (model, its training recipe,
  initialisation seed, the training data's definition; not the data root, so a moved data
  folder does not invalidate it);
- the student: the weights digest of every member of the ensemble and of the model it
  starts from, plus a digest of its own config;
- the OOD calibration (the ``ood`` record in the student checkpoint): the student's weights
  digest (:func:`udistill.deploy.predict.alarm.calibration_inputs`), written by whoever calibrates.

A weights digest is the ``sha256`` of the tensors that every checkpoint already carries in its
header (reading it costs a header read; re-saving the same weights, as calibration does,
keeps it).

:func:`reusable` is the one check at each stage's skip point: reuse when nothing changed;
when something did, ``udistill experiment`` (inside :func:`rebuilding_stale`) moves the stale
stage aside to ``<run>/.stale/`` and rebuilds it, and a direct command
(``train-teacher``, ``distill``, ``evaluate``) stops with :class:`StaleStageError` naming
what changed. Checkpoints written before provenance existed carry no ``built_from`` and
are reused as before; an input that is missing now (e.g. deleted members) cannot be
checked and does not make a stage stale.

It lives in ``train/`` rather than the pipeline because evaluation and the single-pass stages
check a stage's staleness before loading it, and they may not import the pipeline.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import to_dict
from ..errors import CheckpointError, StaleStageError
from ..io import atomic_write_json
from ..layout import MODEL_FILE, member_dir, student_dir
from ..models.checkpoint import read_metadata, weights_digest
from ..sharding import barrier, is_main
from .recipes import member_recipe

_REBUILD = contextvars.ContextVar("udistill_rebuild_stale", default=False)
# config keys that do not change the weights a stage produces
_TRAIN_IRRELEVANT = ("progress", "tensorboard")
_DATA_RELEVANT = ("dataset", "size", "train_split", "val_split", "options", "train_options", "seed")


def digest(obj) -> str:
    """16 hex digits of sha256 over ``obj`` as canonical JSON."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _data_definition(cfg) -> dict:
    d = dataclasses.asdict(cfg.data)
    return {k: d.get(k) for k in _DATA_RELEVANT}


def member_inputs(cfg, k: int) -> dict:
    """What member ``k``'s weights depend on (see the module docstring)."""
    model = {k_: v for k_, v in to_dict(cfg.model).items() if k_ != "uncertainty_head"}
    recipe = {
        k_: v
        for k_, v in dataclasses.asdict(member_recipe(cfg.train, k, cfg.teacher.diversify)).items()
        if k_ not in _TRAIN_IRRELEVANT
    }
    init = cfg.teacher.init_seed + (k if cfg.teacher.diverse_init else 0)
    return {"config": digest({"model": model, "train": recipe, "init_seed": init, "data": _data_definition(cfg)})}


def student_inputs(cfg, model_cfg, init_path: str | Path) -> dict:
    """What a student's weights depend on: the members, its initial model, its config."""
    members = {str(k): weights_digest(member_dir(cfg.out_dir, k) / MODEL_FILE) for k in range(cfg.teacher.members)}
    distill = {  # an unset seed, no auxiliary data: left out, so students built before they existed stay current
        k: v
        for k, v in dataclasses.asdict(cfg.distill).items()
        if k != "light_student"
        and not (k == "seed" and v is None)
        and not (k in ("auxiliary", "auxiliary_ratio") and not cfg.distill.auxiliary)
    }
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in _TRAIN_IRRELEVANT}
    config = digest({"model": to_dict(model_cfg), "distill": distill, "train": train, "data": _data_definition(cfg)})
    return {"members": members, "init": weights_digest(init_path), "config": config}


def differences(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """Human-readable list of inputs whose digest changed (missing current values are skipped)."""
    out = []
    for key, was in recorded.items():
        now = current.get(key) if isinstance(current, dict) else None
        name = f"{prefix}{key}"
        if isinstance(was, dict) and isinstance(now, dict):
            out += differences(was, now, prefix=f"{name} ")
        elif now is None or was is None:
            continue
        elif was != now:
            out.append(f"{_label(name)} changed ({was} -> {now})")
    return out


def _label(name: str) -> str:
    if name.startswith("members "):
        return f"member {name.split(' ', 1)[1]}"
    return {"init": "initial model", "config": "config", "student": "student weights"}.get(name, name)


@contextlib.contextmanager
def rebuilding_stale() -> Iterator[None]:
    """Inside this block :func:`reusable` rebuilds stale stages instead of refusing them."""
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


def reusable(model_path: str | Path, inputs: dict, what: str, log: Callable[[str], None] = print) -> bool:
    """True when the finished stage at ``model_path`` may be reused; False when it must be
    (re)built. Raises :class:`StaleStageError` for a stale stage outside :func:`rebuilding_stale`."""
    model_path = Path(model_path)
    if not model_path.exists():
        return False
    try:
        recorded = read_metadata(model_path).get("built_from")
    except CheckpointError:
        return True  # unreadable: whoever loads it reports the problem with its own message
    if not isinstance(recorded, dict):
        return True  # written before provenance was recorded
    changed = differences(recorded, inputs)
    if not changed:
        return True
    if not _REBUILD.get():
        raise StaleStageError(
            f"{model_path}: the {what} is stale ({'; '.join(changed)}); rebuild it with `udistill experiment` "
            f"(or delete {model_path.parent})"
        )
    moved = set_aside(model_path.parent)
    log(f"[{what}] stale ({'; '.join(changed)}): moved to {moved}, rebuilding")
    return False


def check_finished(model_path: str | Path, inputs: dict, what: str) -> None:
    """For read-only users of a stage (evaluate): StaleStageError if it is stale."""
    token = _REBUILD.set(False)
    try:
        reusable(model_path, inputs, what)
    finally:
        _REBUILD.reset(token)


def set_aside(folder: str | Path) -> Path:
    """Move a stale stage folder to ``<run>/.stale/<name>-<time>`` (kept, not deleted; out of
    the way of ``members/member-*`` globs and of the training state a rerun would resume)."""
    folder = Path(folder)
    run = folder.parent.parent if folder.parent.name == "members" else folder.parent
    dest = run / ".stale" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(dest))
    return dest


def check_run(cfg) -> None:
    """Refuse (StaleStageError) when any finished member or student of ``cfg``'s run is stale."""

    for k in range(cfg.teacher.members):
        check_finished(member_dir(cfg.out_dir, k) / MODEL_FILE, member_inputs(cfg, k), f"member {k}")
    heads = [cfg.model.uncertainty_head] + (
        ["light"] if cfg.distill.light_student and cfg.model.uncertainty_head != "light" else []
    )
    for h in heads:
        model_cfg = dataclasses.replace(cfg.model, uncertainty_head=h)
        path = student_dir(cfg, h) / MODEL_FILE
        check_finished(
            path,
            student_inputs(cfg, model_cfg, init_path_of(cfg)),
            "student" if h == "paper" else f"student ({h} head)",
        )


def init_path_of(cfg) -> Path:
    """The model the student starts from (``distill.init_from``)."""

    return (
        member_dir(cfg.out_dir, 0) / MODEL_FILE if cfg.distill.init_from == "member0" else Path(cfg.distill.init_from)
    )


PARTIAL_FILE = "built_from.partial.json"


def start_stage(folder: str | Path, inputs: dict, what: str, log: Callable[[str], None] = print) -> None:
    """Before a stage trains into ``folder``: an unfinished state left there by an earlier
    run is resumed only if that run was building from the same inputs; a state of other
    inputs (another recipe, retrained members) is moved to ``<run>/.stale/`` first, so a
    resume never continues someone else's training. Records the inputs for the next start.
    Under torchrun rank 0 decides and the others wait for it."""
    if is_main():
        folder = Path(folder)
        marker = folder / PARTIAL_FILE
        partial = (
            [p for p in (*folder.glob("last.state*"), folder / "metrics.csv") if p.exists()] if folder.is_dir() else []
        )
        if partial and not (folder / MODEL_FILE).exists():
            try:
                recorded = json.loads(marker.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                recorded = None
            # a state from before this record existed (no marker) is resumed as it always was
            if recorded is not None and recorded != inputs:
                why = "it was built from other inputs: " + "; ".join(differences(recorded, inputs))
                run = folder.parent.parent if folder.parent.name == "members" else folder.parent
                dest = run / ".stale" / f"{folder.name}-partial-{time.strftime('%Y%m%d-%H%M%S')}"
                dest.mkdir(parents=True, exist_ok=True)
                for p in partial:
                    shutil.move(str(p), str(dest / p.name))
                log(f"[{_label(what)}] an unfinished earlier state is not resumed ({why}); moved to {dest}")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, inputs)
    barrier()
