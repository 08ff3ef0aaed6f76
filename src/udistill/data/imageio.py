"""Reading images and label maps from disk with one clear error per bad file.

Pillow decodes; every failure (missing, empty, truncated, not an image, decompression
bomb, wrong mode) becomes a :class:`~udistill.errors.DataError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

# Larger images than this are refused as potential decompression bombs (Pillow's default
# limit warns at ~89 Mpx; 20000x20000 = 400 Mpx must fail fast, before decoding).
MAX_PIXELS = 64_000_000


def _open(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_dir():
        raise DataError(f"{path}: {what} path is a folder, not a file")
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: {what} is an empty file")
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from None
    img = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"{path}: {what} is {w}x{h} pixels, over the {MAX_PIXELS:,} pixel limit (decompression bomb?)"
                )
            img.load()
    except BaseException as exc:
        if img is not None:  # do not leak the file handle of a half-read image
            img.close()
        if isinstance(exc, DataError):
            raise
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise DataError(f"{path}: {what} is too large to decode safely (decompression bomb?)") from None
        if isinstance(exc, (OSError, SyntaxError, ValueError)):
            raise DataError(f"{path}: {what} is corrupt or not an image ({exc})") from None
        raise
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8. Grayscale and RGBA are converted to RGB."""
    return _read_rgb(Path(path), "image")


def read_label(path: str | Path) -> np.ndarray:
    """Read a single-channel label map as (H, W) uint8 (palette PNGs give their indices)."""
    path = Path(path)
    img = _open(path, "label")
    if img.mode in ("L", "P"):
        arr = np.array(img)
    elif img.mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(img).astype(np.int64)
        if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
            raise DataError(f"{path}: label values outside 0..255 (max {arr.max()})")
        arr = arr.astype(np.uint8)
    else:
        raise DataError(f"{path}: label must be a single-channel PNG, got mode {img.mode}")
    return arr


def read_color_label(path: str | Path) -> np.ndarray:
    """Read a colour-coded label image (A2D2) as (H, W, 3) uint8."""
    return _read_rgb(Path(path), "label")


def _read_rgb(path: Path, what: str) -> np.ndarray:
    img = _open(path, what)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)
