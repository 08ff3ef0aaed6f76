"""Which ``torchrun`` rank this process is, and splitting a pass over a data set across the
ranks so that the result equals a one-process run exactly. The one place that asks.

Why batches, not images, are dealt out: a convolution's rounding can depend on what else is
in its batch, so a rank computes each image in the same batch (same neighbours, same batch
index) as a one-process run would: global batch ``b`` (images ``b*B .. b*B+B-1`` of the
list) goes to rank ``b % world``. Per-batch seeds (MC dropout masks) use the global ``b``.
The merge happens on rank 0 (:func:`gather_to_main`); metric accumulators add, per-image
lists are put back in image order.

Outside ``torchrun`` (no process group) every helper is the one-process identity. Imports
nothing else of udistill.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched_world_size() -> int:
    """How many processes torchrun started (``WORLD_SIZE``), known before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's torchrun rank (``RANK``), known before the process group exists."""
    return int(os.environ.get("RANK", "0") or 0)


def global_batches(indices: Sequence[int], batch_size: int, limit: int | None = None) -> list[list[int]]:
    """``indices`` cut into consecutive batches of ``batch_size`` (the last may be short);
    with ``limit`` only as many batches as a one-process loop needs to see ``limit`` images."""
    idx = list(indices)
    batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    if limit is not None:
        batches = batches[: max(0, math.ceil(limit / batch_size))]
    return batches


def my_batches(
    batches: list[list[int]], rank: int | None = None, world_size: int | None = None
) -> list[tuple[int, list[int]]]:
    """This rank's ``(global batch number, indices)`` pairs: batch ``b`` to rank ``b % world``."""
    if rank is None or world_size is None:
        rank, world_size = world()
    return [(b, batch) for b, batch in enumerate(batches) if b % world_size == rank]


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over every rank (a new CPU tensor on every rank); one process: ``t``.
    Additive metric state (``metrics.accumulator``) is reduced this way."""
    if world()[1] == 1:
        return t
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = t.detach().to(dev).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (pickled) on rank 0, in rank order; ``None`` on the other ranks.
    One process: ``[obj]``."""
    rank, n = world()
    if n == 1:
        return [obj]
    out: list[Any] | None = [None] * n if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. an error message, so every rank raises it)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
