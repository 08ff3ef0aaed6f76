"""The out-of-distribution alarm: flag a frame whose image score exceeds a threshold fitted
on in-distribution frames at a chosen false-alarm rate.

The threshold is split-conformal (:func:`udistill.metrics.conformal_threshold`, the one
``udistill calibrate`` stores): a new frame exchangeable with the n calibration frames
(same camera, scenes and conditions, drawn the same way) is flagged with probability at
most the rate. Fewer than 1/rate − 1 frames give no such threshold and are refused.
Correlated frames (consecutive video) weaken the promise: subsample them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..metrics import binomial_upper_bound, conformal_min_frames, conformal_threshold
from .scores import frame_scores

Frames = torch.Tensor | Iterable[Any]


def _batch_images(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"cannot read images from a batch of type {type(batch).__name__}")


def _is_scores(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.ndim == 1
    if isinstance(x, (list, tuple)):
        return all(isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.ndim == 0) for v in x)
    return hasattr(x, "ndim") and x.ndim == 1  # numpy


def _check_rate(rate: float, n: int | None) -> None:
    need = conformal_min_frames(rate)  # ValueError on a rate outside (0, 1)
    if n is not None and n < need:
        raise ValueError(
            f"{n} calibration frame(s) are too few for a {rate:.1%} false-alarm guarantee: "
            f"at least {need} are needed (calibrate on more frames or choose a larger rate)"
        )


@dataclasses.dataclass(frozen=True)
class Alarm:
    """Flags frames whose image score is above ``threshold`` (``score > threshold``).

    ``score``: the image score of U it reads (see :func:`udistill.core.image_score`);
    ``student``: the model whose uncertainty is scored when the alarm is given frames.
    """

    threshold: float
    false_alarm_rate: float
    n: int
    score: str = "mean"
    student: nn.Module | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def calibrate(
        cls,
        scores_or_frames: Frames,
        false_alarm_rate: float = 0.05,
        *,
        student: nn.Module | None = None,
        score: str = "mean",
    ) -> Alarm:
        """Fit the threshold on in-distribution frames (not the ones you test on).

        ``scores_or_frames``: image scores (1-D), or frames (N, 3, H, W), or an iterable of
        batches (tensors, (images, ...) tuples or dicts with "image", e.g. a DataLoader)
        scored with ``student``. Raises ValueError when there are too few frames for the
        rate (checked before any frame is scored when their number is known).

        Shape: scores (n,); frames (n, 3, H, W)."""
        scores = cls._scores_of(scores_or_frames, student, score, rate=false_alarm_rate)
        _check_rate(false_alarm_rate, len(scores))
        t = conformal_threshold(scores.tolist(), false_alarm_rate)
        return cls(float(t), float(false_alarm_rate), len(scores), score, student)

    @staticmethod
    def _scores_of(x: Frames, student: nn.Module | None, score: str, rate: float | None = None) -> torch.Tensor:
        if _is_scores(x):
            return torch.as_tensor([float(v) for v in x], dtype=torch.float64)
        if student is None:
            raise ValueError("frames need a student to score them (Alarm.calibrate(frames, student=...))")
        if rate is not None:  # refuse before scoring any frame when the count is known
            n = x.shape[0] if isinstance(x, torch.Tensor) else len(getattr(x, "dataset", ())) or None
            _check_rate(rate, n)
        batches = [x] if isinstance(x, torch.Tensor) else x
        parts = [frame_scores(student, _batch_images(b), score) for b in batches]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def scores(self, scores_or_frames: Frames) -> torch.Tensor:
        """Image scores (given, or computed with the alarm's student). Shape: -> (n,) float64."""
        return self._scores_of(scores_or_frames, self.student, self.score)

    def __call__(self, scores_or_frames: Frames) -> torch.Tensor:
        """True where a frame is flagged. Shape: scores (n,) or frames (n, 3, H, W) -> (n,) bool."""
        return self.scores(scores_or_frames) > self.threshold

    def false_alarms(self, in_distribution: Frames, confidence: float = 0.95) -> dict:
        """The measured false-alarm rate on held-out in-distribution frames, with its
        one-sided Clopper-Pearson upper bound (:func:`udistill.metrics.binomial_upper_bound`)."""
        flags = self(in_distribution)
        k, n = int(flags.sum()), int(flags.numel())
        return {
            "false_alarms": k,
            "n": n,
            "rate": k / n if n else float("nan"),
            "upper_bound": binomial_upper_bound(k, n, confidence),
            "confidence": confidence,
            "promised": self.false_alarm_rate,
        }
