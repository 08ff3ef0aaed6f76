"""Training: the one loop (members, baseline, student) and the ensemble recipes."""

from .loop import MODEL_FILE, STATE_FILE, fit, resolve_device, supervised_objective, validate
from .recipes import member_recipe

__all__ = ["MODEL_FILE", "STATE_FILE", "fit", "resolve_device", "supervised_objective", "validate", "member_recipe"]
