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

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import DataError, UdistillError

RESIZE_MODES = ("stretch", "keep-aspect", "pad")
# Images with a side below this many pixels are refused: the model pads to its stride (16),
# so a smaller image would be mostly padding and its uncertainty map meaningless.
MIN_SIDE = 16
STRIP_ELEMENTS = 1 << 22  # floats per upsampling strip (16 MiB)


@dataclass(frozen=True)
class Geometry:
    """Where frames go before the model: ``size`` None = native resolution (no resizing)."""

    size: tuple[int, int] | None = None
    mode: str = "stretch"

    @classmethod
    def from_meta(cls, meta: dict, native: bool = False) -> Geometry:
        """From checkpoint metadata (``input_size``, ``resize``); checkpoints without them, or
        ``native=True``, run at the frame's own size (the behaviour before they were recorded)."""
        size = meta.get("input_size")
        if native or not size:
            return cls(None)
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and v >= MIN_SIDE for v in size)
        ):
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
    """Frames (N, 3, H, W), float in [0, 1] or uint8, -> float model input and the valid
    (h, w) region in it.

    Shape: x (N, 3, H, W) -> (N, 3, h', w') with h' >= h, w' >= w (padding only for ``pad``).
    """
    h, w = x.shape[-2:]
    sh, sw = geometry.scaled_size(h, w)
    if (sh, sw) != (h, w):
        x = _resize_uint8(x, (sh, sw)) if x.dtype == torch.uint8 else _resize(x, (sh, sw))
    elif x.dtype == torch.uint8:
        x = as_float(x)
    if geometry.mode == "pad" and geometry.size is not None and (sh, sw) != geometry.size:
        th, tw = geometry.size
        x = F.pad(x, (0, tw - sw, 0, th - sh), mode="replicate")
    return x, (sh, sw)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float stays."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def _resize_uint8(x: torch.Tensor, size: tuple[int, int], cols: int = 512) -> torch.Tensor:
    """The same antialiased resize for a uint8 frame without a float copy of it: the filter is
    separable, so the height pass runs on float column strips, the width pass on the short
    result. Shape: x (N, 3, H, W) uint8 -> (N, 3, size[0], size[1]) float."""
    n, c, h, w = x.shape
    tall = torch.empty((n, c, size[0], w), dtype=torch.float32)
    for c0 in range(0, w, cols):
        strip = as_float(x[..., c0 : c0 + cols])
        tall[..., c0 : c0 + cols] = F.interpolate(
            strip, size=(size[0], strip.shape[-1]), mode="bilinear", align_corners=False, antialias=True
        )
    return _resize(tall, size)


def _taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of bilinear interpolation, align_corners=False (as F.interpolate)."""
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0.0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample_strips(probs: torch.Tensor, u: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear upsampling of class probabilities (then argmax) and of U to ``size`` in
    bounded memory: F.interpolate(bilinear, align_corners=False), done separably (along the
    width once, then along the height a strip of rows at a time), so no C x H x W array of
    the full frame is ever held.

    Shape: probs (C, h, w), u (h, w) -> labels (H, W) int64, U (H, W) float32.
    """
    c, h, w = probs.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return probs.argmax(0).numpy().astype(np.int64), u.numpy().astype(np.float32, copy=False)
    stack = torch.cat([probs, u[None]], 0).float()[None]  # (1, C + 1, h, w)
    wide = F.interpolate(stack, size=(h, big_w), mode="bilinear", align_corners=False)[0]  # (C + 1, h, W)
    y0, y1, ay = _taps(big_h, h)
    labels = np.empty((big_h, big_w), np.int64)
    unc = np.empty((big_h, big_w), np.float32)
    rows = max(1, STRIP_ELEMENTS // ((c + 1) * max(big_w, 1)))
    for r0 in range(0, big_h, rows):
        r1 = min(big_h, r0 + rows)
        a = torch.from_numpy(ay[r0:r1]).view(1, -1, 1)
        top = wide.index_select(1, torch.from_numpy(y0[r0:r1]))
        bottom = wide.index_select(1, torch.from_numpy(y1[r0:r1]))
        full = top.mul_(1 - a).add_(bottom.mul_(a))  # (C + 1, rows, W)
        labels[r0:r1] = _argmax0(full[:c]).numpy()
        unc[r0:r1] = full[c].numpy()
    return labels, unc


def _argmax0(x: torch.Tensor) -> torch.Tensor:
    """argmax over the first dimension (first maximum wins), as a running comparison: much
    faster than ``argmax(0)`` over a strided (C, rows, W) block on a CPU.

    Shape: x (C, R, W) -> (R, W) int64.
    """
    best = x[0].clone()
    idx = torch.zeros(best.shape, dtype=torch.int64)
    for k in range(1, x.shape[0]):
        better = x[k] > best
        best = torch.where(better, x[k], best)
        idx.masked_fill_(better, k)
    return idx


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
