"""The common shape of every dataset: items as dicts, a label scheme, a fingerprint."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import DataError
from .labels import IGNORE_INDEX, LabelScheme


class SegmentationDataset(Dataset):
    """Base class. Subclasses set ``scheme`` and implement ``__len__`` and ``load(index)``.

    ``load`` returns ``(image uint8 HxWx3, label uint8/int HxW, name, depth float HxW or None)``;
    this class validates, resizes and converts to the item dict of :mod:`udistill.data.registry`.
    """

    scheme: LabelScheme
    size: tuple[int, int] | None = None

    def load(self, index: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """What identifies this data (used in fingerprints of caches and checkpoints)."""
        return {"class": type(self).__name__, "len": len(self)}

    def fingerprint(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def source(self, index: int) -> str:
        """Human-readable origin of item ``index`` for error messages (a file path)."""
        return f"{type(self).__name__}[{index}]"

    def __getitem__(self, index: int) -> dict:
        image, label, name, depth = self.load(index)
        return make_item(image, label, name, depth, self.size, self.scheme, self.source(index))


def make_item(image, label, name, depth, size, scheme: LabelScheme, source: str) -> dict:
    """Validate one sample and turn it into the item dict, resized to ``size`` if given."""
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{source}: image must be HxWx3, got shape {image.shape}")
    if label.shape != image.shape[:2]:
        raise DataError(
            f"{source}: label size {label.shape[1]}x{label.shape[0]} does not match image size {image.shape[1]}x{image.shape[0]}"
        )
    bad = (label >= scheme.num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        values = sorted(set(np.unique(label[bad]).tolist()))[:5]
        raise DataError(
            f"{source}: label values {values} are outside the {scheme.name} scheme (0..{scheme.num_classes - 1}, 255 = ignore)"
        )
    img_t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    lab_t = torch.from_numpy(label.astype(np.int64))
    dep_t = None if depth is None else torch.from_numpy(np.asarray(depth, np.float32))
    if size is not None and tuple(size) != tuple(img_t.shape[1:]):
        img_t = F.interpolate(img_t[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp_(
            0, 1
        )
        lab_t = F.interpolate(lab_t[None, None].float(), size=size, mode="nearest")[0, 0].long()
        if dep_t is not None:
            dep_t = F.interpolate(dep_t[None, None], size=size, mode="nearest")[0, 0]
    item = {"image": img_t, "label": lab_t, "name": str(name)}
    if dep_t is not None:
        item["depth"] = dep_t
    return item
