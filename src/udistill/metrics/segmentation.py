"""Segmentation quality: a streamed confusion matrix, per-class IoU, mIoU, pixel accuracy.

The matrix lives on the device of the first update (one ``bincount`` per batch, no
host round trip); :meth:`ConfusionMatrix.compute` moves the small (C, C) matrix to the CPU.
Rows are the ground truth, columns the prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.labels import IGNORE_INDEX
from .accumulator import Accumulator


def _as_long_tensor(x: Any, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids, got dtype {t.dtype}")
    return t.long()


class ConfusionMatrix(Accumulator):
    """Accumulates a (C, C) confusion matrix over many batches.

    ``update(pred, target)`` takes (N, H, W) or (H, W) integer tensors/arrays of the same shape.
    Pixels whose target equals ``ignore_index`` (or lies outside ``[0, C)``) are skipped.
    A prediction outside ``[0, C)`` on a valid pixel is an error (it would be a bug upstream).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix: torch.Tensor = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred: Any, target: Any) -> None:
        pred = _as_long_tensor(pred, "pred")
        target = _as_long_tensor(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if target.device != pred.device:
            target = target.to(pred.device)
        c = self.num_classes
        valid = (target != self.ignore_index) & (target >= 0) & (target < c)
        p = pred[valid]
        t = target[valid]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= c):
            raise ValueError(f"pred holds class ids outside [0, {c})")
        counts = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts (e.g. from another rank or split); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices with different num_classes")
        self.matrix = self.matrix + other.matrix.to(self.matrix.device)
        return self

    def portable(self) -> ConfusionMatrix:
        """The matrix moved to the CPU (to be sent to another rank); returns self."""
        self.matrix = self.matrix.cpu()
        return self

    def state_tensor(self) -> torch.Tensor:
        """The (C, C) int64 counts on the CPU: ``dist.all_reduce`` (SUM) adds them up."""
        return self.matrix.detach().cpu().clone()

    def load_state_tensor(self, t: torch.Tensor) -> None:
        if t.numel() != self.num_classes**2:
            raise ValueError(f"state tensor has {t.numel()} values, expected {self.num_classes**2}")
        self.matrix = t.detach().reshape(self.num_classes, self.num_classes).to(torch.int64).clone()

    def compute(self) -> dict:
        """``per_class_iou`` (list, nan for classes absent from both prediction and target),
        ``miou`` (nanmean), ``pixel_accuracy``, ``per_class_accuracy`` (recall, nan if absent
        from the target), ``num_pixels``."""
        m = self.matrix.detach().cpu().to(torch.float64).numpy()
        tp = np.diag(m)
        gt = m.sum(axis=1)
        pr = m.sum(axis=0)
        union = gt + pr - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
            acc = np.where(gt > 0, tp / np.where(gt > 0, gt, 1), np.nan)
        total = m.sum()
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan
        return {
            "per_class_iou": [float(v) for v in iou],
            "miou": miou,
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "per_class_accuracy": [float(v) for v in acc],
            "num_pixels": int(total),
        }
