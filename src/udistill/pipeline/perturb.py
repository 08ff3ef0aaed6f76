"""Perturbed views for distillation: let the student see the teacher disagree.

A student distilled on clean training images never sees the inputs on which the ensemble's
members disagree most, so out of distribution its σ is an extrapolation nothing constrains
(the known limit of distribution distillation; Malinin et al. distil on auxiliary data).
Here the student learns the teacher's M and Σ also on *perturbed* training images, and the
teacher always sees exactly the view the student sees.

A view of training image i: with probability ``clean`` the image itself, otherwise a random
strength s ~ U(0.25, 1) scales a chain of photometric and corruption perturbations
(colour jitter, gamma, contrast, Gaussian blur, Gaussian noise, JPEG), each applied with
probability 0.5, and with probability 0.5 a CutMix rectangle (10–40 % of the area, image
and label) from another training image. None of the evaluation shifts is used: no fog,
rain or dusk generator (:mod:`udistill.data.weather`), no other city or sequence.

Two ways to get views, the same function underneath (:func:`perturb_view`):

- ``online``: a fresh view per (epoch, image); the teacher runs on the batch;
- ``cached``: K fixed views per image (view 0 is the clean image), their teacher maps
  cached once (:class:`ViewDataset` is what the cache is built over); each epoch an image
  shows one of its K views.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


def _seed_rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(k)) % (2**63) for k in key])


def _photometric(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Photometric and corruption chain at strength ``s``. Shape: (H, W, 3) float in [0, 1]."""
    if rng.random() < 0.5:  # colour jitter: brightness, saturation, per-channel gain
        gray = img.mean(2, keepdims=True)
        sat = 1 + s * rng.uniform(-0.6, 0.6)
        img = gray + (img - gray) * sat
        img = img * (1 + s * rng.uniform(-0.3, 0.3)) * (1 + s * rng.uniform(-0.1, 0.1, size=3))
    if rng.random() < 0.5:  # gamma
        img = np.clip(img, 0, 1) ** math.exp(s * rng.uniform(-0.5, 0.5))
    if rng.random() < 0.5:  # contrast
        m = img.mean()
        img = m + (img - m) * (1 + s * rng.uniform(-0.5, 0.4))
    img = np.clip(img, 0, 1)
    if rng.random() < 0.5:  # Gaussian blur
        from scipy.ndimage import gaussian_filter

        sigma = 0.3 + 1.7 * s * rng.random()
        img = gaussian_filter(img, sigma=(sigma, sigma, 0))
    if rng.random() < 0.5:  # Gaussian noise
        img = img + rng.normal(0, 0.08 * s * rng.random() + 0.005, img.shape)
    img = np.clip(img, 0, 1)
    if rng.random() < 0.5:  # JPEG
        quality = int(round(95 - 80 * s * rng.random()))
        buf = io.BytesIO()
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
        img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), np.float64) / 255.0
    return img


def _cutmix(image, label, other_image, other_label, rng):
    """Paste a random rectangle (10–40 % of the area) of another image, with its labels."""
    h, w = label.shape
    area = rng.uniform(0.1, 0.4)
    aspect = math.exp(rng.uniform(-0.7, 0.7))
    rh = max(1, min(h, int(round(math.sqrt(area * h * w / aspect)))))
    rw = max(1, min(w, int(round(math.sqrt(area * h * w * aspect)))))
    top, left = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    image, label = image.clone(), label.clone()
    image[:, top : top + rh, left : left + rw] = other_image[:, top : top + rh, left : left + rw]
    label[top : top + rh, left : left + rw] = other_label[top : top + rh, left : left + rw]
    return image, label


def perturb_view(dataset, index: int, key: tuple[int, ...], clean: float = 0.2) -> dict:
    """The perturbed view of item ``index`` drawn from the random ``key`` (deterministic).

    Returns the item dict with ``image`` (3, H, W) in [0, 1] and ``label`` (H, W) replaced.
    """
    item = dict(dataset[index])
    rng = _seed_rng(*key)
    if rng.random() < clean:
        return item
    s = rng.uniform(0.25, 1.0)
    image, label = item["image"], item["label"]
    if rng.random() < 0.5 and len(dataset) > 1:
        j = (index + 1 + int(rng.integers(0, len(dataset) - 1))) % len(dataset)
        other = dataset[j]
        if other["image"].shape == image.shape:
            image, label = _cutmix(image, label, other["image"], other["label"], rng)
    arr = image.permute(1, 2, 0).double().numpy()
    out = _photometric(arr, rng, s)
    item["image"] = torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1).contiguous()
    item["label"] = label
    return item


class PerturbedViews:
    """Chooses the view of an item for an epoch.

    ``count=None`` (online): a fresh view per (seed, epoch, index). ``count=K`` (cached):
    view ``k`` of image i is fixed by (seed, i, k), view 0 is the clean image; the view of
    an epoch is drawn from (seed, epoch, index). :meth:`sample` returns the item and the
    index of its cached teacher maps (``i * K + k``; ``index`` when online).
    """

    def __init__(self, count: int | None = None, seed: int = 0, clean: float = 0.2):
        if count is not None and count < 1:
            raise ValueError(f"view count must be >= 1, got {count}")
        self.count, self.seed, self.clean = count, int(seed), float(clean)

    def describe(self) -> dict:
        return {"views": "perturb", "count": self.count, "seed": self.seed, "clean": self.clean, "version": 1}

    def view(self, dataset, index: int, k: int) -> dict:
        """Fixed view ``k`` of image ``index`` (cached mode)."""
        if k == 0:
            return dict(dataset[index])
        return perturb_view(dataset, index, (self.seed, 7919, index, k), clean=0.0)

    def sample(self, dataset, index: int, epoch: int) -> tuple[dict, int]:
        if self.count is None:
            return perturb_view(dataset, index, (self.seed, 104729, epoch, index), self.clean), index
        k = int(_seed_rng(self.seed, 15485863, epoch, index).integers(0, self.count))
        return self.view(dataset, index, k), index * self.count + k


class ViewDataset(Dataset):
    """The K fixed views of every image, flattened (item ``i * K + k``): what the teacher
    cache is built over, so cached maps describe exactly the pixels the student sees."""

    def __init__(self, dataset, views: PerturbedViews):
        if views.count is None:
            raise ValueError("ViewDataset needs a fixed view count")
        self.dataset, self.views = dataset, views
        self.scheme = getattr(dataset, "scheme", None)

    def __len__(self) -> int:
        return len(self.dataset) * self.views.count

    def __getitem__(self, j: int) -> dict:
        return self.views.view(self.dataset, j // self.views.count, j % self.views.count)

    def fingerprint(self) -> str:
        import hashlib
        import json

        base = (
            self.dataset.fingerprint()
            if hasattr(self.dataset, "fingerprint")
            else f"{type(self.dataset).__name__}:{len(self.dataset)}"
        )
        return hashlib.sha256(json.dumps([base, self.views.describe()], sort_keys=True).encode()).hexdigest()[:16]
