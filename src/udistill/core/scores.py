"""Uncertainty scores: the per-pixel map U and its reduction to one number per image.

U is the paper's pixel uncertainty (eq. 8): the mean over classes of the student's σ (or
of the ensemble's Σ). An image score reduces U to one number (mean, median, min, max or
the paper's (median + min) / max) for the out-of-distribution alarm. Both come from the
one registry of scores (:func:`udistill.core.pixel_scores.score_map`,
:func:`udistill.metrics.image_scores`), so the library, the CLI and the evaluation agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..metrics import IMAGE_SCORES, image_scores
from .ensemble import EnsembleOutput
from .pixel_scores import PredictorOutput, score_map


def pixel_uncertainty(output: Any) -> torch.Tensor:
    """U = mean over classes of σ (a student's output, ``.logits`` and ``.sigma``) or of Σ
    (an :class:`~udistill.core.ensemble.EnsembleOutput`).

    Shape: sigma or std (N, C, H, W) -> (N, H, W)."""
    if isinstance(output, EnsembleOutput):
        return score_map("u", PredictorOutput(output.mean, output.std))
    sigma = getattr(output, "sigma", None)
    if sigma is None:
        raise ValueError("pixel_uncertainty needs a student output with .sigma (see add_uncertainty_head)")
    return score_map("u", PredictorOutput(torch.softmax(output.logits.float(), 1), sigma))


def image_score(u: torch.Tensor, kind: str = "mean", valid: torch.Tensor | None = None) -> torch.Tensor:
    """One score per image from U (higher = more uncertain). ``kind``: one of
    :data:`~udistill.metrics.IMAGE_SCORES`; ``valid`` restricts it to some pixels.

    Shape: u (N, H, W) or (H, W); valid (bool) like u -> (N,) float64 (a 0-d tensor for (H, W))."""
    if kind not in IMAGE_SCORES:
        raise ValueError(f"unknown image score '{kind}' (known: {', '.join(IMAGE_SCORES)})")
    if u.ndim == 2:
        return torch.tensor(image_scores(u, valid)[kind], dtype=torch.float64)
    if u.ndim != 3:
        raise ValueError(f"u must be (N, H, W) or (H, W), got shape {tuple(u.shape)}")
    vals = [image_scores(u[i], None if valid is None else valid[i])[kind] for i in range(u.shape[0])]
    return torch.tensor(vals, dtype=torch.float64)


@torch.no_grad()
def frame_scores(student: nn.Module, images: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """Image scores of a batch of frames under a student (the student's mode is left as it
    is: call ``student.eval()`` first for inference).

    Shape: images (N, 3, H, W) -> (N,) float64."""
    param = next(student.parameters(), None)
    if param is not None:
        images = images.to(param.device)
    return image_score(pixel_uncertainty(student(images)).float().cpu(), kind)
