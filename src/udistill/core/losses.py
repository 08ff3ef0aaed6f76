"""The uncertainty distillation loss (paper, section 3, eq. 4-7)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..data.labels import IGNORE_INDEX


class DistillationLoss(NamedTuple):
    """``total`` = ``distill`` + ``cls`` + ``unc``, each already weighted (T^2, alpha, beta)."""

    total: torch.Tensor
    distill: torch.Tensor
    cls: torch.Tensor
    unc: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    student_sigma: torch.Tensor,
    teacher_mean: torch.Tensor,
    teacher_std: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 0.1,
    beta: float = 1.1,
    sigma_loss: str = "mse",
) -> DistillationLoss:
    """L_total = T^2 * KL(M || softmax(z / T)) + alpha * CE(z, y) + beta * MSE(sigma, Sigma)  (eq. 4).

    Shape: student_logits, student_sigma (N, C, H, W); teacher_mean, teacher_std (N, C, H, W)
    or (N, C, h, w) at a reduced resolution (upsampled, see below); labels (N, H, W) int64
    with 255 = ignore.

    Decisions the paper leaves open, made explicit here:
    - eq. 5 (distillation): KL(M || p_s) = sum_c M_c (log M_c - log p_s,c), summed over classes
      and averaged over all N*H*W pixels; p_s = softmax(student_logits / T). The teacher
      labels the void pixels too, so every pixel counts. M is the ensemble mean of softmax(z_j / T).
    - T: the paper does not give its temperature; the default is 1.
    - eq. 6 (classification) as printed applies softmax to the prediction head's
      *probabilities*; we apply cross-entropy to the logits (the usual, intended reading),
      averaged over labelled pixels only (255 ignored). It uses T = 1.
    - eq. 7 (uncertainty): mean squared error between the sigmoid uncertainty output and the
      ensemble's population std Sigma, averaged over all C*H*W elements (and the batch).

    - Teacher maps at a lower resolution than the student's output (the teacher cache at 1/r,
      :mod:`udistill.pipeline.targets`) are upsampled bilinearly (align_corners=False) to it first, as
      the heads' own 1/4-resolution output is; M stays a distribution at every pixel.

    ``sigma_loss`` selects the uncertainty term (see :func:`sigma_loss_fn`): ``mse`` (eq. 7),
    ``log-mse`` or ``sqrt-mse`` (scale-aware variants).
    """
    t = float(temperature)
    logits = student_logits.float()
    log_p = F.log_softmax(logits / t, dim=1)
    m, sd = teacher_mean.float(), teacher_std.float()
    if m.shape[-2:] != logits.shape[-2:]:
        m, sd = (F.interpolate(x, size=logits.shape[-2:], mode="bilinear", align_corners=False) for x in (m, sd))
    kl = (m * (torch.log(m.clamp_min(1e-12)) - log_p)).sum(1)
    kl = torch.where(m.sum(1) > 0, kl, torch.zeros_like(kl)).mean()
    if (labels != IGNORE_INDEX).any():
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    else:
        ce = logits.sum() * 0.0
    mse = sigma_loss_fn(sigma_loss)(student_sigma.float(), sd)
    distill = t * t * kl
    cls = alpha * ce
    unc = beta * mse
    return DistillationLoss(distill + cls + unc, distill, cls, unc)


LOG_EPS = 1e-3  # log-mse: sigmas far below this count as equal (float16 caches hold ~1e-4)


def sigma_loss_fn(name: str):
    """The uncertainty term of the loss, averaged over all elements:

    - ``mse``: (σ − Σ)², the paper's eq. 7. Its gradient 2(σ − Σ) vanishes where both are
      small, so the relative scale of small uncertainties is barely learned;
    - ``log-mse``: (log(σ + ε) − log(Σ + ε))², ε = 1e-3: every order of magnitude counts
      the same (as DUDES's RMSLE-like term), so a student 10× too high where the teacher is
      confident is penalised as much as one 10× too low where it is not;
    - ``sqrt-mse``: (√σ − √Σ)², in between (the gradient grows as 1/√σ near zero).
    """
    if name == "mse":
        return F.mse_loss
    if name == "log-mse":
        return lambda s, t: F.mse_loss(torch.log(s + LOG_EPS), torch.log(t.clamp_min(0) + LOG_EPS))
    if name == "sqrt-mse":
        return lambda s, t: F.mse_loss(torch.sqrt(s + 1e-8), torch.sqrt(t.clamp_min(0) + 1e-8))
    raise ValueError(f"unknown distill.sigma_loss '{name}' (known: {', '.join(SIGMA_LOSSES)})")


SIGMA_LOSSES = ("mse", "log-mse", "sqrt-mse")
