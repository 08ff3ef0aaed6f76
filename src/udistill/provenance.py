"""Moved to :mod:`udistill.train.provenance`; kept because issue #11 names `provenance.start_stage`."""

from .deploy.predict.alarm import calibration_inputs
from .errors import StaleStageError
from .models.checkpoint import weights_digest
from .train.provenance import (
    PARTIAL_FILE,
    check_finished,
    check_run,
    differences,
    digest,
    init_path_of,
    member_inputs,
    rebuilding_stale,
    rebuilds_stale,
    reusable,
    set_aside,
    start_stage,
    student_inputs,
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
