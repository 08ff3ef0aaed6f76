"""Speed options that change how the model runs, not what it computes: channels-last memory
layout (``train.channels_last``) and :func:`torch.compile` (``train.compile``).

Both act on the module the training step calls; the model whose weights are saved stays a
plain module (compiled modules prefix their state-dict keys), so checkpoints do not change.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def to_channels_last(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``model`` with NHWC parameters when ``train.channels_last`` (in place)."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def compile_model(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``torch.compile(model)`` when ``train.compile`` is true or names a backend, else ``model``."""
    option = cfg.compile
    if option is False or option in ("", "false", "none", None):
        return model
    backend = "inductor" if option is True or option == "true" else str(option)
    return torch.compile(model, backend=backend)


def batch_to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """Tensors of ``batch`` on ``device`` (4-d ones NHWC when ``channels_last``); other values as they are."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out
