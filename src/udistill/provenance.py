"""Moved to :mod:`udistill.train.provenance`; kept because issue #11 names `provenance.start_stage`.

Provenance is now pure record-and-compare; what a stage does with a record (reuse, refuse,
set aside, start) moved to the stage runner, :mod:`udistill.train.stage`. The old names of
both are re-exported here: ``start_stage`` is the runner's start step (the partial record, and
an unfinished state of other inputs set aside); ``reusable``, ``check_finished``, ``check_run``,
``set_aside``, ``rebuilding_stale`` and ``rebuilds_stale`` are the runner's too.
"""

from .deploy.predict.alarm import calibration_inputs
from .errors import StaleStageError
from .models.checkpoint import weights_digest
from .train.provenance import (
    PARTIAL_FILE,
    differences,
    digest,
    init_path_of,
    member_inputs,
    student_inputs,
)
from .train.stage import (
    check_finished,
    check_run,
    rebuilding_stale,
    rebuilds_stale,
    reusable,
    set_aside,
    start_stage,
)

__all__ = [
    "PARTIAL_FILE",
    "StaleStageError",
    "calibration_inputs",
    "check_finished",
    "check_run",
    "differences",
    "digest",
    "init_path_of",
    "member_inputs",
    "rebuilding_stale",
    "rebuilds_stale",
    "reusable",
    "set_aside",
    "start_stage",
    "student_inputs",
    "weights_digest",
]
