"""Everything a user may hand the predictor, turned into one float batch.

Accepted: a path, a PIL image, an (H, W, 3) uint8 (0..255), uint16 (0..65535) or float
(0..1) array, a (3, H, W) or (N, 3, H, W) float tensor in [0, 1] (uint8 tensors are scaled).
Grayscale and RGBA arrays are converted to RGB. Paths and PIL images go through the data
sets' reader (:mod:`udistill.data.imageio`): EXIF orientation applied, 16-bit scaled by bit
depth, so ``predict``, ``calibrate`` and ``ood-report`` see the same pixels.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch


def as_batch(image: Any) -> tuple[torch.Tensor, bool]:
    """Any accepted input -> (tensor (N, 3, H, W) on the CPU, batched?): float32 in [0, 1],
    or uint8 (0..255) for uint8 images, which stay uint8 until they are resized (a 4000x6000
    frame is 72 MB as uint8, 288 MB as float)."""
    if isinstance(image, (str, os.PathLike)):
        from ...data.imageio import read_frame

        image = read_frame(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL image
        from ...data.imageio import to_rgb8

        image = to_rgb8(image, "input")
    if isinstance(image, np.ndarray):
        t = _array_to_tensor(image).unsqueeze(0)
        return (t if t.dtype == torch.uint8 else check_range(t)), False
    if isinstance(image, torch.Tensor):
        t = image.detach()
        batched = t.ndim == 4
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"expected a tensor (3, H, W) or (N, 3, H, W), got shape {tuple(image.shape)}")
        t = t.cpu()
        return (t.contiguous() if t.dtype == torch.uint8 else check_range(t.float())), batched
    raise TypeError(
        f"cannot predict on {type(image).__name__}: pass a path, a PIL image, an HxWx3 uint8 array or a float tensor"
    )


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """Shape: (H, W), (H, W, 3) or (H, W, 4) -> (3, H, W) uint8 or float."""
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    arr = arr[..., :3]
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = np.array(arr, order="C")  # torch.from_numpy needs a writable, contiguous buffer
    t = torch.from_numpy(arr).permute(2, 0, 1)
    if arr.dtype == np.uint8:
        return t
    if arr.dtype == np.uint16:  # 16-bit frames (imageio, OpenCV): scale by bit depth, not clip
        return t.to(torch.int32).float() / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return t.float()
    raise ValueError(f"expected a uint8 (0..255), uint16 (0..65535) or float (0..1) array, got {arr.dtype}")


def check_range(t: torch.Tensor) -> torch.Tensor:
    if t.numel() and (float(t.max()) > 1.0 + 1e-3 or float(t.min()) < -1e-3):
        raise ValueError("float images must hold RGB values in [0, 1] (divide 0..255 values by 255)")
    return t.contiguous()
