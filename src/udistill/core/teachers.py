"""The teacher's targets for a batch: M and Σ computed outside any float16 autocast (a Σ of
1e-4 is of the order of float16 rounding). Used by the pipeline's online distillation and by
:class:`udistill.core.Distiller`."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .ensemble import Ensemble


def teacher_targets(
    ensemble: Ensemble, images: torch.Tensor, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """M and Σ of ``images`` computed outside any enclosing float16 autocast.

    Shape: images (N, 3, H, W) -> mean, std (N, C, H, W) float32."""
    dev = images.device.type
    if precision == "bf16":
        with torch.autocast(dev, dtype=torch.bfloat16):
            t = ensemble(images)
    elif precision == "fp32":
        with torch.autocast(dev, enabled=False):
            t = ensemble(images.float())
    else:
        raise ConfigError(f"teacher precision (distill.teacher_precision): expected fp32 or bf16, got '{precision}'")
    return t.mean.float(), t.std.float()
