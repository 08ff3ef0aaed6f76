"""Moved to :mod:`udistill.pipeline.planning`; kept because issue #14 names `planning.estimate`."""

from .pipeline.planning import (
    MEASURED,
    PUBLISHED,
    Stage,
    count_images,
    describe_costs,
    estimate,
    model_bytes,
    optimizer_copies,
    plan_commands,
    throughput,
)

__all__ = [
    "MEASURED",
    "PUBLISHED",
    "Stage",
    "count_images",
    "describe_costs",
    "estimate",
    "model_bytes",
    "optimizer_copies",
    "plan_commands",
    "throughput",
]
