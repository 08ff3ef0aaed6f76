"""The shape every metric accumulator shares (the torchmetrics shape): ``update(...)`` with one
batch, ``compute()`` for the numbers, ``merge(other)`` to add another accumulator of the
same configuration (another rank, another part of the data set), ``reset()``.

Two kinds of state:

* **additive** (:class:`BinnedState`): fixed-size float64 arrays (histograms over score
  bins, confidence bins, sums) that add up across parts. :meth:`BinnedState.state_tensor`
  flattens them into one tensor that ``torch.distributed.all_reduce`` can sum
  (:meth:`BinnedState.all_reduce` does that under ``torchrun``), and
  :meth:`BinnedState.load_state_tensor` reads such a tensor back. The pixel-error metrics
  (:class:`~udistill.metrics.pixel.BinnedPixelMetrics`: AUROC, AUPR, FPR95, AURC, E-AURC),
  the calibration of a predictor (:class:`~udistill.metrics.calibration.PredictorCalibration`:
  ECE, adaptive ECE, Brier, NLL), the Fig 3 histogram and :class:`ClassMeans` are of this kind;
  the confusion matrix (:class:`~udistill.metrics.segmentation.ConfusionMatrix`, mIoU) is
  additive too, in int64 on the device of its updates;
* **per image** (:class:`PerImage`, :class:`ImageScores`): one value per image, keyed by the
  image's index in its data set; :meth:`PerImage.merge` puts the images back in index order.
  Such state is gathered (``sharding.gather_to_main``), not summed.

Evaluation under ``torchrun`` gathers whole accumulators on rank 0 and merges them there
(every kind at once); ``all_reduce`` is for callers that keep additive state on every rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..sharding import all_reduce_sum
from .image import IMAGE_SCORES, image_scores


class Accumulator:
    """Base of the metric accumulators: ``update``, ``compute``, ``merge`` (returns self),
    ``reset`` and ``portable`` (state moved to the CPU, to be pickled to another rank)."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> Any:
        raise NotImplementedError

    def merge(self, other: Any) -> Accumulator:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def portable(self) -> Accumulator:
        return self

    def all_reduce(self) -> Accumulator:
        """Sum additive state over every ``torchrun`` rank, in place (every rank then holds
        the sum; one process: unchanged). Needs ``state_tensor`` / ``load_state_tensor``."""
        self.load_state_tensor(all_reduce_sum(self.state_tensor()))  # type: ignore[attr-defined]
        return self


class BinnedState(Accumulator):
    """Additive state: the float64 arrays named in ``_state`` (attributes of the subclass).

    A subclass sets ``_state`` and implements ``_config()`` (the settings two accumulators
    must share to be merged); merging adds the arrays element by element."""

    _state: tuple[str, ...] = ()

    def _config(self) -> tuple:
        return ()

    def _arrays(self) -> list[np.ndarray]:
        return [getattr(self, name) for name in self._state]

    def merge(self, other: Any) -> BinnedState:
        """Add another accumulator with the same configuration (another rank/split); returns self."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError(f"cannot merge: configuration {other._config()} != {self._config()}")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs  # in place: the arrays are the accumulator's own
        return self

    def state_tensor(self) -> torch.Tensor:
        """All (additive) state as one flat float64 CPU tensor: ``dist.all_reduce`` it (SUM),
        then :meth:`load_state_tensor` — or use :meth:`merge` with a gathered object."""
        return torch.from_numpy(np.concatenate([a.ravel() for a in self._arrays()]).astype(np.float64))

    def load_state_tensor(self, t: torch.Tensor) -> None:
        a = t.detach().cpu().to(torch.float64).numpy().ravel()
        arrays = self._arrays()
        sizes = [x.size for x in arrays]
        if a.size != sum(sizes):
            raise ValueError(f"state tensor has {a.size} values, expected {sum(sizes)}")
        o = np.cumsum([0, *sizes])
        for k, (name, x) in enumerate(zip(self._state, arrays)):
            setattr(self, name, a[o[k] : o[k + 1]].reshape(x.shape).copy())

    @property
    def state_nbytes(self) -> int:
        """Bytes held by the accumulator's state (constant: independent of pixels seen)."""
        return int(sum(a.nbytes for a in self._arrays()))


class ClassMeans(BinnedState):
    """Mean of a per-pixel value per class (e.g. the mean uncertainty per predicted class).

    ``update(cls, value)``: class ids and values of the same shape. ``compute()``: one mean per
    class (nan for a class never seen)."""

    _state = ("_sum", "_count")

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.reset()

    def _config(self) -> tuple:
        return (self.num_classes,)

    def reset(self) -> None:
        self._sum = np.zeros(self.num_classes, np.float64)
        self._count = np.zeros(self.num_classes, np.float64)

    @torch.no_grad()
    def update(self, cls: torch.Tensor, value: torch.Tensor) -> None:
        c = cls.cpu().flatten()
        v = value.cpu().double().flatten()
        self._sum += torch.bincount(c, weights=v, minlength=self.num_classes).numpy()
        self._count += torch.bincount(c, minlength=self.num_classes).double().numpy()

    def compute(self) -> list[float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self._count > 0, self._sum / np.maximum(self._count, 1), np.nan)
        return [float(v) for v in means]


class PerImage(Accumulator):
    """One value per image, kept in the order of the images' data set index.

    ``update(indices, values)``; with ``limit`` only the images of the ``limit`` smallest
    indices are kept (each part keeps its first ``limit``; a merge keeps the first of both).
    ``compute()``: the values in index order."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.index: list[int] = []
        self.values: list = []

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.values) >= self.limit

    def update(self, indices: Iterable[int], values: Iterable) -> None:
        for i, v in zip(indices, values):
            if self.full:
                break
            self.index.append(int(i))
            self.values.append(v)

    def merge(self, other: PerImage) -> PerImage:
        index, values = self.index + other.index, self.values + other.values
        order = sorted(range(len(index)), key=index.__getitem__)[: self.limit]
        self.index = [index[i] for i in order]
        self.values = [values[i] for i in order]
        return self

    def compute(self) -> list:
        return self.values


class ImageScores(Accumulator):
    """The five image scores (:data:`~udistill.metrics.image.IMAGE_SCORES`) of one uncertainty
    map per image, in index order, for image-level OOD (:func:`~udistill.metrics.image.ood_metrics`).

    ``update(maps, indices)``: maps (N, H, W). ``compute()`` / ``scores``: ``{score: [one per image]}``."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.index: list[int] = []
        self.scores: dict[str, list[float]] = {s: [] for s in IMAGE_SCORES}

    def update(self, maps: torch.Tensor, indices: Iterable[int]) -> None:
        for i, idx in enumerate(indices):
            self.index.append(int(idx))
            for s, v in image_scores(maps[i]).items():
                self.scores[s].append(v)

    def merge(self, other: ImageScores) -> ImageScores:
        index = self.index + other.index
        order = sorted(range(len(index)), key=index.__getitem__)
        self.index = [index[i] for i in order]
        for s, v in self.scores.items():
            both = v + other.scores[s]
            self.scores[s] = [both[i] for i in order]
        return self

    def compute(self) -> dict[str, list[float]]:
        return self.scores
