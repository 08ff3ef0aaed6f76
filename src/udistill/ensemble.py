"""Moved to :mod:`udistill.core.ensemble`; kept because issue #3 names `udistill.ensemble`."""

from .core.ensemble import CallableMember, Ensemble, EnsembleOutput, RunningMoments, member_logits
from .layout import member_dir, member_paths

__all__ = [
    "CallableMember",
    "Ensemble",
    "EnsembleOutput",
    "RunningMoments",
    "member_dir",
    "member_logits",
    "member_paths",
]
