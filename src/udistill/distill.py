"""Moved to :mod:`udistill.pipeline.distill`; kept because issue #20 names `udistill.distill` (and #14 `distill.run_distill`)."""

from .core.heads import init_sigma_bias, uncertainty_output_layer
from .core.teachers import teacher_targets
from .layout import control_dir, student_dir
from .pipeline.distill import (
    RECIPES,
    Recipe,
    cache_folder,
    distillation_objective,
    distillation_set,
    resolve_recipe,
    run_control,
    run_distill,
    student_seed,
    student_train_config,
    teacher_sigma_mean,
    views_for,
)

__all__ = [
    "RECIPES",
    "Recipe",
    "cache_folder",
    "control_dir",
    "distillation_objective",
    "distillation_set",
    "init_sigma_bias",
    "resolve_recipe",
    "run_control",
    "run_distill",
    "student_dir",
    "student_seed",
    "student_train_config",
    "teacher_sigma_mean",
    "teacher_targets",
    "uncertainty_output_layer",
    "views_for",
]
