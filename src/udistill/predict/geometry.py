"""Frames to the model's training size and results back to the frame's size.

Why: a model sees objects at the scale it was trained at, and its OOD threshold was fitted
on uncertainty maps of that size. A checkpoint records ``input_size`` [H, W] and ``resize``
(how training images were brought to it); the predictor does the same to every frame, runs
the model, computes the image score on U *at the training size* (so the stored threshold
applies) and brings labels and U back to the frame's size for display and output.

Resize modes (``resize`` in the checkpoint):

- ``stretch``: the frame is resized to exactly [H, W] (what datasets do with ``size=``);
- ``keep-aspect``: scaled to fit inside [H, W] keeping its aspect ratio (the model takes any
  size; the score covers the whole scaled frame);
- ``pad``: as ``keep-aspect``, then padded (edge replication) to exactly [H, W]; the padding
  is cropped off before scoring and upsampling.

Downscaling is bilinear with antialiasing, as the datasets' ``size=`` does. Results come
back with plain bilinear interpolation of probabilities (then argmax) and of U, in row strips
so that memory stays bounded for very large frames (a 4000x6000 frame never holds C full-size
probability maps). :func:`aa_resize_matrix` expresses the antialiased resize as two small
matrices, so the ONNX graph (which has no antialiased Resize) computes the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, UdistillError

RESIZE_MODES = ("stretch", "keep-aspect", "pad")
# Images with a side below this many pixels are refused: the model pads to its stride (16),
# so a smaller image would be mostly padding and its uncertainty map meaningless.
MIN_SIDE = 16
STRIP_ELEMENTS = 1 << 22  # floats per upsampling strip (16 MiB)


@dataclass(frozen=True)
class Geometry:
    """Where frames go before the model: ``size`` None = native resolution (no resizing)."""

    size: Optional[tuple[int, int]] = None
    mode: str = "stretch"

    @classmethod
    def from_meta(cls, meta: dict, native: bool = False) -> "Geometry":
        """From checkpoint metadata (``input_size``, ``resize``); checkpoints without them, or
        ``native=True``, run at the frame's own size (the behaviour before they were recorded)."""
        size = meta.get("input_size")
        if native or not size:
            return cls(None)
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v >= MIN_SIDE for v in size)):
            raise UdistillError(f"checkpoint metadata input_size must be [H, W] with sides >= {MIN_SIDE}, got {size!r}")
        mode = meta.get("resize") or "stretch"
        if mode not in RESIZE_MODES:
            raise UdistillError(f"checkpoint metadata resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        return cls((int(size[0]), int(size[1])), mode)

    @property
    def native(self) -> bool:
        return self.size is None

    def scaled_size(self, h: int, w: int) -> tuple[int, int]:
        """The frame's size at the model's input (before any padding)."""
        if self.size is None:
            return h, w
        th, tw = self.size
        if self.mode == "stretch":
            return th, tw
        s = min(th / h, tw / w)
        return max(1, min(th, round(h * s))), max(1, min(tw, round(w * s)))

    def describe(self) -> str:
        return "native" if self.size is None else f"{self.size[0]}x{self.size[1]} ({self.mode})"


def check_frame_size(h: int, w: int, source: str = "image") -> None:
    """DataError for images below the documented minimum (:data:`MIN_SIDE`)."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(f"{source}: image is {w}x{h} pixels; udistill needs at least {MIN_SIDE}x{MIN_SIDE}")


def to_model(x: torch.Tensor, geometry: Geometry) -> tuple[torch.Tensor, tuple[int, int]]:
    """Frames (N, 3, H, W) in [0, 1] -> model input and the valid (h, w) region in it.

    Shape: x (N, 3, H, W) -> (N, 3, h', w') with h' >= h, w' >= w (padding only for ``pad``).
    """
    h, w = x.shape[-2:]
    sh, sw = geometry.scaled_size(h, w)
    if (sh, sw) != (h, w):
        x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    if geometry.mode == "pad" and geometry.size is not None and (sh, sw) != geometry.size:
        th, tw = geometry.size
        x = F.pad(x, (0, tw - sw, 0, th - sh), mode="replicate")
    return x, (sh, sw)


def _taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of bilinear interpolation, align_corners=False (as F.interpolate)."""
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0.0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample_strips(probs: torch.Tensor, u: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear upsampling of class probabilities (then argmax) and of U to ``size``, a strip of
    rows at a time: exact F.interpolate(bilinear, align_corners=False) in bounded memory.

    Shape: probs (C, h, w), u (h, w) -> labels (H, W) int64, U (H, W) float32.
    """
    c, h, w = probs.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return probs.argmax(0).numpy().astype(np.int64), u.numpy().astype(np.float32, copy=False)
    y0, y1, ay = _taps(big_h, h)
    x0, x1, ax = _taps(big_w, w)
    x0t, x1t, axt = torch.from_numpy(x0), torch.from_numpy(x1), torch.from_numpy(ax)
    labels = np.empty((big_h, big_w), np.int64)
    unc = np.empty((big_h, big_w), np.float32)
    stack = torch.cat([probs, u[None]], 0).float()  # (C + 1, h, w)
    rows = max(1, STRIP_ELEMENTS // ((c + 1) * max(big_w, 1)))
    for r0 in range(0, big_h, rows):
        r1 = min(big_h, r0 + rows)
        a = torch.from_numpy(ay[r0:r1]).view(1, -1, 1)
        v = stack[:, torch.from_numpy(y0[r0:r1])] * (1 - a) + stack[:, torch.from_numpy(y1[r0:r1])] * a  # (C+1, rows, w)
        full = v[..., x0t] * (1 - axt) + v[..., x1t] * axt  # (C+1, rows, W)
        labels[r0:r1] = full[:c].argmax(0).numpy()
        unc[r0:r1] = full[c].numpy()
    return labels, unc


def aa_resize_matrix(in_size: torch.Tensor, out_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of antialiased bilinear resizing along one axis (PyTorch's
    and Pillow's triangle filter, support scaled by the downscale factor), built from
    tensor ops only so that it exports to ONNX with a dynamic ``in_size``.

    Shape: in_size a 0-d integer tensor -> (out_size, in_size) float32, rows sum to 1.
    """
    n_in = in_size.to(torch.float32)
    scale = n_in / out_size
    support = torch.clamp(scale, min=1.0)
    centre = (torch.arange(out_size, dtype=torch.float32) + 0.5) * scale  # (out,)
    j = torch.arange(in_size, dtype=torch.float32) + 0.5
    wgt = torch.relu(1.0 - torch.abs(j[None, :] - centre[:, None]) / support)
    return wgt / wgt.sum(1, keepdim=True)


def aa_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize by two matrix products (ONNX-exportable).

    Shape: x (N, 3, H, W) -> (N, 3, size[0], size[1]).
    """
    h, w = x.shape[-2], x.shape[-1]
    h_t = torch.as_tensor(h) if not isinstance(h, torch.Tensor) else h
    w_t = torch.as_tensor(w) if not isinstance(w, torch.Tensor) else w
    ry = aa_resize_matrix(h_t, size[0])  # (h', H)
    rx = aa_resize_matrix(w_t, size[1])  # (w', W)
    return torch.matmul(torch.matmul(ry, x), rx.transpose(0, 1))

