"""Numeric precision of training: fp32, or autocast to fp16 (with loss scaling) or bf16.

``train.precision`` chooses; when it is unset the older ``train.amp`` switch decides (fp16 on
CUDA, fp32 elsewhere), so existing configs train as before. bf16 keeps fp32's exponent range
and needs no loss scaling; fp16 does, and its scaler is part of the saved training state.
"""

from __future__ import annotations

import contextlib

import torch

from ..config import TrainConfig
from ..errors import ConfigError

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """``cfg.precision`` if set (checked), else ``"fp16"`` for ``amp`` on CUDA, else ``"fp32"``."""
    if cfg.precision is not None:
        name = str(cfg.precision).lower()
        if name not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
        return name
    return "fp16" if cfg.amp and device.type == "cuda" else "fp32"


class Precision:
    """Autocast and loss scaling for one precision on one device."""

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = torch.device(device)
        self.dtype = PRECISIONS[name]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=name == "fp16")

    @classmethod
    def for_config(cls, cfg: TrainConfig, device: torch.device) -> Precision:
        return cls(resolve_precision(cfg, torch.device(device)), device)

    def autocast(self):
        """The context the forward pass and the loss run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, grad_clip: float) -> None:
        """Backward (scaled for fp16), optional gradient-norm clipping, optimiser step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict | None:
        """The loss scaler's state (fp16), else None: nothing to save."""
        return self.scaler.state_dict() if self.scaler.is_enabled() else None

    def load_state_dict(self, state: dict | None) -> None:
        if state is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
