"""Joint training augmentation: geometric transforms applied to the image, the label and any
dense target maps (cached teacher mean/std) together; photometric ones to the image only.

Randomness comes from a per-item seed (run seed, epoch, index), never global state, so an
epoch replays identically after a resume and across DataLoader workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..seeds import item_seed

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@dataclass(frozen=True)
class Augment:
    """An augmentation recipe. ``scale``: random up-scaling range before cropping back to size
    (only >= 1, so crops never need padding); ``photometric``: none | color | strong."""

    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.0)
    photometric: str = "none"


RECIPES = {
    "none": Augment(flip=False),
    "flip": Augment(flip=True),
    "basic": Augment(flip=True, scale=(1.0, 1.5)),
    "color": Augment(flip=True, scale=(1.0, 1.5), photometric="color"),
    "strong": Augment(flip=True, scale=(1.0, 1.75), photometric="strong"),
}


def get_recipe(name: str) -> Augment:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown augmentation recipe '{name}' (known: {', '.join(RECIPES)})") from None


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s augmentation in ``epoch`` of a run seeded ``seed`` (31 bits)."""
    return item_seed("augment", int(seed), int(epoch), int(index))


def geometric(image, label, maps, aug: Augment, gen: torch.Generator):
    """Random scale-up + crop back to the original size, and horizontal flip.

    Shape: image (3, H, W) float; label (H, W) int64; maps list of (C, H, W) float tensors,
    or (C, h, w) maps at a reduced resolution covering the same image (the teacher cache at
    1/r, :mod:`udistill.pipeline.targets`): those are sampled at the centres of their own cells in
    the transformed image, so they stay aligned with it at their own resolution.
    Images and maps are resampled bilinearly, labels by nearest neighbour.
    """
    h, w = label.shape
    lo, hi = aug.scale
    if hi > 1.0:
        s = lo + (hi - lo) * float(torch.rand((), generator=gen))
        nh, nw = max(h, round(h * s)), max(w, round(w * s))
        if (nh, nw) != (h, w):
            top = int(torch.randint(0, nh - h + 1, (), generator=gen))
            left = int(torch.randint(0, nw - w + 1, (), generator=gen))
            image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            label = F.interpolate(label[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
            crop = (slice(top, top + h), slice(left, left + w))
            maps = [
                F.interpolate(m[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0].to(m.dtype)[
                    :, crop[0], crop[1]
                ]
                if tuple(m.shape[-2:]) == (h, w)
                else scale_crop_reduced(m, (h, w), (nh, nw), top, left)
                for m in maps
            ]
            image, label = image[:, crop[0], crop[1]], label[crop]
    if aug.flip and bool(torch.rand((), generator=gen) < 0.5):
        image, label = image.flip(-1), label.flip(-1)
        maps = [m.flip(-1) for m in maps]
    return image.contiguous(), label.contiguous(), [m.contiguous() for m in maps]


def scale_crop_reduced(
    m: torch.Tensor, size: tuple[int, int], scaled: tuple[int, int], top: int, left: int
) -> torch.Tensor:
    """A reduced-resolution map of an image after that image is scaled and cropped back.

    The image (H, W) = ``size`` is resized to ``scaled`` (nh, nw) and cropped at (top, left)
    to (H, W). ``m`` covers the image with (h, w) cells of H/h x W/w pixels each; the result
    has the same cells over the *cropped* image, each bilinearly sampled from ``m`` at the
    cell's centre mapped back into the original image (half-pixel convention of
    ``F.interpolate(align_corners=False)``; edges clamp). For maps linear in position this is
    exactly the area average of the transformed full-resolution map.

    Shape: m (C, h, w) -> (C, h, w), same dtype.
    """
    (hh, ww), (nh, nw) = size, scaled
    c, h, w = m.shape

    def source(n_cells, full, scaled_full, offset):
        centre = (torch.arange(n_cells, dtype=torch.float64) + 0.5) * (full / n_cells) - 0.5  # in the crop's pixels
        orig = (centre + offset + 0.5) * (full / scaled_full) - 0.5  # in the original image's pixels
        return (orig + 0.5) / full * 2 - 1  # grid_sample's normalised coordinate (align_corners=False)

    gy, gx = source(h, hh, nh, top), source(w, ww, nw, left)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).float()[None]  # (1, h, w, 2) as (x, y)
    out = F.grid_sample(m[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    return out.to(m.dtype)


_PHOTOMETRIC_CACHE: dict[str, object] = {}


def _photometric_pipeline(kind: str):
    if kind not in _PHOTOMETRIC_CACHE:
        import albumentations as A

        if kind == "color":
            ops = [A.ColorJitter(0.3, 0.3, 0.3, 0.05, p=0.8)]
        elif kind == "strong":
            ops = [
                A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
                A.GaussianBlur(blur_limit=(3, 5), p=0.3),
                A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
            ]
        else:
            raise ValueError(f"unknown photometric augmentation '{kind}'")
        _PHOTOMETRIC_CACHE[kind] = A.Compose(ops)
    return _PHOTOMETRIC_CACHE[kind]


def photometric(image: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """Colour/blur/noise on the image only (albumentations). Shape: (3, H, W) in [0, 1]."""
    if kind == "none":
        return image
    pipe = _photometric_pipeline(kind)
    pipe.set_random_seed(seed)
    arr = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    out = pipe(image=arr)["image"]
    return torch.from_numpy(out).permute(2, 0, 1).float().div_(255.0)
