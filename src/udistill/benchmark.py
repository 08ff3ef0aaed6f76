"""Moved to :mod:`udistill.deploy.benchmark`; kept because issue #11 names `benchmark.run_benchmark`."""

from .deploy.benchmark import (
    BACKENDS,
    MODELS,
    RATIOS,
    default_num_classes,
    device_name,
    format_table,
    run_benchmark,
    run_benchmark_cli,
)

__all__ = [
    "BACKENDS",
    "MODELS",
    "RATIOS",
    "default_num_classes",
    "device_name",
    "format_table",
    "run_benchmark",
    "run_benchmark_cli",
]
