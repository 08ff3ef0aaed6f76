"""Image-level uncertainty scores and exact OOD-detection metrics (paper section 5.3).

An image's uncertainty map U (H x W, e.g. the student's mean σ over classes, eq. 8) is
reduced to one number per image by :func:`image_scores`; :func:`ood_metrics` then compares
the scores of in-distribution images (negatives) with those of a shifted data set
(positives = OOD) exactly, with numpy (a few hundred images, no binning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

IMAGE_SCORES = ("min", "mean", "median", "max", "median_plus_min_over_max")
EPS = 1e-12


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def image_scores(u: Any, valid: Any = None) -> dict:
    """Reduce one uncertainty map (H, W) — tensor or array — to the five image scores.

    ``valid`` (bool, same shape) restricts the statistics to those pixels (e.g. drop the ego
    vehicle or padding). Returns ``{min, mean, median, max, median_plus_min_over_max}`` as
    floats, the last being the paper's ``(median + min) / max`` with ``max`` floored at 1e-12.
    ``median`` is numpy's (the mean of the two middle values for an even count).
    """
    a = _to_numpy(u).astype(np.float64)
    if valid is not None:
        v = _to_numpy(valid).astype(bool)
        if v.shape != a.shape:
            raise ValueError(f"valid shape {v.shape} != uncertainty shape {a.shape}")
        a = a[v]
    a = a.ravel()
    if a.size == 0:
        raise ValueError("image_scores: no valid pixel")
    if not np.isfinite(a).all():
        raise ValueError("image_scores: uncertainty map holds non-finite values")
    lo, hi = float(a.min()), float(a.max())
    med = float(np.median(a))
    return {
        "min": lo,
        "mean": float(a.mean()),
        "median": med,
        "max": hi,
        "median_plus_min_over_max": (med + lo) / max(hi, EPS),
    }


def _clean(x: Iterable[float], name: str) -> np.ndarray:
    a = np.asarray(list(x) if not hasattr(x, "__len__") else x, np.float64).ravel()
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds non-finite values")
    return a


def ood_metrics(in_scores: Iterable[float], out_scores: Iterable[float]) -> dict:
    """Exact ROC analysis with OOD images as positives (higher score = more likely OOD).

    Returns ``auroc`` (trapezoid, ties count one half, as scikit-learn), ``fpr95`` (false
    positive rate at the first threshold reaching 95 % TPR), ``aupr`` (average precision with
    OOD as the positive class) and ``roc`` = {fpr, tpr} lists
    (one point per distinct threshold, starting at (0, 0)). AUROC is *not* flipped: a score
    that ranks OOD images lower (like the paper's ``max``) yields AUROC < 0.5.
    Empty inputs give nan metrics and empty curves.
    """
    neg = _clean(in_scores, "in_scores")
    pos = _clean(out_scores, "out_scores")
    if neg.size == 0 or pos.size == 0:
        return {
            "auroc": math.nan,
            "fpr95": math.nan,
            "aupr": math.nan,
            "roc": {"fpr": [], "tpr": []},
            "n_in": int(neg.size),
            "n_out": int(pos.size),
        }
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct threshold
    tp = np.r_[0.0, np.cumsum(y)[last]]
    fp = np.r_[0.0, np.cumsum(1.0 - y)[last]]
    tpr, fpr = tp / pos.size, fp / neg.size
    precision = tp[1:] / np.maximum(tp[1:] + fp[1:], 1.0)
    return {
        "auroc": float(np.trapezoid(tpr, fpr)),
        "fpr95": float(fpr[int(np.argmax(tpr >= 0.95))]),
        "aupr": float(np.sum(np.diff(tpr) * precision)),  # average precision, as scikit-learn's
        "roc": {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]},
        "n_in": int(neg.size),
        "n_out": int(pos.size),
    }


def threshold_at_false_alarm(in_scores: Iterable[float], rate: float = 0.05) -> float:
    """Smallest threshold t among the in-distribution scores such that at most ``rate`` of
    them are strictly greater than t. Flag an image as OOD when ``score > t``."""
    a = np.sort(_clean(in_scores, "in_scores"))
    if a.size == 0:
        raise ValueError("threshold_at_false_alarm: no in-distribution score")
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must lie in [0, 1]")
    k = int(math.floor(rate * a.size + 1e-9))  # allowed false alarms
    if k >= a.size:
        return float(np.nextafter(a[0], -np.inf))  # every image may be flagged
    # candidates from the top: t = a[n-1-k] leaves <= k scores above it (fewer with ties)
    return float(a[a.size - 1 - k])


# Image scores of one frame agree across code paths (a frame alone or in a batch, another
# CPU's kernels) to about 1e-9; thresholds keep this much room so that no frame of the
# calibration set sits on the knife edge of ``score > t``.
SCORE_TOLERANCE = 1e-6


def conformal_min_frames(rate: float) -> int:
    """The fewest calibration frames for which a conformal threshold at ``rate`` exists
    (n + 1 >= 1 / rate)."""
    if not (math.isfinite(rate) and 0.0 < rate < 1.0):
        raise ValueError(f"the false-alarm rate must lie in (0, 1), got {rate}")
    return max(1, math.ceil(1.0 / rate - 1.0 - 1e-9))


def conformal_rank(n: int, rate: float) -> int:
    """k = ceil((n + 1)(1 - rate)): the rank (1-based, ascending) of the calibration score the
    split-conformal threshold sits on."""
    if n < conformal_min_frames(rate):
        raise ValueError(
            f"{n} calibration frames are too few for a {rate:.1%} false-alarm guarantee: "
            f"at least {conformal_min_frames(rate)} are needed"
        )
    return min(n, math.ceil((n + 1) * (1.0 - rate) - 1e-9))


def conformal_threshold(in_scores: Iterable[float], rate: float, tolerance: float = SCORE_TOLERANCE) -> float:
    """Split-conformal alarm threshold: a new frame exchangeable with the ``n`` calibration
    frames is flagged (``score > t``) with probability at most ``rate``.

    t lies between the k-th smallest score s_(k), k = ceil((n + 1)(1 - rate)), and the next
    one (midway, at least ``tolerance`` above s_(k)): P(new > t) <= P(new > s_(k)) <= 1 - k/(n + 1)
    <= rate. Keeping t off every calibration score makes the verdict on those frames the
    same on any CPU and batch size. Raises ValueError when n + 1 < 1 / rate.
    """
    a = np.sort(_clean(in_scores, "in_scores"))
    k = conformal_rank(a.size, rate)
    base = float(a[k - 1])
    if k < a.size:
        return max(base + tolerance, 0.5 * (base + float(a[k])))
    return base + tolerance


def binomial_upper_bound(count: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate from ``count`` events in ``n`` trials
    (e.g. false alarms among in-distribution frames): the true rate is below it with
    probability ``confidence``."""
    from scipy.stats import beta

    if n <= 0:
        return math.nan
    if count >= n:
        return 1.0
    return float(beta.ppf(confidence, count + 1, n - count))
