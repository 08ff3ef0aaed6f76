"""Latency: the one place where forward passes are timed.

:func:`time_calls` is used by ``udistill benchmark`` (:mod:`udistill.deploy.benchmark`, every
model and backend at every size) and by evaluation (``latency_ms`` of results.json,
:func:`udistill.evaluation.models.measure_latency`, the evaluated predictors in eager PyTorch).

Protocol: ``warmup`` untimed calls per model (one for the ``heavy`` ones, which are already
several passes), then ``repeats`` timed rounds in which every model runs once in turn (round
robin, so a change of machine load hits all models alike), under ``torch.inference_mode``.
CUDA timings synchronise before and after each call (:func:`device_sync`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def device_sync(device) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (CUDA), or does nothing (CPU)."""
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return sync


def time_calls(
    runners: Mapping[str, Callable],
    make_input: Callable[[], object],
    warmup: int,
    repeats: int,
    sync: Callable[[], None],
    heavy: Sequence[str] = ("ensemble", "mc_dropout"),
) -> dict[str, tuple[float, float]]:
    """(median, min) seconds per call of each runner on one input, interleaving the models
    round by round."""
    x = make_input()
    with torch.inference_mode():
        for name, fn in runners.items():
            for _ in range(1 if name in heavy else warmup):
                fn(x)
        sync()
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, fn in runners.items():
                sync()
                t0 = time.perf_counter()
                fn(x)
                sync()
                times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}
