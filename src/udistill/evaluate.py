"""Moved to :mod:`udistill.evaluation.evaluate`; kept because issue #14 names `evaluate.run_evaluation`."""

from .evaluation.evaluate import *  # noqa: F403 - every public name, as listed there
from .evaluation.evaluate import __all__  # noqa: F401
