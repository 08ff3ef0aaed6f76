"""Training under ``torchrun``: wrapping the model and keeping ranks in step (which rank this
is: :mod:`udistill.sharding`).

Every rank trains on its own slice of each epoch's batches (see :func:`rank_batches`),
DistributedDataParallel averages the gradients, BatchNorm buffers are taken from rank 0 after
every epoch (or synchronised every step with ``train.sync_bn``), and at the end the ranks
compare weight digests: a run whose ranks diverged fails instead of saving one rank's model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..config import TrainConfig
from ..errors import TrainingError
from .batchnorm import synchronise_batchnorm, uses_batchnorm_of_all_ranks


def wants_sync_bn(cfg: TrainConfig, device: torch.device, world_size: int) -> bool:
    """``train.sync_bn`` if set, else on for several GPUs (off on CPU and for one process)."""
    if world_size < 2:
        return False
    if cfg.sync_bn is not None:
        return bool(cfg.sync_bn)
    return torch.device(device).type == "cuda"


def prepare_batchnorm(model: nn.Module, cfg: TrainConfig, device: torch.device, world_size: int) -> nn.Module:
    """``model``, its BatchNorm layers synchronised across ranks when :func:`wants_sync_bn`."""
    return synchronise_batchnorm(model, device) if wants_sync_bn(cfg, device, world_size) else model


def wrap_ddp(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """The module the training step calls: DDP around ``model`` under several ranks, else ``model``."""
    if world_size < 2:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_batches(order: torch.Tensor, steps: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """This rank's sample indices of an epoch: the first ``steps`` global batches, dealt round-robin.

    Shape: order (len(dataset),) a permutation; returns ``steps * batch_size`` indices.
    """
    return order[: steps * batch_size * world_size][rank::world_size].tolist()


def share_batchnorm_buffers(model: nn.Module, world_size: int) -> None:
    """BatchNorm running statistics are per rank; take rank 0's so that all ranks agree."""
    if world_size > 1:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def shut_down(clean: bool = True) -> None:
    """Leave the process group so that no communication thread outlives it.

    The ranks first meet at a barrier: a rank that destroys its group while another still
    talks to it can abort the process ("terminate called without an active exception" in a
    gloo worker). After an error (``clean=False``) the barrier is skipped (the other rank may
    be gone) and the group is only destroyed. Does nothing outside ``torchrun``.
    """
    if not dist.is_initialized():
        return
    try:
        if clean and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def check_equal_weights(model: nn.Module, world_size: int, desc: str) -> dict:
    """Every rank must end with identical weights: ``{"ddp": {...}}`` evidence for the checkpoint
    (empty for one process); raises :class:`TrainingError` when the ranks differ."""
    if world_size < 2:
        return {}
    digests: list = [None] * world_size
    dist.all_gather_object(digests, weights_digest(model))
    if len(set(digests)) != 1:
        raise TrainingError(f"{desc}: ranks ended with different weights ({digests})")
    return {"ddp": {"world_size": world_size, "rank_digests": digests, "sync_bn": uses_batchnorm_of_all_ranks(model)}}


def weights_digest(model: nn.Module) -> str:
    from ..models.checkpoint import _digest

    return _digest(model.state_dict())[:16]
