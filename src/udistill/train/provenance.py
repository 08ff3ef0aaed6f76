"""What each stage was built from: records of a stage's inputs, and how two records differ.

Why: stages are skipped when their output exists. Retrain a member and the student distilled
from the old ensemble would be reused without a word. So every stage records digests of its
inputs beside its output (in its checkpoint metadata, or its JSON file, under ``built_from``):

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

This module only builds records (:func:`member_inputs`, :func:`student_inputs`, :func:`digest`),
compares them (:func:`differences`) and reads and writes the record files
(:func:`read_record`, :func:`read_partial`, :func:`write_partial`, :func:`write_json_record`).
What a stage does with the comparison (reuse, refuse, set aside and rebuild, resume) is the
stage runner's, :mod:`udistill.train.stage`, the one place that decides it for every stage.

It lives in ``train/`` rather than the pipeline because evaluation and the single-pass stages
check a stage's staleness before loading it, and they may not import the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..config import to_dict
from ..errors import CheckpointError, StaleStageError
from ..io import atomic_write_json
from ..layout import PARTIAL_FILE, RunLayout
from ..models.checkpoint import read_metadata, weights_digest
from .recipes import member_recipe

__all__ = [
    "PARTIAL_FILE",
    "RecordUnreadable",
    "StaleStageError",
    "differences",
    "digest",
    "init_path_of",
    "label",
    "member_inputs",
    "read_json_record",
    "read_partial",
    "read_record",
    "student_inputs",
    "weights_digest",
    "write_json_record",
    "write_partial",
]

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
    layout = RunLayout.of(cfg)
    members = {str(k): weights_digest(layout.member_model(k)) for k in range(cfg.teacher.members)}
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
            out.append(f"{label(name)} changed ({was} -> {now})")
    return out


def label(name: str) -> str:
    """How messages name an input (``members 3`` -> ``member 3``, ``init`` -> ``initial model``)."""
    if name.startswith("members "):
        return f"member {name.split(' ', 1)[1]}"
    return {"init": "initial model", "config": "config", "student": "student weights"}.get(name, name)


def init_path_of(cfg) -> Path:
    """The model the student starts from (``distill.init_from``)."""
    return RunLayout.of(cfg).member_model(0) if cfg.distill.init_from == "member0" else Path(cfg.distill.init_from)


# --- the record files ------------------------------------------------------------------------


class RecordUnreadable(Exception):
    """A stage's output exists but its record cannot be read (a damaged file)."""


def read_record(output: str | Path, kind: str = "checkpoint") -> dict | None:
    """The ``built_from`` record of a finished stage's ``output``: from the checkpoint's metadata
    (``kind`` "checkpoint") or from the JSON file itself ("json"). None when the output carries
    no record (written before provenance existed); :class:`RecordUnreadable` when it cannot be
    read."""
    output = Path(output)
    if kind == "checkpoint":
        try:
            recorded = read_metadata(output).get("built_from")
        except CheckpointError as e:
            raise RecordUnreadable(str(e)) from e
    elif kind == "json":
        try:
            recorded = json.loads(output.read_text("utf-8")).get("built_from")
        except (OSError, ValueError, AttributeError) as e:
            raise RecordUnreadable(f"{output}: {e}") from e
    else:
        raise ValueError(f"unknown record kind {kind!r} (checkpoint or json)")
    return recorded if isinstance(recorded, dict) else None


def read_json_record(path: str | Path) -> dict:
    """A JSON stage's whole record (what it fitted, and ``built_from``)."""
    return json.loads(Path(path).read_text("utf-8"))


def write_json_record(path: str | Path, record: dict, inputs: dict) -> dict:
    """Write ``record`` with its ``built_from`` entry (last) to ``path``, atomically; returns it."""
    finished = {**record, "built_from": inputs}
    atomic_write_json(path, finished)
    return finished


def read_partial(folder: str | Path) -> dict | None:
    """What the unfinished stage in ``folder`` was being built from (None: no readable record)."""
    try:
        return json.loads(RunLayout.partial_record_in(folder).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_partial(folder: str | Path, inputs: dict) -> None:
    """Record, atomically, what the stage in ``folder`` is now being built from."""
    atomic_write_json(RunLayout.partial_record_in(folder), inputs)
