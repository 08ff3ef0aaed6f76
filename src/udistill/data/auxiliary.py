"""Auxiliary unlabelled images for distillation: where the student sees the teacher disagree.

A student distilled only on training images never sees the inputs on which the ensemble's
members disagree, so out of distribution its uncertainty is an extrapolation nothing
constrains. Ensemble Distribution Distillation (Malinin et al., 2020) distils on auxiliary
data for this reason. Here the auxiliary images pass through the teacher (M, Σ) and are
distilled with the same loss, without labels: their label is all 255 (ignore), so the
cross-entropy term never sees them (:func:`udistill.core.losses.distillation_loss` averages it
over labelled pixels only).

Sources (``distill.auxiliary``, a list; ``distill.auxiliary_ratio`` is the share of
auxiliary images in a distillation epoch):

- ``synthetic:<style>``: scenes of the built-in renderer in one of :data:`AUXILIARY_STYLES`
  from a split of their own (``auxiliary``: no training, validation or test scene); for a
  model trained on real frames, ``synthetic:camvid`` is a whole other domain too;
- ``corrupt:<family>``: training images under a corruption family of :data:`CORRUPTIONS`
  (pixelation, motion blur, channel swap, posterisation), none of which is an evaluation
  shift (fog, rain, dusk are never used here);
- any other string: a folder of the user's own unlabelled frames (the field case: fleet
  frames from other places), resized to ``data.size``; checked by content against every
  validation and test set before distillation (:func:`check_folders_disjoint`).

Never used, by construction (and by a test): the weather generator of
:mod:`udistill.data.weather` and the ``new-city`` style, which make the evaluation shifts.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from ..errors import ConfigError
from .base import make_item
from .images import ImageFolder
from .labels import IGNORE_INDEX
from .sets import check_disjoint
from .synthetic.dataset import render, scene_seed

#: Renderer styles that may serve as auxiliary data. ``new-city`` is the evaluation shift's
#: style and is never one of them.
AUXILIARY_STYLES = ("camvid", "harbour", "suburb")
#: Corruption families for ``corrupt:<family>``; none is an evaluation shift.
CORRUPTIONS = ("pixelate", "motion-blur", "channel-swap", "posterize")
#: The renderer split of auxiliary scenes (seeds disjoint from train, val and test).
AUXILIARY_SPLIT = "auxiliary"


@dataclass(frozen=True)
class AuxiliarySource:
    """One entry of ``distill.auxiliary``: ``kind`` is synthetic, corrupt or folder."""

    kind: str
    name: str

    @property
    def spec(self) -> str:
        return self.name if self.kind == "folder" else f"{self.kind}:{self.name}"


def parse_auxiliary(entries, train_dataset: str | None = None) -> list[AuxiliarySource]:
    """The sources of ``distill.auxiliary``; a clear ConfigError for an unknown one.

    ``train_dataset`` (the registry name of the training data) refuses the training set's
    own renderer style: scenes of the training distribution are not auxiliary."""
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = [entries]
    out = []
    for i, entry in enumerate(entries):
        key = f"config key 'distill.auxiliary[{i}]'"
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"{key}: expected synthetic:<style>, corrupt:<family> or a folder, got {entry!r}")
        kind, _, name = entry.partition(":")
        if kind == "synthetic":
            if name not in AUXILIARY_STYLES:
                raise ConfigError(
                    f"{key}: unknown auxiliary style '{name}' (known: {', '.join(AUXILIARY_STYLES)}; "
                    "'new-city' is an evaluation shift and never auxiliary)"
                )
            if name == "camvid" and train_dataset == "synthetic":
                raise ConfigError(f"{key}: 'synthetic:camvid' is the training distribution of the synthetic data set")
            out.append(AuxiliarySource("synthetic", name))
        elif kind == "corrupt":
            if name not in CORRUPTIONS:
                raise ConfigError(f"{key}: unknown corruption '{name}' (known: {', '.join(CORRUPTIONS)})")
            out.append(AuxiliarySource("corrupt", name))
        else:
            path = Path(entry).expanduser()
            if not path.is_dir():
                raise ConfigError(f"{key}: {entry}: not a folder of images (or synthetic:<style>, corrupt:<family>)")
            out.append(AuxiliarySource("folder", str(path)))
    return out


def auxiliary_count(train_len: int, ratio: float) -> int:
    """Auxiliary images per epoch so that they are ``ratio`` of the epoch's images."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"config key 'distill.auxiliary_ratio': expected a number in [0, 1), got {ratio}")
    return int(round(train_len * ratio / (1.0 - ratio)))


# --------------------------------------------------------------------------- corruptions
def corrupt(image: np.ndarray, family: str, rng: np.random.Generator) -> np.ndarray:
    """One corruption of :data:`CORRUPTIONS` at a random strength.

    Shape: image (H, W, 3) uint8 -> (H, W, 3) uint8."""
    h, w = image.shape[:2]
    if family == "pixelate":
        f = rng.uniform(0.12, 0.3)
        small = Image.fromarray(image).resize((max(1, int(w * f)), max(1, int(h * f))), Image.BOX)
        return np.asarray(small.resize((w, h), Image.NEAREST))
    if family == "motion-blur":
        length = max(3, int(round(rng.uniform(0.04, 0.1) * w)))
        angle = rng.uniform(-20, 20)
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        kernel = np.array(Image.fromarray(k).rotate(angle, resample=Image.BILINEAR), np.float32)
        kernel /= kernel.sum()
        from scipy.ndimage import convolve

        out = np.stack([convolve(image[..., c].astype(np.float32), kernel, mode="nearest") for c in range(3)], -1)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if family == "channel-swap":
        perms = [(1, 2, 0), (2, 0, 1), (2, 1, 0), (1, 0, 2)]
        return np.ascontiguousarray(image[..., perms[int(rng.integers(len(perms)))]])
    if family == "posterize":
        bits = int(rng.integers(1, 3))
        return np.asarray(
            Image.fromarray(image).filter(ImageFilter.MedianFilter(3)).quantize(2 ** (bits + 1)).convert("RGB")
        )
    raise ConfigError(f"unknown corruption '{family}' (known: {', '.join(CORRUPTIONS)})")


# --------------------------------------------------------------------------- the data sets
def _unlabelled(image: np.ndarray, name: str, size, scheme, source: str) -> dict:
    label = np.full(image.shape[:2], IGNORE_INDEX, np.uint8)
    return make_item(image, label, name, None, size, scheme, source)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)


class AuxiliarySet(Dataset):
    """``count`` unlabelled images drawn from the sources in turn (item k from source k mod S).

    Every item is a fixed function of (sources, seed, k), so cached teacher maps stay valid.
    ``train_set`` supplies the images of ``corrupt:`` sources (spread over the whole set)."""

    def __init__(self, sources: list[AuxiliarySource], count: int, train_set, size, seed: int = 0):
        if not sources:
            raise ConfigError("auxiliary images need at least one source (distill.auxiliary)")
        self.sources, self.count, self.train_set = list(sources), int(count), train_set
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.scheme = train_set.scheme
        self.folders: dict[str, object] = {}  # the user folders among the sources, by path
        for s in self.sources:
            if s.kind == "folder":
                folder = ImageFolder(s.name, split=AUXILIARY_SPLIT, size=self.size, recursive=True)
                if len(folder) == 0:
                    raise ConfigError(f"{s.name}: the auxiliary folder holds no images")
                self.folders[s.name] = folder

    def __len__(self) -> int:
        return self.count

    def _size(self) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        return tuple(self.train_set[0]["image"].shape[-2:])

    def __getitem__(self, k: int) -> dict:
        if not 0 <= k < self.count:
            raise IndexError(f"auxiliary item {k} out of range ({self.count})")
        src = self.sources[k % len(self.sources)]
        j = k // len(self.sources)
        name = f"auxiliary-{src.kind}-{src.name if src.kind != 'folder' else Path(src.name).name}-{j:06d}"
        if src.kind == "synthetic":
            h, w = self._size()
            image = render(h, w, scene_seed(self.seed, AUXILIARY_SPLIT, j), style=src.name)[0]
            return _unlabelled(image, name, None, self.scheme, f"{src.spec}[{j}]")
        if src.kind == "corrupt":
            n = len(self.train_set)
            per_source = math.ceil(self.count / len(self.sources))
            index = (j * n // max(1, per_source)) % n  # spread over the whole training set
            base = self.train_set[index]
            rng = np.random.default_rng([self.seed, CORRUPTIONS.index(src.name), j])
            image = corrupt(_to_uint8(base["image"]), src.name, rng)
            return _unlabelled(image, name, None, self.scheme, f"{src.spec}[{j}]")
        folder = self.folders[src.name]
        if folder.size is None:  # no data.size: the training images' own size (one size for the cache)
            folder.size = self._size()
        item = dict(folder[j % len(folder)])
        item["name"] = name
        return item

    def describe(self) -> dict:
        folders = {name: f.describe()["files"] for name, f in self.folders.items()}
        return {
            "sources": [s.spec for s in self.sources],
            "count": self.count,
            "seed": self.seed,
            "size": list(self.size) if self.size else None,
            "folders": folders,
            "version": 1,
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


class DistillationSet(Dataset):
    """The images a student is distilled on: the training set, then the auxiliary images
    (labels all 255, no depth). Item i < len(train) is training item i."""

    def __init__(self, train_set, auxiliary: AuxiliarySet):
        self.train_set, self.auxiliary = train_set, auxiliary
        self.scheme = train_set.scheme

    def __len__(self) -> int:
        return len(self.train_set) + len(self.auxiliary)

    def __getitem__(self, i: int) -> dict:
        n = len(self.train_set)
        if i < n:
            return self.train_set[i]
        item = dict(self.auxiliary[i - n])
        item.pop("depth", None)
        return item

    def is_auxiliary(self, i: int) -> bool:
        return i >= len(self.train_set)

    def fingerprint(self) -> str:
        base = (
            self.train_set.fingerprint()
            if hasattr(self.train_set, "fingerprint")
            else f"{type(self.train_set).__name__}:{len(self.train_set)}"
        )
        return hashlib.sha256(json.dumps([base, self.auxiliary.describe()], sort_keys=True).encode()).hexdigest()[:16]


def with_auxiliary(train_set, entries, ratio: float, size, seed: int = 0, train_dataset: str | None = None):
    """``train_set`` itself when ``entries`` is empty, else a :class:`DistillationSet` with
    ``ratio`` of its images auxiliary."""
    sources = parse_auxiliary(entries, train_dataset)
    if not sources:
        return train_set
    count = auxiliary_count(len(train_set), ratio)
    if count == 0:
        return train_set
    return DistillationSet(train_set, AuxiliarySet(sources, count, train_set, size, seed))


def check_folders_disjoint(auxiliary: AuxiliarySet, evaluation_sets: dict[str, object]) -> None:
    """Refuse an auxiliary folder that shares an image (by file content) with any validation
    or test set: distilling the teacher's uncertainty on an evaluation image would be
    choosing on it."""
    for name, folder in auxiliary.folders.items():
        check_disjoint(
            folder,
            evaluation_sets,
            what=f"the auxiliary folder {name}",
            hint="remove those frames from the auxiliary folder (distill.auxiliary)",
        )
