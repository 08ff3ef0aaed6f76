"""Reading images and label maps from disk with one clear error per bad file.

Pillow decodes; every failure (missing, empty, truncated, not an image, decompression
bomb, wrong mode, too small) becomes a :class:`~udistill.errors.DataError` naming the file.

Why one reader: ``predict``, ``calibrate --images``, ``ood-report``, int8 calibration and
every data set decode through :func:`read_image` / :func:`read_frame`, so a frame gives the
same pixels (and the same image score) everywhere. Images come out as (H, W, 3) uint8:

- upright as every viewer shows them (EXIF orientation applied);
- scaled by their bit depth: 16-bit grayscale (``I;16``, or ``I`` holding 0..65535) maps
  65535 to 255 instead of clipping everything above 255 to white; 16-bit RGB keeps its
  high byte (Pillow); float images (``F``, e.g. float TIFF) must hold values in [0, 1];
- the same file types everywhere (:data:`IMAGE_EXTENSIONS`, used for folder listings).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

# The one list of image file types for folder listings (predict, the ``images`` data set,
# calibrate --images, ood-report); anything Pillow decodes, lower case, with the dot.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# The smallest side a frame fed to a model may have (a 1x1 frame has no scene to segment
# and its image score means nothing); predict, calibrate and ood-report refuse smaller ones.
MIN_SIDE = 16

_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")
_ORIENTATION = 0x0112  # the EXIF tag

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
            # a damaged EXIF block is ignored (as viewers ignore it), not a warning per frame
            warnings.filterwarnings("ignore", message="(?i)corrupt exif", category=UserWarning)
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


def read_image(path: str | Path, min_side: int = 0) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8, upright and scaled by bit depth (see the module
    docstring). Grayscale, RGBA and palette images are converted to RGB. ``min_side``: a
    DataError for images with a smaller side (labelled data sets check sizes against their
    labels instead, so the default is none)."""
    path = Path(path)
    rgb = _read_rgb(path, "image")
    check_min_side(rgb.shape[0], rgb.shape[1], str(path), min_side)
    return rgb


def read_frame(path: str | Path) -> np.ndarray:
    """A frame for a model (predict, calibrate --images, ood-report): :func:`read_image` with
    the :data:`MIN_SIDE` minimum, so each of them accepts and refuses the same files."""
    return read_image(path, MIN_SIDE)


def check_min_side(h: int, w: int, source: str = "image", min_side: int = MIN_SIDE) -> None:
    """DataError naming ``source`` for an image with a side below ``min_side``."""
    if h < min_side or w < min_side:
        raise DataError(f"{source}: image is {w}x{h} pixels; udistill needs at least {min_side}x{min_side}")


def to_rgb8(img: Image.Image, source: str = "image") -> np.ndarray:
    """A PIL image -> (H, W, 3) uint8: EXIF orientation applied, scaled by bit depth.

    Why: ``convert("RGB")`` clips 16-bit grayscale to 0..255 (a mid-grey frame becomes
    white) and ignores EXIF orientation (a portrait photo is segmented sideways)."""
    img = _upright(img)
    mode = img.mode
    try:
        if mode in _GREY16 or mode == "I":
            arr = np.asarray(img).astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise DataError(f"{source}: {mode} image values outside 0..65535 (32-bit images are not supported)")
            grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        if mode == "F":
            arr = np.asarray(img, dtype=np.float64)
            if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
                raise DataError(f"{source}: float image values must lie in [0, 1]")
            grey = np.round(arr * 255.0).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        if mode != "RGB":
            img = img.convert("RGB")
        return np.array(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot convert a {mode} image to RGB ({exc})") from None


def _upright(img: Image.Image) -> Image.Image:
    """The image as viewers show it (EXIF orientation); a damaged EXIF block is ignored, as
    viewers ignore it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns "Corrupt EXIF data" on its way to ignoring it
            if img.getexif().get(_ORIENTATION, 1) in (1, None):
                return img  # upright already: no copy of a large frame
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - EXIF parsing raises many types; the pixels are fine
        return img


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
    try:
        return to_rgb8(img, str(path))
    finally:
        img.close()
