"""Pictures of a prediction: palette PNG of labels, U heat map, overlay with a colour bar.

Why a display range: U of a good student is small (around 0.02-0.05 on in-distribution
frames), so a heat map on the full 0..1 scale is nearly black. Calibration stores
``display_range`` = [0, p99 of in-distribution U] in the checkpoint (``meta["ood"]``); maps
are drawn on that fixed scale, so they are comparable between frames and an OOD frame
saturates. Without it each frame is drawn on [0, its own 99th percentile] (not comparable
between frames; said so in the JSON record). The overlay carries a colour bar with the scale.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...colours import HEATMAP, colormap_lut
from ...data.labels import LabelScheme
from ...errors import UdistillError
from ...io import atomic_write_bytes

ROWS = 256  # rows per band when drawing large frames


def heatmap(u: np.ndarray, vmax: float = 1.0, cmap: str = HEATMAP, vmin: float = 0.0) -> np.ndarray:
    """(H, W) values on the scale vmin..vmax -> (H, W, 3) uint8 colours of ``cmap``
    (computed a band of rows at a time: no float copy of a large frame)."""
    u = np.asarray(u)
    span = max(float(vmax) - float(vmin), 1e-12)
    lut = colormap_lut(cmap)
    out = np.empty((*u.shape, 3), np.uint8)
    for r0 in range(0, u.shape[0], ROWS):
        idx = np.clip((u[r0 : r0 + ROWS].astype(np.float32) - float(vmin)) / span, 0.0, 1.0) * 255.0
        out[r0 : r0 + ROWS] = lut[np.round(idx).astype(np.uint8)]
    return out


def display_range(
    stored: Sequence[float] | None, u: np.ndarray, override: float | None = None
) -> tuple[tuple[float, float], str]:
    """The heat-map scale and where it came from: ``override`` (--uncertainty-max), else the
    calibrated ``stored`` range, else [0, the frame's 99th percentile]."""
    if override is not None:
        return (0.0, float(override)), "argument"
    if stored is not None:
        return (float(stored[0]), float(stored[1])), "calibration"
    return (0.0, max(float(np.percentile(u, 99)), 1e-6)), "frame_p99"


def overlay(rgb: np.ndarray, seg_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend in integer arithmetic, a band of rows at a time (no float copies of a large frame)."""
    a = int(round(float(alpha) * 256))
    out = np.empty(rgb.shape, np.uint8)
    for r0 in range(0, rgb.shape[0], ROWS):
        band = rgb[r0 : r0 + ROWS].astype(np.uint16) * (256 - a)
        band += seg_rgb[r0 : r0 + ROWS].astype(np.uint16) * a
        band += 128
        out[r0 : r0 + ROWS] = band >> 8
    return out


def segmentation_overlay(rgb: np.ndarray, labels: np.ndarray, scheme: LabelScheme, alpha: float = 0.5) -> np.ndarray:
    """The image blended with the class colours of ``labels``, colourised band by band.

    Shape: rgb (H, W, 3) uint8, labels (H, W) -> (H, W, 3) uint8.
    """
    out = np.empty(rgb.shape, np.uint8)
    for r0 in range(0, rgb.shape[0], ROWS):
        out[r0 : r0 + ROWS] = overlay(rgb[r0 : r0 + ROWS], scheme.colorize(labels[r0 : r0 + ROWS]), alpha)
    return out


def draw_colour_bar(img: np.ndarray, lo: float, hi: float, cmap: str = HEATMAP, label: str = "U") -> np.ndarray:
    """Draw a vertical colour bar for the scale lo..hi into the top-right corner of ``img``
    (in place; returned for chaining), with its end values written beside it when there is room.

    Shape: img (H, W, 3) uint8 -> the same array.
    """
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    bar_h = max(8, min(h - 4, h // 3))
    bar_w = max(3, w // 40)
    x1, y0 = w - 2, 2
    x0 = max(0, x1 - bar_w)
    ramp = colormap_lut(cmap)[np.linspace(255, 0, bar_h).round().astype(np.int64)]  # top = hi
    img[y0 : y0 + bar_h, x0:x1] = ramp[:, None, :]
    if w >= 96 and h >= 48:  # room for the numbers: draw them on a crop of the corner only
        texts = ((f"{label} {hi:.3g}", y0), (f"{lo:.3g}", y0 + bar_h - 11))
        left = max(0, x0 - 90)
        crop = Image.fromarray(np.ascontiguousarray(img[: y0 + bar_h + 2, left:x0]))
        draw = ImageDraw.Draw(crop)
        for text, y in texts:
            tw = int(draw.textlength(text))
            tx = max(0, crop.width - tw - 3)
            draw.rectangle((tx - 1, y, tx + tw + 1, y + 10), fill=(0, 0, 0))
            draw.text((tx, y - 1), text, fill=(255, 255, 255))
        img[: y0 + bar_h + 2, left:x0] = np.asarray(crop)
    return img


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def rgb_png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    return png_bytes(Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)))


def write_rgb_png(path: Path, arr: np.ndarray) -> None:
    atomic_write_bytes(path, rgb_png_bytes(arr))


def write_label_png(path: Path, labels: np.ndarray, scheme: LabelScheme) -> None:
    """Palette PNG: pixel values are class ids, the palette the scheme's colours."""
    atomic_write_bytes(path, label_png_bytes(labels, scheme))


def label_png_bytes(labels: np.ndarray, scheme: LabelScheme) -> bytes:
    """The palette PNG of :func:`write_label_png`, in memory (predict writes a frame's files as one set)."""
    from PIL import Image

    if scheme.num_classes > 255:
        raise UdistillError(f"cannot write a palette PNG for {scheme.num_classes} classes (at most 255)")
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    img = Image.frombuffer("P", (lab.shape[1], lab.shape[0]), lab.tobytes(), "raw", "P", 0, 1)
    img.putpalette(scheme.palette().reshape(-1).tolist())
    return png_bytes(img)


def histogram(labels: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels.reshape(-1), minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}
