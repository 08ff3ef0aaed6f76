"""Global, streamed pixel-level uncertainty metrics with memory independent of the pixel count.

Like the SegmentMeIfYouCan benchmark, every metric is computed over *all* pixels of a split
at once (not averaged per image). Instead of storing pixels, :class:`BinnedPixelMetrics`
keeps fixed histograms of the uncertainty score for misclassified (positive) and correctly
classified (negative) pixels, plus 15-bin calibration sums and a Brier sum, so a split of
any size costs a few tens of KiB.

Conventions
-----------
* ``score`` is an uncertainty: higher means "more likely wrong". For max-softmax-probability
  pass ``1 - msp``; for entropy pass ``entropy / log(C)`` so it lies in [0, 1].
* Binning (``spacing``): ``"log"`` (the default used by evaluation) resolves the scores
  where they live: the uncertainties of a confident model crowd near 0 (a quarter of
  CamVid pixels have ensemble U < 0.002). Bin 0 holds ``[low, floor)``; bins 1..bins-1 are
  log-spaced from ``floor`` to ``high`` (4096 bins over [1e-6, 1]: a bin is 0.34 % wide in
  relative terms everywhere). ``"linear"``: bin ``i`` covers ``[low + i*w, low + (i+1)*w)``.
  The last bin also holds ``high``. Scores outside ``[low, high]`` are **clamped** into the
  first or last bin (reported as ``clamped``); scores in ``[low, floor)`` are tied in bin 0
  (reported as ``below_floor``). Non-finite scores raise ``ValueError``.
* All pixels of one bin are treated as tied, exactly as scikit-learn treats tied scores:
  AUROC is the trapezoid under the ROC curve, AP the step sum over distinct thresholds.
  With scores quantised to the bin grid the results equal scikit-learn's. FPR95 is
  interpolated linearly on the ROC curve between the two points around TPR = 0.95.
* ``wrong`` marks misclassified pixels (the positives). Ignore pixels must be removed by the
  caller, or excluded with ``valid`` (bool mask), or via ``target`` (pixels whose target is
  ``ignore_index`` or negative are dropped from every accumulator).

All results of :meth:`BinnedPixelMetrics.compute` are plain Python floats and lists
(``nan`` where a metric is undefined, e.g. AUROC without any wrong pixel).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.labels import IGNORE_INDEX
from .accumulator import BinnedState

# --------------------------------------------------------------------------- helpers


def _tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _check_shape(name: str, t: torch.Tensor, shape: torch.Size) -> None:
    if t.shape != shape:
        raise ValueError(f"{name} shape {tuple(t.shape)} != score shape {tuple(shape)}")


def _class_axis(score_ndim: int) -> int:
    """Class axis of ``probs`` for a score of ``score_ndim`` dims: (C, H, W) for (H, W) scores,
    (N, C, H, W) for (N, H, W), (P, C) for flat (P,) pixel vectors."""
    return 0 if score_ndim == 2 else 1


def _harmonic_diff(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """H(n + m) - H(n) for float arrays n >= 0, m >= 0 (H = harmonic number), accurate for huge n."""
    from scipy.special import digamma

    n = np.asarray(n, np.float64)
    m = np.asarray(m, np.float64)
    big = n >= 1e4
    ns = np.where(big, 1.0, n)
    small_val = digamma(ns + m + 1.0) - digamma(ns + 1.0)
    nb = np.where(big, n, 1e4)
    a = nb + m
    # H(x) = ln x + 1/(2x) - 1/(12x^2) + O(x^-4)
    big_val = np.log1p(m / nb) + 0.5 / a - 0.5 / nb - 1.0 / (12.0 * a * a) + 1.0 / (12.0 * nb * nb)
    return np.where(big, big_val, small_val)


def _downsample_idx(max_points: int, *axes: np.ndarray) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along each non-decreasing axis
    of a curve (both ends kept)."""
    n = len(axes[0])
    if n <= max_points:
        return np.arange(n)
    half = max(1, (max_points - 2) // len(axes))
    picks = [np.array([0, n - 1])]
    for v in axes:
        lo, hi = float(v[0]), float(v[-1])
        if hi > lo:
            picks.append(np.clip(np.searchsorted(v, np.linspace(lo, hi, half)), 0, n - 1))
    idx = np.unique(np.concatenate(picks))
    if len(idx) > max_points:  # v not monotone enough: fall back to even index spacing
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return idx


def fpr_at_tpr(fpr: np.ndarray, tpr: np.ndarray, level: float = 0.95) -> float:
    """False-positive rate where the ROC curve (points in ascending order) reaches ``level``
    TPR, interpolated linearly between the two points around it (not read at a bin edge)."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    j = int(np.argmax(tpr >= level))
    if j == 0 or tpr[j] == tpr[j - 1]:
        return float(fpr[j])
    t = (level - tpr[j - 1]) / (tpr[j] - tpr[j - 1])
    return float(fpr[j - 1] + t * (fpr[j] - fpr[j - 1]))


def _brier_per_pixel(p: torch.Tensor, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """sum_c (p_c - onehot_c)^2 per pixel. Shape: p with a class axis added to ``shape``."""
    if p.dim() != len(shape) + 1:
        raise ValueError(f"probs shape {tuple(p.shape)} does not fit score shape {tuple(shape)}")
    ax = _class_axis(len(shape))
    if p.shape[:ax] + p.shape[ax + 1 :] != shape:
        raise ValueError(f"probs shape {tuple(p.shape)} does not fit score shape {tuple(shape)}")
    tt = t.clamp(0, p.shape[ax] - 1).unsqueeze(ax)
    p_t = torch.gather(p, ax, tt).squeeze(ax).to(torch.float64)
    pf = p.float()
    sq = (pf * pf).sum(ax).to(torch.float64)
    return sq - 2.0 * p_t + 1.0


def _flist(a: np.ndarray) -> list:
    return [float(v) for v in np.asarray(a, np.float64).ravel()]


# --------------------------------------------------------------------------- pixel metrics


class BinnedPixelMetrics(BinnedState):
    """Streamed global pixel metrics: AUROC, AP, FPR@95%TPR, ECE, Brier, AURC (+ curves).

    Parameters
    ----------
    bins, low, high, spacing, floor:
        Score histogram resolution and range (see module docstring: out-of-range scores
        clamp; with ``spacing="log"`` scores below ``floor`` share bin 0).
    ece_bins:
        Equal-width confidence bins for the ECE (15, as Guo et al.). Bin ``b`` covers
        ``(b/15, (b+1)/15]`` (confidence 0 falls in the first bin).
    curve_points:
        Maximum number of points of the returned ROC and risk-coverage curves.
    hist_bins:
        Number of bins of the returned (coarsened) histograms for plotting.
    ignore_index:
        Target value that marks ignore pixels when ``target`` is given.

    State (:class:`~udistill.metrics.accumulator.BinnedState`, additive): the score histograms,
    the confidence bins, the Brier sums and the clamped counts; ``merge``, ``state_tensor``,
    ``load_state_tensor`` and ``all_reduce`` come from there.
    """

    _state = ("_hist", "_ece", "_brier", "_clamped")

    def __init__(
        self,
        bins: int = 4096,
        low: float = 0.0,
        high: float = 1.0,
        ece_bins: int = 15,
        spacing: str = "linear",
        floor: float = 1e-6,
        curve_points: int = 200,
        hist_bins: int = 64,
        ignore_index: int = IGNORE_INDEX,
    ):
        if bins < 1 or ece_bins < 1:
            raise ValueError("bins and ece_bins must be >= 1")
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"need finite low < high, got low={low}, high={high}")
        if curve_points < 2:
            raise ValueError("curve_points must be >= 2")
        if spacing not in ("linear", "log"):
            raise ValueError(f"spacing must be 'linear' or 'log', got {spacing!r}")
        if spacing == "log" and not (low < floor < high and bins >= 2):
            raise ValueError(f"log spacing needs low < floor < high and bins >= 2, got {low}, {floor}, {high}")
        self.spacing = spacing
        self.floor = float(floor)
        self.bins = int(bins)
        self.low = float(low)
        self.high = float(high)
        self.ece_bins = int(ece_bins)
        self.curve_points = int(curve_points)
        self.hist_bins = int(min(hist_bins, bins))
        self.ignore_index = int(ignore_index)
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        self._hist = np.zeros((2, self.bins), np.float64)  # [0] correct (neg), [1] wrong (pos)
        self._ece = np.zeros((3, self.ece_bins), np.float64)  # count, sum confidence, sum correct
        self._brier = np.zeros(2, np.float64)  # sum of per-pixel Brier, pixel count
        self._clamped = np.zeros(2, np.float64)  # [0] outside [low, high], [1] below floor (log)

    def _config(self) -> tuple:
        return (self.bins, self.low, self.high, self.ece_bins, self.spacing, self.floor)

    # ------------------------------------------------------------------ update

    @torch.no_grad()
    def update(
        self,
        score: Any,
        wrong: Any,
        confidence: Any = None,
        probs: Any = None,
        target: Any = None,
        valid: Any = None,
        brier: Any = None,
    ) -> None:
        """Add one batch of pixels.

        score: uncertainty per pixel, any shape S (e.g. (N, H, W)); tensor (any device) or array.
        wrong: bool, shape S; True = misclassified.
        confidence: optional, shape S, max softmax probability of the prediction -> ECE.
        probs: optional (N, C, H, W) class probabilities ((C, H, W) when S is (H, W), (P, C) when
            S is (P,)) with
            ``target`` (shape S, class ids) -> Brier = sum_c (p_c - onehot_c)^2, averaged over pixels.
        target: optional class ids, shape S; pixels with target == ignore_index or < 0 are
            dropped from everything (also usable without probs just for that masking).
        valid: optional bool mask, shape S; False pixels are dropped from everything.
        brier: optional precomputed per-pixel Brier score, shape S (alternative to probs/target).
        """
        s = _tensor(score)
        shape, dev = s.shape, s.device
        w = _tensor(wrong).to(dev)
        _check_shape("wrong", w, shape)
        keep, t = self._pixel_mask(shape, dev, valid, target, probs)

        def sel(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1) if keep is None else x[keep]

        s64 = sel(s).to(torch.float64)
        if s64.numel() == 0:
            return
        if not bool(torch.isfinite(s64).all()):
            raise ValueError("score holds non-finite values")
        wb = sel(w).bool()
        self._add_scores(s64, wb)
        if confidence is not None:
            c = _tensor(confidence).to(dev)
            _check_shape("confidence", c, shape)
            self._add_confidence(sel(c).to(torch.float64), wb)
        if brier is not None:
            bb = _tensor(brier).to(dev)
            _check_shape("brier", bb, shape)
            bsel = sel(bb).to(torch.float64)
            self._brier += np.array([float(bsel.sum()), float(bsel.numel())])
        elif probs is not None:
            if t is None:
                raise ValueError("probs needs target for the Brier score")
            per_pixel = sel(_brier_per_pixel(_tensor(probs).to(dev), t, shape))
            self._brier += np.array([float(per_pixel.sum()), float(per_pixel.numel())])

    def _pixel_mask(self, shape, dev, valid, target, probs):
        """(pixels to keep or None for all, target as int64 or None) from ``valid`` / ``target``."""
        keep = None
        if valid is not None:
            v = _tensor(valid).to(dev)
            _check_shape("valid", v, shape)
            keep = v.bool()
        t = None
        if target is not None:
            t = _tensor(target).to(dev).long()
            _check_shape("target", t, shape)
            tmask = (t != self.ignore_index) & (t >= 0)
            if probs is not None:
                tmask &= t < _tensor(probs).shape[_class_axis(len(shape))]
            keep = tmask if keep is None else keep & tmask
        return keep, t

    def _add_scores(self, s64: torch.Tensor, wb: torch.Tensor) -> None:
        """Score histograms (positives = wrong) and the clamped / below-floor counts."""
        idx = self._bin_index(s64)
        clamped = int(((s64 < self.low) | (s64 > self.high)).sum())
        below = int(((s64 >= self.low) & (s64 < self.floor)).sum()) if self.spacing == "log" else 0
        counts = torch.bincount(idx + self.bins * wb.long(), minlength=2 * self.bins)
        self._hist += counts.cpu().to(torch.float64).numpy().reshape(2, self.bins)
        self._clamped += np.array([clamped, below], np.float64)

    def _add_confidence(self, c64: torch.Tensor, wb: torch.Tensor) -> None:
        """Equal-width confidence bins for the ECE: count, sum of confidence, sum of correct."""
        k = self.ece_bins
        b = (torch.ceil(c64 * k) - 1).clamp_(0, k - 1).long()
        corr = (~wb).to(torch.float64)
        self._ece[0] += torch.bincount(b, minlength=k).cpu().double().numpy()
        self._ece[1] += torch.bincount(b, weights=c64, minlength=k).cpu().double().numpy()
        self._ece[2] += torch.bincount(b, weights=corr, minlength=k).cpu().double().numpy()

    # ------------------------------------------------------------------ results

    def _bin_index(self, s64: torch.Tensor) -> torch.Tensor:
        """Bin of each score (float64 tensor), clamped into [0, bins)."""
        if self.spacing == "linear":
            idx = torch.floor((s64 - self.low) * (self.bins / (self.high - self.low)))
        else:
            lf, lh = math.log(self.floor), math.log(self.high)
            pos = (torch.log(s64.clamp_min(self.floor)) - lf) * ((self.bins - 1) / (lh - lf))
            idx = torch.where(s64 < self.floor, torch.zeros_like(s64), 1.0 + torch.floor(pos))
        return idx.clamp_(0, self.bins - 1).long()

    def edges(self) -> np.ndarray:
        """The ``bins + 1`` bin edges (``low`` ... ``high``)."""
        if self.spacing == "linear":
            return np.linspace(self.low, self.high, self.bins + 1)
        return np.concatenate([[self.low], np.geomspace(self.floor, self.high, self.bins)])

    def compute(self) -> dict:
        """Return ``auroc, aupr, aupr_over_error_rate, fpr95, ece, brier, aurc, eaurc`` (floats),
        ``n_pixels``, ``n_wrong``, ``error_rate``, ``clamped``, ``below_floor``, and the curves ``roc`` {fpr, tpr},
        ``risk_coverage`` {coverage, risk}, ``histogram`` {edges, pos, neg, n_pos, n_neg}
        (normalised fractions, ``hist_bins`` bins) and ``reliability``
        {edges, confidence, accuracy, count} (nan for empty bins)."""
        neg, pos = self._hist[0], self._hist[1]
        n_pos, n_neg = float(pos.sum()), float(neg.sum())
        n = n_pos + n_neg
        out: dict[str, Any] = {
            "n_pixels": int(n),
            "n_wrong": int(n_pos),
            "error_rate": n_pos / n if n > 0 else math.nan,
            "clamped": int(self._clamped[0]),
            "below_floor": int(self._clamped[1]),
        }

        # ROC, descending thresholds over non-empty bins
        nz = np.nonzero((pos + neg) > 0)[0][::-1]
        tp = np.concatenate([[0.0], np.cumsum(pos[nz])])
        fp = np.concatenate([[0.0], np.cumsum(neg[nz])])
        if n_pos > 0 and n_neg > 0:
            tpr, fpr = tp / n_pos, fp / n_neg
            out["auroc"] = float(np.trapezoid(tpr, fpr))
            precision = tp[1:] / (tp[1:] + fp[1:])
            out["aupr"] = float(np.sum(pos[nz] / n_pos * precision))
            out["aupr_over_error_rate"] = out["aupr"] / out["error_rate"]
            out["fpr95"] = fpr_at_tpr(fpr, tpr, 0.95)
            i = _downsample_idx(self.curve_points, fpr, tpr)
            out["roc"] = {"fpr": _flist(fpr[i]), "tpr": _flist(tpr[i])}
        else:
            out["auroc"] = out["aupr"] = out["fpr95"] = out["aupr_over_error_rate"] = math.nan
            out["roc"] = {"fpr": [], "tpr": []}

        # risk-coverage, ascending score = most confident first
        asc = np.nonzero((pos + neg) > 0)[0]
        if n > 0:
            m = pos[asc] + neg[asc]
            e = pos[asc]
            cum_n = np.cumsum(m)
            cum_e = np.cumsum(e)
            prev_n = cum_n - m
            prev_e = cum_e - e
            # sum over the k-th pixel of a tied bin of the expected risk (E + k e/m) / (N + k)
            contrib = e + (prev_e - prev_n * e / m) * _harmonic_diff(prev_n, m)
            aurc = float(contrib.sum() / n)
            opt = (n_pos - (n - n_pos) * float(_harmonic_diff(n - n_pos, n_pos))) / n
            out["aurc"] = aurc
            out["eaurc"] = aurc - opt
            cov = cum_n / n
            risk = cum_e / cum_n
            i = _downsample_idx(self.curve_points, cov)
            out["risk_coverage"] = {"coverage": _flist(cov[i]), "risk": _flist(risk[i])}
        else:
            out["aurc"] = out["eaurc"] = math.nan
            out["risk_coverage"] = {"coverage": [], "risk": []}

        # calibration
        cnt, sconf, scorr = self._ece
        n_ece = float(cnt.sum())
        out["ece"] = float(np.abs(scorr - sconf).sum() / n_ece) if n_ece > 0 else math.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            out["reliability"] = {
                "edges": _flist(np.linspace(0.0, 1.0, self.ece_bins + 1)),
                "confidence": _flist(np.where(cnt > 0, sconf / np.maximum(cnt, 1), np.nan)),
                "accuracy": _flist(np.where(cnt > 0, scorr / np.maximum(cnt, 1), np.nan)),
                "count": [int(v) for v in cnt],
            }
        out["brier"] = float(self._brier[0] / self._brier[1]) if self._brier[1] > 0 else math.nan

        out["histogram"] = self.histogram(self.hist_bins)
        return out

    def histogram(self, hist_bins: int | None = None) -> dict:
        """Coarsened score histograms: ``edges`` (hist_bins + 1), ``pos`` / ``neg`` as fractions
        of the wrong / correct pixels (each sums to 1 when non-empty), raw totals ``n_pos``/``n_neg``."""
        h = min(int(hist_bins or self.hist_bins), self.bins)
        group = (np.arange(self.bins) * h) // self.bins
        firsts = np.searchsorted(group, np.arange(h))
        fine = self.edges()
        edges = np.concatenate([fine[firsts], [self.high]])
        neg = np.bincount(group, weights=self._hist[0], minlength=h)
        pos = np.bincount(group, weights=self._hist[1], minlength=h)
        n_pos, n_neg = pos.sum(), neg.sum()
        return {
            "edges": _flist(edges),
            "pos": _flist(pos / n_pos if n_pos > 0 else pos),
            "neg": _flist(neg / n_neg if n_neg > 0 else neg),
            "n_pos": int(n_pos),
            "n_neg": int(n_neg),
            "scale": self.spacing,
        }


def mirror_histogram(hist: dict) -> dict:
    """Mirror a histogram dict ``{edges, pos, neg, ...}`` about the middle of its range, e.g.
    to plot the max softmax probability (Fig 4a) from a histogram of ``1 - msp``."""
    edges = np.asarray(hist["edges"], np.float64)
    lo, hi = edges[0], edges[-1]
    out = dict(hist)
    out["edges"] = _flist((lo + hi) - edges[::-1])
    out["pos"] = list(hist["pos"])[::-1]
    out["neg"] = list(hist["neg"])[::-1]
    return out


# --------------------------------------------------------------------------- Fig 3 accumulator


class SigmaHistogram2D(BinnedState):
    """Bounded-memory 2-D histogram of student σ (y) against teacher σ (x), split into correctly
    and wrongly classified pixels (Fig 3). Values outside ``[low, high]`` are clamped.

    ``update(teacher, student, wrong, valid=None)`` with same-shaped tensors/arrays;
    ``compute()`` -> ``{x_edges, y_edges, correct, wrong}`` with ``correct``/``wrong`` as
    nested lists of counts indexed ``[x_bin][y_bin]``.
    """

    _state = ("_h",)

    def __init__(self, bins: int = 128, low: float = 0.0, high: float = 0.5):
        if bins < 1 or not high > low:
            raise ValueError("need bins >= 1 and high > low")
        self.bins = int(bins)
        self.low = float(low)
        self.high = float(high)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((2, self.bins, self.bins), np.float64)

    def _config(self) -> tuple:
        return (self.bins, self.low, self.high)

    def _bin(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.bins / (self.high - self.low)
        return torch.floor((x.to(torch.float64) - self.low) * scale).clamp_(0, self.bins - 1).long()

    @torch.no_grad()
    def update(self, teacher: Any, student: Any, wrong: Any, valid: Any = None) -> None:
        x = _tensor(teacher)
        dev = x.device
        y = _tensor(student).to(dev)
        w = _tensor(wrong).to(dev)
        _check_shape("student", y, x.shape)
        _check_shape("wrong", w, x.shape)
        if valid is not None:
            v = _tensor(valid).to(dev).bool()
            _check_shape("valid", v, x.shape)
            x, y, w = x[v], y[v], w[v]
        x, y, w = x.reshape(-1), y.reshape(-1), w.reshape(-1).bool()
        if x.numel() == 0:
            return
        if not bool(torch.isfinite(x).all() & torch.isfinite(y).all()):
            raise ValueError("sigma values must be finite")
        b = self.bins
        flat = w.long() * (b * b) + self._bin(x) * b + self._bin(y)
        counts = torch.bincount(flat, minlength=2 * b * b)
        self._h += counts.cpu().to(torch.float64).numpy().reshape(2, b, b)

    def compute(self) -> dict:
        edges = _flist(np.linspace(self.low, self.high, self.bins + 1))
        return {
            "x_edges": edges,
            "y_edges": list(edges),
            "correct": self._h[0].tolist(),
            "wrong": self._h[1].tolist(),
        }
