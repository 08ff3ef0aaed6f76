"""Where does the student's out-of-distribution σ come from: the teacher, or its own bias?

A σ head whose output falls back to its bias when the features fade would raise an alarm on
fog or dusk only because it *started* high (the paper's fresh head starts at σ ≈ 0.5) and
was trained down on the training images alone; started at the teacher's scale, the same
head would go quiet on exactly those frames. The probe: fade images toward their mean grey
(``level`` 1 = the image, 0 = a blank frame of its mean colour) and compare the student's
mean U with the teacher's at every level and with the student's own U *before* training.

- ``follows_teacher``: the student's U moves with the teacher's across the levels
  (Spearman rank correlation > 0);
- ``origin`` on the blank frame: ``teacher`` when the student's U there is closer to the
  teacher's than to what the student gave before it was trained, else ``initialisation``.

The verdict is ``teacher`` only when both hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

FADE_LEVELS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.0)


def fade(images: torch.Tensor, level: float) -> torch.Tensor:
    """Images faded toward their own mean colour: m + level · (x − m).

    Shape: images (N, 3, H, W) in [0, 1] -> (N, 3, H, W)."""
    mean = images.mean(dim=(2, 3), keepdim=True)
    return mean + float(level) * (images - mean)


@torch.no_grad()
def fade_response(
    uncertainty: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    levels: Sequence[float] = FADE_LEVELS,
) -> list[float]:
    """Mean pixel uncertainty of ``uncertainty`` on ``images`` faded to each level.

    Shape: uncertainty maps (N, 3, H, W) images to U (N, H, W); images (N, 3, H, W)."""
    return [float(uncertainty(fade(images, lv)).float().mean()) for lv in levels]


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra = np.argsort(np.argsort(np.asarray(a, np.float64))).astype(np.float64)
    rb = np.argsort(np.argsort(np.asarray(b, np.float64))).astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def fade_verdict(student: Sequence[float], teacher: Sequence[float], start: Sequence[float]) -> dict:
    """Whether the student's response to fading is the teacher's or its initialisation's.

    ``student``, ``teacher``, ``start`` (the student before training): mean U per fade
    level, blank frame last (as :data:`FADE_LEVELS`)."""
    rho = _spearman(student, teacher)
    s, t, s0 = student[-1], teacher[-1], start[-1]
    origin = "teacher" if abs(s - t) < abs(s - s0) else "initialisation"
    follows = rho > 0
    return {
        "spearman_with_teacher": rho,
        "follows_teacher": follows,
        "blank": {"student": s, "teacher": t, "student_before_training": s0},
        "origin": origin,
        "verdict": "teacher" if follows and origin == "teacher" else "initialisation",
    }
