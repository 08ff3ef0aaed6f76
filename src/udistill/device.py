"""Which device a job runs on: one answer for training, evaluation and deployment.

``"auto"`` is the GPU of this process's rank when CUDA is available (``torchrun`` starts one
process per GPU: rank R uses GPU R modulo the GPUs visible), else the CPU; any other string is
handed to :class:`torch.device` (``"cpu"``, ``"cuda:1"``, ``"mps"``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def resolve_device(name: str = "auto") -> torch.device:
    """The :class:`torch.device` for ``name`` (``"auto"``: this rank's GPU, else the CPU)."""
    if name == "auto":
        if torch.cuda.is_available():
            rank = dist.get_rank() if dist.is_initialized() else 0
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(name)
