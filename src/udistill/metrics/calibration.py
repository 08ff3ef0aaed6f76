"""Calibration of a *predictor* (its class probabilities), streamed: error rate, ECE with 15
equal-width bins, adaptive (equal-mass) ECE, Brier score and negative log-likelihood.

These belong to a model's probabilities, not to an uncertainty score: two scores of one
model (its max softmax and its entropy) share one calibration. Memory is fixed: the
confidence is kept in a fine log-spaced histogram of ``1 - confidence`` (with sums of
confidence and of correctness per bin), from which the equal-mass bins of the adaptive ECE
are formed at the end (each adaptive bin is a union of whole fine bins, so its mass is
equal up to one fine bin).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.labels import IGNORE_INDEX
from .accumulator import BinnedState


class PredictorCalibration(BinnedState):
    """Streamed calibration metrics of one predictor.

    ``update(probs, target)``: probs (N, C, H, W) class probabilities, target (N, H, W)
    class ids (``ignore_index`` or ids >= C are dropped). ``compute()`` returns
    ``{n_pixels, error_rate, ece, ece_adaptive, brier, nll, reliability}``.

    State (:class:`~udistill.metrics.accumulator.BinnedState`, additive): the 15 equal-width
    confidence bins, the fine log-spaced bins and the sums of pixels, Brier and NLL.
    """

    _state = ("_eq", "_fine", "_sums")

    def __init__(
        self, ece_bins: int = 15, fine_bins: int = 2048, floor: float = 1e-7, ignore_index: int = IGNORE_INDEX
    ):
        self.ece_bins = int(ece_bins)
        self.fine_bins = int(fine_bins)
        self.floor = float(floor)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self._eq = np.zeros((3, self.ece_bins))  # count, sum confidence, sum correct
        self._fine = np.zeros((3, self.fine_bins))
        self._sums = np.zeros(3)  # pixels, Brier sum, NLL sum

    def _config(self) -> tuple:
        return (self.ece_bins, self.fine_bins, self.floor)

    def _fine_index(self, u: torch.Tensor) -> torch.Tensor:
        """Fine bin of ``u = 1 - confidence`` in [0, 1]: bin 0 below ``floor``, then log-spaced."""
        lf = math.log(self.floor)
        pos = (torch.log(u.clamp_min(self.floor)) - lf) * ((self.fine_bins - 1) / -lf)
        idx = torch.where(u < self.floor, torch.zeros_like(u), 1.0 + torch.floor(pos))
        return idx.clamp_(0, self.fine_bins - 1).long()

    @torch.no_grad()
    def update(self, probs: Any, target: Any) -> None:
        """Shape: probs (N, C, H, W); target (N, H, W)."""
        p = torch.as_tensor(probs).float()
        t = torch.as_tensor(target).long().to(p.device)
        c = p.shape[1]
        keep = (t != self.ignore_index) & (t >= 0) & (t < c)
        if not bool(keep.any()):
            return
        pk = p.movedim(1, -1)[keep]  # (P, C)
        tk = t[keep]
        conf, pred = pk.max(1)
        conf = conf.double()
        correct = (pred == tk).double()
        p_true = pk.gather(1, tk[:, None]).squeeze(1).double()
        brier = (pk.double() ** 2).sum(1) - 2 * p_true + 1
        nll = -torch.log(p_true.clamp_min(1e-12))
        self._sums += np.array([float(tk.numel()), float(brier.sum()), float(nll.sum())])
        k = self.ece_bins
        b = (torch.ceil(conf * k) - 1).clamp_(0, k - 1).long()
        for acc, idx, n in ((self._eq, b, k), (self._fine, self._fine_index(1 - conf), self.fine_bins)):
            acc[0] += torch.bincount(idx, minlength=n).double().numpy()
            acc[1] += torch.bincount(idx, weights=conf, minlength=n).double().numpy()
            acc[2] += torch.bincount(idx, weights=correct, minlength=n).double().numpy()

    def _adaptive_groups(self) -> list[np.ndarray]:
        """Fine bins grouped into ``ece_bins`` groups of (nearly) equal pixel mass."""
        cnt = self._fine[0]
        total = cnt.sum()
        cum = np.cumsum(cnt)
        cuts = np.searchsorted(cum, total * np.arange(1, self.ece_bins) / self.ece_bins, side="left") + 1
        return [g for g in np.split(np.arange(self.fine_bins), np.unique(cuts)) if cnt[g].sum() > 0]

    def compute(self) -> dict:
        n, brier, nll = self._sums
        if n == 0:
            nan = math.nan
            return {
                "n_pixels": 0,
                "error_rate": nan,
                "ece": nan,
                "ece_adaptive": nan,
                "brier": nan,
                "nll": nan,
                "reliability": {},
            }
        cnt, sconf, scorr = self._eq
        ece = float(np.abs(scorr - sconf).sum() / n)
        fc, fconf, fcorr = self._fine
        ece_ad = float(sum(abs(fcorr[g].sum() - fconf[g].sum()) for g in self._adaptive_groups()) / n)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = {
                "edges": [float(v) for v in np.linspace(0.0, 1.0, self.ece_bins + 1)],
                "confidence": [float(v) for v in np.where(cnt > 0, sconf / np.maximum(cnt, 1), np.nan)],
                "accuracy": [float(v) for v in np.where(cnt > 0, scorr / np.maximum(cnt, 1), np.nan)],
                "count": [int(v) for v in cnt],
            }
        return {
            "n_pixels": int(n),
            "error_rate": float(1.0 - self._eq[2].sum() / n),
            "ece": ece,
            "ece_adaptive": ece_ad,
            "brier": float(brier / n),
            "nll": float(nll / n),
            "reliability": rel,
        }
