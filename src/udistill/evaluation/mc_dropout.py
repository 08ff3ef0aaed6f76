"""MC dropout, defined once (evaluation and the benchmark both use :class:`MCDropout`).

The baseline's encoder and decoder run once in eval mode; channel dropout (``Dropout2d``
semantics: whole feature maps, kept ones scaled by 1 / (1 - rate)) is applied to the
decoder features before the head, T times, and the T softmax maps are reduced to mean,
population std and mutual information. Only that one dropout layer is sampled (smp's ASPP
dropout stays off), the rate comes from the config (``model.dropout`` when the model was
trained with dropout, else ``evaluate.mc_dropout``), and the masks come from a seeded
generator, so two evaluations give the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.ensemble import RunningMoments
from ..core.pixel_scores import PredictorOutput


def mc_dropout_rate(model_dropout: float, fallback: float) -> float:
    """The rate MC dropout samples with: the model's own dropout if it has one."""
    return float(model_dropout) if model_dropout > 0 else float(fallback)


class MCDropout(nn.Module):
    """T seeded dropout samples of a single-head model's head.

    Call with images (N, 3, H, W) in [0, 1] and an optional ``seed`` (default: the one given
    at construction; evaluation passes seed + batch index so batches differ but runs agree).
    Returns :class:`~udistill.core.pixel_scores.PredictorOutput` (mean probabilities, std, MI).
    """

    def __init__(self, model: nn.Module, rate: float, samples: int = 10, seed: int = 0):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"MC dropout rate must lie in (0, 1), got {rate}")
        if samples < 2:
            raise ValueError(f"MC dropout needs at least 2 samples, got {samples}")
        self.model = model
        self.rate = float(rate)
        self.samples = int(samples)
        self.seed = int(seed)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, seed: int | None = None) -> PredictorOutput:
        self.model.eval()
        feats, out_size = self.model.padded_features(images)
        gen = torch.Generator(device="cpu").manual_seed(self.seed if seed is None else int(seed))
        keep = 1.0 - self.rate
        mom = RunningMoments()
        n, c = feats.shape[:2]
        for _ in range(self.samples):
            mask = (torch.rand((n, c, 1, 1), generator=gen) < keep).to(feats.device, feats.dtype) / keep
            logits = self.model.heads_forward(feats * mask, out_size).logits
            mom.update(torch.softmax(logits.float(), 1))
        res = mom.result()
        return PredictorOutput(res.mean, res.std, res.mutual_info)
