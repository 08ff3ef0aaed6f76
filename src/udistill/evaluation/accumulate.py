"""One data set streamed into metric accumulators (:mod:`udistill.metrics.accumulator`):
:class:`SetAccumulator` is a collection of them, built from the method registry:

- **per predictor**: ``confusion`` (:class:`~udistill.metrics.ConfusionMatrix`: mIoU),
  ``calibration`` (:class:`~udistill.metrics.PredictorCalibration`: error rate, ECE, adaptive
  ECE, Brier, NLL) and, for the teacher and the students, ``uncertainty``
  (:class:`~udistill.metrics.ClassMeans`: the mean U per predicted class);
- **per method**: ``image`` (:class:`~udistill.metrics.ImageScores`: the five image scores of
  each image, for image-level OOD) and, with ``pixel``, ``pixel`` and ``pixel_student``
  (:class:`~udistill.metrics.BinnedPixelMetrics`, log-binned: AUROC, AUPR, FPR95, AURC,
  E-AURC against the method's own predictor's errors and against the student's);
- **per set**: ``names`` and ``examples`` (per image, in index order) and, with ``pixel``, the
  Fig 3 histogram (``sigma2d``), the student's σ agreement with the teacher (``agreement``,
  ``agreement_light``) and the teacher's noise ceiling (``ceiling``).

Each accumulator comes with a small *feed* that reads its arguments from a :class:`Batch`;
:meth:`SetAccumulator.update` runs every feed, :meth:`SetAccumulator.merge` merges every
accumulator with its twin. Under ``torchrun`` each rank streams its share of the images and
rank 0 merges the parts (histograms and sums add; per-image values are put back in image
order; the agreement samples are keyed by image index), giving the numbers of a one-process
run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..data.labels import IGNORE_INDEX
from ..metrics import (
    Accumulator,
    BinnedPixelMetrics,
    ClassMeans,
    ConfusionMatrix,
    CorrelationMeter,
    ImageScores,
    PerImage,
    PredictorCalibration,
    SigmaHistogram2D,
)
from .methods import PRIMARY, Method

SCORE_FLOOR = 1e-6  # log binning resolves scores down to this (see metrics/pixel.py)
UNCERTAIN = ("teacher", "student", "student_light")  # the predictors whose per-class U is reported


@dataclass
class Batch:
    """One batch as the feeds read it. Shape: target, preds[p], maps[key], model_preds[p],
    valid (N, H, W); probs[p] (N, C', H, W); images (N, 3, H, W); halves: U of each half of
    the ensemble's members, two (N, H, W), or None."""

    target: torch.Tensor
    images: torch.Tensor
    names: list[str]
    indices: list[int]
    probs: dict[str, torch.Tensor]
    preds: dict[str, torch.Tensor]
    model_preds: dict[str, torch.Tensor]
    maps: dict[str, torch.Tensor]
    halves: tuple[torch.Tensor, torch.Tensor] | None
    valid: torch.Tensor

    @property
    def wrong_student(self) -> torch.Tensor:
        return self.preds["student"] != self.target


Feed = Callable[[Accumulator, Batch], None]


# --------------------------------------------------------------------------- feeds


# module-level functions (bound to their predictor or method with functools.partial), so that
# a SetAccumulator pickles: under torchrun the ranks send theirs to rank 0


def _feed_confusion(p: str, acc: Accumulator, b: Batch) -> None:
    acc.update(b.preds[p], b.target)


def _feed_calibration(p: str, acc: Accumulator, b: Batch) -> None:
    acc.update(b.probs[p], b.target)


def _feed_uncertainty(p: str, acc: Accumulator, b: Batch) -> None:
    acc.update(b.model_preds[p], b.maps[PRIMARY[p]])  # U of its primary method per predicted class


def _feed_image(m: Method, acc: Accumulator, b: Batch) -> None:
    acc.update(b.maps[m.key], b.indices)


def _feed_pixel(m: Method, acc: Accumulator, b: Batch) -> None:
    acc.update(b.maps[m.key], b.preds[m.predictor] != b.target, target=b.target)


def _feed_pixel_student(m: Method, acc: Accumulator, b: Batch) -> None:
    acc.update(b.maps[m.key], b.wrong_student, target=b.target)


def _feed_names(acc: Accumulator, b: Batch) -> None:
    acc.update(b.indices, b.names)


def _feed_examples(acc: Accumulator, b: Batch) -> None:
    if acc.full:
        return
    acc.update(
        b.indices,
        (
            {
                "image": b.images[i].permute(1, 2, 0).numpy(),
                "label": b.target[i].numpy(),
                "pred": b.preds["student"][i].numpy(),
                "uncertainty": b.maps["student_sigma"][i].numpy(),
                "title": b.names[i],
            }
            for i in range(len(b.indices))
        ),
    )


def _feed_sigma2d(acc: Accumulator, b: Batch) -> None:
    acc.update(b.maps["ensemble_std"], b.maps["student_sigma"], b.wrong_student, valid=b.valid)


def _feed_agreement(key: str, acc: Accumulator, b: Batch) -> None:
    for i, idx in enumerate(b.indices):  # sample keys from the image index: rank-independent
        acc.update(b.maps[key][i], b.maps["ensemble_std"][i], cls=b.target[i], valid=b.valid[i], item=idx)


def _feed_ceiling(acc: Accumulator, b: Batch) -> None:
    if b.halves is None:
        return
    for i, idx in enumerate(b.indices):
        acc.update(b.halves[0][i].float().cpu(), b.halves[1][i].float().cpu(), valid=b.valid[i], item=idx)


# --------------------------------------------------------------------------- the collection


class SetAccumulator:
    """Streams one data set into the accumulators of every predictor and method (see the
    module docstring); ``metrics[(kind, owner, name)]`` holds them, kind being
    ``"predictor"``, ``"method"`` or ``"set"``.

    Under ``torchrun`` each rank streams its share of the images and :meth:`merge` adds the
    accumulators up on rank 0, giving the numbers of a one-process run."""

    def __init__(
        self,
        num_classes: int,
        model_classes: int,
        pixel: bool,
        bins: int,
        examples: int,
        methods: tuple[Method, ...],
        predictors: tuple[str, ...],
    ):
        self.methods, self.predictors = methods, predictors
        self.has_pixel = pixel
        self.max_examples = examples
        self.unc_who = tuple(p for p in UNCERTAIN if p in predictors)
        self.metrics: dict[tuple[str, str, str], Accumulator] = {}
        self._feeds: dict[tuple[str, str, str], Feed] = {}
        add = self._add

        for p in predictors:
            add("predictor", p, "confusion", ConfusionMatrix(num_classes), partial(_feed_confusion, p))
            add("predictor", p, "calibration", PredictorCalibration(), partial(_feed_calibration, p))
            if p in self.unc_who:
                add("predictor", p, "uncertainty", ClassMeans(model_classes), partial(_feed_uncertainty, p))
        for m in methods:
            add("method", m.key, "image", ImageScores(), partial(_feed_image, m))
            if pixel:
                add("method", m.key, "pixel", _binned(bins), partial(_feed_pixel, m))
                add("method", m.key, "pixel_student", _binned(bins), partial(_feed_pixel_student, m))
        add("set", "", "names", PerImage(), _feed_names)
        add("set", "", "examples", PerImage(limit=examples), _feed_examples)
        if pixel:
            add("set", "", "sigma2d", SigmaHistogram2D(high=0.25), _feed_sigma2d)
            add("set", "", "agreement", CorrelationMeter(), partial(_feed_agreement, "student_sigma"))
            # U of half the members vs the other half
            add("set", "", "ceiling", CorrelationMeter(per_class_samples=0), _feed_ceiling)
            if "student_light" in predictors:  # the light student's U against the ensemble's
                add("set", "", "agreement_light", CorrelationMeter(), partial(_feed_agreement, "student_light_sigma"))

    def _add(self, kind: str, owner: str, name: str, acc: Accumulator, feed: Feed) -> None:
        self.metrics[kind, owner, name] = acc
        self._feeds[kind, owner, name] = feed

    def of(self, kind: str, name: str) -> dict[str, Accumulator]:
        """``{owner: accumulator}`` of one metric, e.g. ``of("predictor", "confusion")``."""
        return {o: a for (k, o, n), a in self.metrics.items() if k == kind and n == name}

    def get(self, name: str) -> Accumulator | None:
        """One per-set accumulator (``sigma2d``, ``agreement``, ...), or None when not kept."""
        return self.metrics.get(("set", "", name))

    def update(self, batch: dict, probs: dict, maps: dict, model_preds: dict, halves=None, indices=None) -> None:
        """probs: per predictor in the data's label space (N, C', H, W); maps: per method (N, H, W);
        model_preds: per predictor, argmax in the model's own classes (N, H, W); halves: U of
        each half of the ensemble's members (N, H, W) or None; indices: the data set index of
        each image (default: the next ones in order)."""
        target = batch["label"]
        if indices is None:
            start = len(self.index)
            indices = range(start, start + target.shape[0])
        b = Batch(
            target=target,
            images=batch["image"],
            names=list(batch["name"]),
            indices=[int(i) for i in indices],
            probs=probs,
            preds={p: probs[p].argmax(1) for p in self.predictors},
            model_preds=model_preds,
            maps={k: v.float().cpu() for k, v in maps.items()},
            halves=halves,
            valid=target != IGNORE_INDEX,
        )
        for key, acc in self.metrics.items():
            self._feeds[key](acc, b)

    def merge(self, other: SetAccumulator) -> SetAccumulator:
        """Add another rank's accumulator (same sets of methods and predictors); returns self,
        its per-image values and examples in image order."""
        for key, acc in self.metrics.items():
            acc.merge(other.metrics[key])
        return self

    def portable(self) -> SetAccumulator:
        """Device tensors moved to the CPU, so that the accumulator can be sent to rank 0."""
        for acc in self.metrics.values():
            acc.portable()
        return self

    # ------------------------------------------------------------------ views (read by results and callers)

    @property
    def cm(self) -> dict[str, ConfusionMatrix]:
        return self.of("predictor", "confusion")

    @property
    def calib(self) -> dict[str, PredictorCalibration]:
        return self.of("predictor", "calibration")

    @property
    def pixel(self) -> dict[str, BinnedPixelMetrics] | None:
        return self.of("method", "pixel") if self.has_pixel else None

    @property
    def pixel_student(self) -> dict[str, BinnedPixelMetrics] | None:
        return self.of("method", "pixel_student") if self.has_pixel else None

    @property
    def scores(self) -> dict[str, dict[str, list[float]]]:
        """``{method: {image score: [one per image, in index order]}}``."""
        return {m: acc.scores for m, acc in self.of("method", "image").items()}

    @property
    def names(self) -> list[str]:
        return self.metrics["set", "", "names"].values

    @property
    def index(self) -> list[int]:
        """The data set index of each image in ``names`` and ``scores``."""
        return self.metrics["set", "", "names"].index

    @property
    def examples(self) -> list[dict]:
        return self.metrics["set", "", "examples"].values

    @property
    def sigma2d(self) -> SigmaHistogram2D | None:
        return self.get("sigma2d")

    @property
    def agree(self) -> CorrelationMeter | None:
        return self.get("agreement")

    @property
    def ceiling(self) -> CorrelationMeter | None:
        return self.get("ceiling")

    @property
    def agree_light(self) -> CorrelationMeter | None:
        return self.get("agreement_light")


def _binned(bins: int) -> BinnedPixelMetrics:
    return BinnedPixelMetrics(bins=bins, spacing="log", floor=SCORE_FLOOR)
