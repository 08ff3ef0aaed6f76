"""Train a two-headed student on an ensemble's M and Σ from the user's own data loader.

No config, no files, no global state: the caller owns seeds, cudnn flags, devices,
checkpoints and logging; the distiller only runs the loss
(:func:`udistill.core.losses.distillation_loss`) and the optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..data.labels import IGNORE_INDEX
from ..errors import TrainingError
from .ensemble import Ensemble
from .heads import init_sigma_bias
from .losses import SIGMA_LOSSES, distillation_loss
from .teachers import teacher_targets

PRECISIONS = ("fp32", "bf16")


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(images, labels or None, teacher mean or None, teacher std or None) from a batch given
    as images, an (images, labels) tuple, or a dict with "image" and optional "label",
    "teacher_mean", "teacher_std" (cached targets)."""
    if isinstance(batch, torch.Tensor):
        return batch, None, None, None
    if isinstance(batch, Mapping):
        return batch["image"], batch.get("label"), batch.get("teacher_mean"), batch.get("teacher_std")
    if isinstance(batch, (list, tuple)) and batch:
        labels = batch[1] if len(batch) > 1 else None
        return batch[0], labels, None, None
    raise TypeError(f"cannot read a batch of type {type(batch).__name__} (images, (images, labels) or a dict)")


class Distiller:
    """Distils an ensemble into a student (paper, eq. 4):
    ``T²·KL(M ‖ softmax(z/T)) + α·CE(z, y) + β·MSE(σ, Σ)``.

    ``student``: a module returning ``.logits`` and ``.sigma`` (:func:`add_uncertainty_head`).
    ``teacher``: an :class:`~udistill.core.ensemble.Ensemble`, or its members (wrapped in one), or
    None when every batch carries cached targets ("teacher_mean" and "teacher_std").
    Online targets are computed by the teacher on each batch, on the student's device,
    outside any float16 autocast (``teacher_precision``: "fp32" or "bf16"), since Σ values
    near 1e-4 are of the order of float16 rounding. ``optimizer``: yours, else Adam(lr) over
    the student's parameters. Labels are optional (255 = ignore; none: no CE term).

    ``sigma_init``: None (the paper: a fresh head, σ ≈ 0.5), a number in (0, 1), or
    "teacher-mean" (udistill's recipe: the teacher's mean Σ per class on the first batch):
    before the first step the uncertainty head's output layer is zeroed and its bias set to
    logit(σ), since the MSE gradient near small targets is too weak to get there from 0.5.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: Ensemble | Sequence[nn.Module | Callable[[torch.Tensor], Any]] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        temperature: float = 1.0,
        alpha: float = 0.1,
        beta: float = 1.1,
        sigma_loss: str = "mse",
        lr: float = 1e-3,
        teacher_precision: str = "fp32",
        grad_clip: float | None = None,
        sigma_init: str | float | None = None,
    ):
        if sigma_loss not in SIGMA_LOSSES:
            raise ValueError(f"unknown sigma_loss '{sigma_loss}' (known: {', '.join(SIGMA_LOSSES)})")
        if teacher_precision not in PRECISIONS:
            raise ValueError(f"teacher_precision must be one of {', '.join(PRECISIONS)}, got '{teacher_precision}'")
        numeric = isinstance(sigma_init, (int, float)) and 0 < sigma_init < 1
        if sigma_init is not None and sigma_init != "teacher-mean" and not numeric:
            raise ValueError(f"sigma_init must be None, 'teacher-mean' or a number in (0, 1), got {sigma_init!r}")
        if teacher is not None and not isinstance(teacher, Ensemble):
            teacher = Ensemble(list(teacher), temperature=temperature)
        self.student = student
        self.teacher = teacher
        self.optimizer = optimizer if optimizer is not None else torch.optim.Adam(student.parameters(), lr=lr)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.sigma_loss = sigma_loss
        self.teacher_precision = teacher_precision
        self.grad_clip = grad_clip
        self.sigma_init = sigma_init
        self._sigma_pending = sigma_init is not None

    @property
    def device(self) -> torch.device:
        p = next(self.student.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def targets(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's M and Σ of a batch. Shape: images (N, 3, H, W) -> (N, C, H, W) twice, float32."""
        if self.teacher is None:
            raise ValueError("no teacher: pass one to Distiller(...) or put teacher_mean / teacher_std in the batch")
        return teacher_targets(self.teacher, images, self.teacher_precision)

    def loss(self, batch: Any):
        """The loss of one batch (a :class:`~udistill.core.losses.DistillationLoss`), no step taken."""
        images, labels, mean, std = split_batch(batch)
        dev = self.device
        images = images.to(dev)
        if mean is None or std is None:
            mean, std = self.targets(images)
        mean, std = mean.to(dev), std.to(dev)
        if self._sigma_pending:
            self._init_sigma(std)
        out = self.student(images)
        if getattr(out, "sigma", None) is None:
            raise ValueError("the student has no uncertainty output (.sigma): see add_uncertainty_head")
        if labels is None:
            labels = torch.full((images.shape[0], *out.logits.shape[-2:]), IGNORE_INDEX, dtype=torch.long, device=dev)
        labels = labels.to(dev).long()
        return distillation_loss(
            out.logits,
            out.sigma,
            mean,
            std,
            labels,
            self.temperature,
            self.alpha,
            self.beta,
            self.sigma_loss,
        )

    def _init_sigma(self, std: torch.Tensor) -> None:
        """Once, before the first step (see the class docstring)."""
        if self.sigma_init == "teacher-mean":
            sigma = std.detach().float().mean((0, 2, 3)).cpu()
        else:
            sigma = torch.full((std.shape[1],), float(self.sigma_init))
        init_sigma_bias(self.student, sigma)
        self._sigma_pending = False

    def step(self, batch: Any) -> dict[str, float]:
        """One optimizer step on ``batch`` (the student in train mode).

        Shape: images (N, 3, H, W); labels (N, H, W) int64; teacher_mean, teacher_std
        (N, C, H, W) or (N, C, h, w) (upsampled). Returns {"loss", "kl", "ce", "mse"}, each
        already weighted (T², α, β)."""
        self.student.train()
        parts = self.loss(batch)
        if not torch.isfinite(parts.total):
            raise TrainingError(f"non-finite distillation loss ({float(parts.total)}): lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.student.parameters(), self.grad_clip)
        self.optimizer.step()
        return {
            "loss": float(parts.total.detach()),
            "kl": float(parts.distill.detach()),
            "ce": float(parts.cls.detach()),
            "mse": float(parts.unc.detach()),
        }

    def fit(
        self, loader: Iterable[Any], epochs: int = 1, on_step: Callable[[int, dict[str, float]], None] | None = None
    ) -> list[dict[str, float]]:
        """``epochs`` passes over ``loader``; returns the mean loss parts of each epoch.
        ``on_step(step, parts)`` is called after every step (logging, schedulers)."""
        history, n = [], 0
        for _ in range(int(epochs)):
            sums: dict[str, float] = {}
            count = 0
            for batch in loader:
                parts = self.step(batch)
                if on_step is not None:
                    on_step(n, parts)
                n += 1
                count += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
            history.append({k: v / count for k, v in sums.items()} if count else {"loss": math.nan})
        self.student.eval()
        return history
