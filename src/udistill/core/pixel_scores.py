"""Per-pixel uncertainty scores of a predictor's output, each in [0, 1].

Why in the core: the ensemble, the student, the alarm and the evaluation's method registry
(:mod:`udistill.evaluation.methods`) all read the same five scores; defining them once here
keeps the core free of the evaluation code.

Scores: ``msp`` = 1 - max p; ``entropy`` = H(p) / log C; ``u`` = mean over classes of the
spread map (the paper's pixel uncertainty U, eq. 8); ``mi`` = mutual information / log C;
``density`` = a feature-density map already in [0, 1].
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

SCORES = ("msp", "entropy", "u", "mi", "density")


class PredictorOutput(NamedTuple):
    """What a predictor gives for a batch.

    Shape: probs (N, C, H, W); spread (N, C, H, W) or None (Σ, MC std, multi-head std or
    student σ); mutual_info (N, H, W) or None; density (N, H, W) in [0, 1] or None.
    """

    probs: torch.Tensor
    spread: torch.Tensor | None = None
    mutual_info: torch.Tensor | None = None
    density: torch.Tensor | None = None


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the class axis. Shape: (N, C, H, W) -> (N, H, W)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(1)


def score_map(score: str, out: PredictorOutput) -> torch.Tensor:
    """The per-pixel uncertainty of ``score`` for one predictor output, in [0, 1].

    Shape: -> (N, H, W).
    """
    p = out.probs.float()
    if score == "msp":
        return 1 - p.max(1).values
    if score == "entropy":
        return (entropy(p) / math.log(p.shape[1])).clamp_(0, 1)
    if score == "u":
        if out.spread is None:
            raise ValueError("score 'u' needs a spread map (Σ, MC std or σ)")
        return out.spread.float().mean(1)
    if score == "mi":
        if out.mutual_info is None:
            raise ValueError("score 'mi' needs the mutual information")
        return (out.mutual_info.float() / math.log(p.shape[1])).clamp_(0, 1)
    if score == "density":
        if out.density is None:
            raise ValueError("score 'density' needs the feature-density map")
        return out.density.float()
    raise ValueError(f"unknown score '{score}' (known: {', '.join(SCORES)})")
