"""The ``"synthetic"`` data set: items rendered on the fly from ``(seed, split, index)``.

:func:`render` makes one scene from a seed; :class:`SyntheticDataset` derives each item's
seed (:func:`scene_seed`), renders it at the requested size and applies a weather shift
with the exact depth map (``new-city`` is a different style instead).
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ...seeds import item_seed
from .. import weather
from ..base import SegmentationDataset
from ..labels import CAMVID11
from ..registry import register_dataset
from .layout import build_scene
from .painter import Scene
from .shading import shade
from .styles import CAMVID_STYLE, NEW_CITY_STYLE, STYLES, Style

GENERATOR_VERSION = 1
NATIVE_SIZE = (360, 480)  # H, W
SPLIT_LENGTHS = {"train": 200, "val": 50, "test": 50}
KNOWN_SHIFTS: tuple[str, ...] = weather.KNOWN_SHIFTS + ("new-city",)


def render(
    height: int = NATIVE_SIZE[0],
    width: int = NATIVE_SIZE[1],
    seed=0,
    style: Style | str = "camvid",
    lights: bool = False,
):
    """Render one scene: ``(image uint8 HxWx3, label uint8 HxW, depth float32 HxW metres, lights)``.

    ``seed`` is anything :func:`numpy.random.default_rng` accepts. ``lights`` asks for the
    (H, W, 3) float32 linear emission image used by the dusk shift (else ``None``); it
    does not change the rest of the output.
    """
    if isinstance(style, str):
        try:
            style = STYLES[style]
        except KeyError:
            raise DataError(f"unknown synthetic style '{style}' (known: {', '.join(STYLES)})") from None
    rng = np.random.default_rng(seed)
    sc = Scene(int(height), int(width), rng, style)
    build_scene(sc)
    return shade(sc, lights)


def scene_seed(seed: int, split: str, index: int) -> int:
    """The 128-bit seed of the scene of item ``index`` of ``split`` (keyed by the generator version)."""
    return item_seed(f"udistill-synthetic-v{GENERATOR_VERSION}", int(seed), split, int(index), bits=128)


class SyntheticDataset(SegmentationDataset):
    """Procedural street scenes, rendered directly at ``size`` (see the module docstring)."""

    scheme = CAMVID11

    def __init__(
        self,
        split: str = "train",
        shift: str | None = None,
        size=None,
        seed: int = 0,
        length: int | None = None,
        first: int = 0,
    ):
        if split not in SPLIT_LENGTHS:
            raise DataError(f"synthetic: unknown split '{split}' (known: {', '.join(SPLIT_LENGTHS)})")
        if shift is not None and shift not in KNOWN_SHIFTS:
            raise DataError(f"synthetic: unknown shift '{shift}' (known: {', '.join(KNOWN_SHIFTS)})")
        if length is None:
            length = SPLIT_LENGTHS[split]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise DataError(f"synthetic: length must be a positive integer, got {length!r}")
        if size is None:
            size = NATIVE_SIZE
        try:
            h, w = int(size[0]), int(size[1])
        except (TypeError, ValueError, IndexError):
            raise DataError(f"synthetic: size must be (height, width), got {size!r}") from None
        if h < 16 or w < 16:
            raise DataError(f"synthetic: size must be at least 16x16, got {h}x{w}")
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise DataError(f"synthetic: seed must be an integer, got {seed!r}") from None
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
            raise DataError(f"synthetic: first must be an integer >= 0, got {first!r}")
        self.split = split
        self.shift = shift
        self.length = int(length)
        self.first = int(first)  # scenes first .. first + length - 1 of the split
        self.render_size = (h, w)
        self.size = None  # rendered at the requested size: the base class must not resize
        self.style = NEW_CITY_STYLE if shift == "new-city" else CAMVID_STYLE

    def __len__(self) -> int:
        return self.length

    def _index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic {self.split}: index {index} out of range (length {self.length})")
        return index

    def load(self, index: int):
        index = self._index(index) + self.first
        h, w = self.render_size
        s = scene_seed(self.seed, self.split, index)
        weather_shift = self.shift if self.shift in weather.KNOWN_SHIFTS else None
        image, label, depth, lights = render(h, w, s, self.style, lights=weather_shift in weather.DUSK_EXPOSURE)
        if weather_shift is not None:
            image = weather.apply_shift(image, weather_shift, depth, seed=s & 0x7FFFFFFF, lights=lights)
        return image, label, f"synthetic-{self.split}-{index:06d}", depth

    def name(self, index: int) -> str:
        return f"synthetic-{self.split}-{self._index(index) + self.first:06d}"

    def source(self, index: int) -> str:
        return f"synthetic({self.split}, shift={self.shift}, seed={self.seed})[{self._index(index) + self.first}]"

    def describe(self) -> dict:
        return {
            "class": type(self).__name__,
            "version": GENERATOR_VERSION,
            "split": self.split,
            "shift": self.shift,
            "size": list(self.render_size),
            "seed": self.seed,
            "len": self.length,
            **({"first": self.first} if self.first else {}),  # (absent when 0: fingerprints as before)
        }


@register_dataset("synthetic")
def build_synthetic(split, root=None, shift=None, size=None, seed=0, length=None, first=0, **options):
    """Builder registered as ``"synthetic"``. ``root`` is ignored (nothing on disk).

    Lengths: train 200, val 50, test 50 unless ``length`` is given; ``first`` skips that
    many scenes of the split (e.g. a second, disjoint block of validation scenes for a
    benchmark that must not touch the test split). ``size=(H, W)`` renders at that size
    directly (default 360x480). Unknown options raise DataError.
    """
    if options:
        raise DataError(f"synthetic: unknown option(s) {', '.join(sorted(options))} (known: length, first)")
    return SyntheticDataset(split=split, shift=shift, size=size, seed=seed, length=length, first=first)
