"""Evaluation metrics: pure, streamed, bounded-memory accumulators (no model code).

Every accumulator has the torchmetrics shape (:mod:`udistill.metrics.accumulator`):
``update`` / ``compute`` / ``merge`` / ``reset``; additive ones (:class:`BinnedState`) also
``state_tensor`` / ``load_state_tensor`` / ``all_reduce`` across ``torchrun`` ranks.

* :class:`PredictorCalibration` — error rate, ECE, adaptive ECE, Brier, NLL of a predictor.
* :class:`ImageScores`, :class:`PerImage`, :class:`ClassMeans` — per-image scores and values
  (kept in data set order), per-class means.
* :class:`ConfusionMatrix` — per-class IoU, mIoU, pixel accuracy.
* :class:`BinnedPixelMetrics` — global pixel AUROC / AP / FPR95 / ECE / Brier / AURC + curves.
* :class:`SigmaHistogram2D` — student σ vs teacher σ 2-D histogram (Fig 3).
* :class:`CorrelationMeter` — Pearson / Spearman agreement, globally and per class.
* :func:`image_scores`, :func:`ood_metrics` — image-level OOD; :func:`conformal_threshold` — the
  alarm's threshold with a false-alarm guarantee (:func:`threshold_at_false_alarm`: the plain
  empirical quantile, no guarantee); :func:`binomial_upper_bound` for measured rates.
"""

from .accumulator import Accumulator, BinnedState, ClassMeans, ImageScores, PerImage
from .calibration import PredictorCalibration
from .correlation import CorrelationMeter
from .image import (
    IMAGE_SCORES,
    SCORE_TOLERANCE,
    binomial_upper_bound,
    conformal_min_frames,
    conformal_threshold,
    image_scores,
    ood_metrics,
    threshold_at_false_alarm,
)
from .pixel import BinnedPixelMetrics, SigmaHistogram2D, mirror_histogram
from .segmentation import ConfusionMatrix

__all__ = [
    "Accumulator",
    "BinnedPixelMetrics",
    "BinnedState",
    "ClassMeans",
    "ConfusionMatrix",
    "CorrelationMeter",
    "IMAGE_SCORES",
    "ImageScores",
    "PerImage",
    "PredictorCalibration",
    "SCORE_TOLERANCE",
    "SigmaHistogram2D",
    "binomial_upper_bound",
    "conformal_min_frames",
    "conformal_threshold",
    "image_scores",
    "mirror_histogram",
    "ood_metrics",
    "threshold_at_false_alarm",
]
