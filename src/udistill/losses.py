"""Moved to :mod:`udistill.core.losses`; kept because issue #4 names `udistill.losses.distillation_loss`."""

from .core.losses import LOG_EPS, SIGMA_LOSSES, DistillationLoss, distillation_loss, sigma_loss_fn

__all__ = ["DistillationLoss", "LOG_EPS", "SIGMA_LOSSES", "distillation_loss", "sigma_loss_fn"]
