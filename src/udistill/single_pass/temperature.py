"""Temperature scaling (Guo et al., 2017): the baseline's softmax at one temperature T fitted
on the validation split by negative log-likelihood; the calibration baseline every ECE
comparison needs. Dividing the logits by T > 0 never changes the argmax.

Fit: one pass over the validation images keeps the logits of a seeded sample of labelled
pixels (at most ``max_pixels`` in all, spread evenly over the images: bounded memory; every
pixel when the set is small), then a golden-section search over β = 1/T in
[1/``t_max``, 1/``t_min``] on those cached logits. NLL is convex in β (a log-sum-exp of
linear functions minus a linear one), so the bounded 1-D search finds its minimum; with
T = 1 inside the bounds the fitted NLL is never above the unscaled one.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..core.pixel_scores import PredictorOutput
from ..data.labels import IGNORE_INDEX, map_probabilities

T_MIN, T_MAX = 0.05, 20.0


class TemperatureScaled(nn.Module):
    """A single-head model's softmax at temperature ``temperature``.

    Call with images (N, 3, H, W) in [0, 1]; returns PredictorOutput, probs (N, C, H, W)."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"a temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)

    def from_logits(self, logits: torch.Tensor) -> PredictorOutput:
        """Shape: logits (N, C, H, W) -> probs (N, C, H, W)."""
        return PredictorOutput(torch.softmax(logits.float() / self.temperature, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> PredictorOutput:
        return self.from_logits(self.model(images).logits)


@torch.no_grad()
def collect_logits(
    model: nn.Module,
    dataset,
    device,
    batch_size: int = 4,
    max_pixels: int = 2_000_000,
    seed: int = 0,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and labels of a seeded sample of labelled pixels of ``dataset``: at most
    ``max_pixels // len(dataset)`` per image (all of them when fewer), in the data's labels.

    Shape: -> logits (P, C) float32 (CPU), labels (P,) int64."""
    per_image = max(1, int(max_pixels) // max(1, len(dataset)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    kept_z, kept_y, index = [], [], 0
    for batch in loader:
        logits = model(batch["image"].to(device)).logits.float().cpu()
        labels = batch["label"].long()
        for i in range(labels.shape[0]):
            y = labels[i].flatten()
            z = logits[i].flatten(1).T  # (H*W, C)
            valid = (y != IGNORE_INDEX).nonzero().squeeze(1)
            if valid.numel() > per_image:
                gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + index)
                valid = valid[torch.randperm(valid.numel(), generator=gen)[:per_image]].sort().values
            kept_z.append(z[valid])
            kept_y.append(y[valid])
            index += 1
    if not kept_z:
        raise ValueError("no images to fit a temperature on")
    return torch.cat(kept_z), torch.cat(kept_y)


def nll(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    model_scheme: str | None = None,
    data_scheme: str | None = None,
) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T), in the data's
    label space (probabilities summed into its classes when the model's scheme differs).

    Shape: logits (P, C), labels (P,)."""
    z = logits.double() / float(temperature)
    if model_scheme and data_scheme and model_scheme != data_scheme:
        p = map_probabilities(torch.softmax(z, 1)[..., None, None], model_scheme, data_scheme)[..., 0, 0]
        logp = torch.log(p.clamp_min(1e-300))
    else:
        logp = torch.log_softmax(z, 1)
    return float(-logp.gather(1, labels[:, None].long()).mean())


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    t_min: float = T_MIN,
    t_max: float = T_MAX,
    tol: float = 1e-5,
    model_scheme: str | None = None,
    data_scheme: str | None = None,
) -> dict:
    """The NLL-minimising temperature by golden-section search over β = 1/T.

    Returns ``{temperature, nll, nll_at_1, pixels}``. Shape: logits (P, C), labels (P,)."""
    if labels.numel() == 0:
        raise ValueError("no labelled pixels to fit a temperature on")

    def f(beta: float) -> float:
        return nll(logits, labels, 1.0 / beta, model_scheme, data_scheme)

    lo, hi = 1.0 / t_max, 1.0 / t_min
    g = (math.sqrt(5) - 1) / 2
    a, b = lo + (1 - g) * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > tol * max(1.0, lo):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - g) * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = f(b)
    beta, best = (a, fa) if fa <= fb else (b, fb)
    at_1 = f(1.0)
    if at_1 <= best:  # the search's tolerance never makes the fit worse than no scaling
        beta, best = 1.0, at_1
    return {"temperature": 1.0 / beta, "nll": best, "nll_at_1": at_1, "pixels": int(labels.numel())}
