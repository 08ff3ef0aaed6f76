"""What the on-disk datasets (CamVid, Cityscapes and its foggy/rainy versions, A2D2) share.

:class:`FileDataset` holds a list of (image file, label file, name) pairs found by a loader,
reads them with :mod:`.imageio`, maps labels into the native scheme with a loader-specific
``read_native_label``, optionally into another scheme (``label_scheme=``), and optionally
applies a synthetic weather shift (``shift=``) from :mod:`.weather`.

Loaders find their files when they are built and raise :class:`~udistill.errors.DataError`
at once for a missing root or an image without a label (``strict=False`` records those in
``dataset.problems`` and skips the image instead: :func:`udistill.data.tools.check_dataset`
uses it to list every problem in one pass).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..seeds import item_seed
from .base import SegmentationDataset
from .imageio import read_image
from .labels import IGNORE_INDEX, SCHEMES, LabelScheme, mapping_lut

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path
    name: str


def resolve_root(root, dataset: str, env: str) -> Path:
    """``root`` or, when None, the folder in environment variable ``env``; must exist."""
    if root is None:
        root = os.environ.get(env)
        if not root:
            raise DataError(f"{dataset}: no root folder given (pass root=... or set {env})")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{path}: {dataset} root folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: {dataset} root must be a folder, found a file")
    return path


def check_shift(shift) -> str | None:
    """None for no shift (None, "none", "clean"), else a name weather.apply_shift knows."""
    if shift is None or str(shift).lower() in ("", "none", "clean"):
        return None
    from .weather import KNOWN_SHIFTS

    shift = str(shift).lower()
    if shift not in KNOWN_SHIFTS:
        raise DataError(f"unknown shift '{shift}' for real images (known: {', '.join(KNOWN_SHIFTS)})")
    return shift


def target_scheme(native: LabelScheme, label_scheme) -> LabelScheme:
    """The scheme items are delivered in: ``native`` unless ``label_scheme`` names another."""
    if label_scheme is None:
        return native
    name = label_scheme.name if isinstance(label_scheme, LabelScheme) else str(label_scheme).lower()
    if name not in SCHEMES:
        raise DataError(f"unknown label scheme '{label_scheme}' (known: {', '.join(sorted(SCHEMES))})")
    if name != native.name:
        try:
            mapping_lut(native.name, name)
        except ValueError:
            raise DataError(f"no label mapping from {native.name} to {name}") from None
    return SCHEMES[name]


def shift_seed(seed: int, name: str) -> int:
    """The seed of an image's synthetic weather, from the run seed and the item's name.

    Keyed by name (not index) so a frame gets the same synthetic weather whatever subset
    (sequence filter, split) it is loaded in.
    """
    return item_seed("shift", int(seed), name)


def lut_from_table(table: dict[int, int], valid_extra=(IGNORE_INDEX,)) -> np.ndarray:
    """(256,) int16 LUT: ``table`` entries, ``valid_extra`` values map to ignore, the rest -1 (invalid)."""
    lut = np.full(256, -1, np.int16)
    for v in valid_extra:
        lut[v] = IGNORE_INDEX
    for src, dst in table.items():
        lut[src] = dst
    return lut


def apply_lut(label: np.ndarray, lut: np.ndarray, path, what: str) -> np.ndarray:
    """Map uint8 ``label`` through ``lut`` (from :func:`lut_from_table`); -1 entries are errors."""
    label = np.asarray(label)
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise DataError(f"{path}: label values outside 0..255 are not {what} ids")
        label = label.astype(np.uint8)
    out = lut[label]
    if label.size and out.min() < 0:
        bad = np.unique(label[out < 0])[:8].tolist()
        raise DataError(f"{path}: label values {bad} are not valid {what} ids")
    return out.astype(np.uint8)


def files_digest(paths, root: Path) -> str:
    """sha256 (16 hex) of the sorted file names relative to ``root``: identifies the file list."""
    h = hashlib.sha256()
    for p in sorted(_rel(p, root) for p in paths):
        h.update(p.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def as_list(value) -> list | None:
    """None stays None; a scalar or a comma-separated string becomes a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


class FileDataset(SegmentationDataset):
    """Pairs of image and label files; subclasses implement :meth:`read_native_label`."""

    dataset_name = "files"
    native_scheme: LabelScheme

    def __init__(
        self,
        *,
        root: Path,
        split: str,
        samples: list[Sample],
        shift=None,
        size=None,
        seed: int = 0,
        label_scheme=None,
        options: dict | None = None,
        problems: list[tuple[str, str]] | None = None,
        empty_hint: str | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.samples = list(samples)
        self.shift = check_shift(shift)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.scheme = target_scheme(self.native_scheme, label_scheme)
        self._sky_id = self.native_scheme.classes.index("sky")
        # road-like classes of the native scheme: objects take the depth of their contact point
        self._ground_ids = [
            i for i, n in enumerate(self.native_scheme.classes) if n in ("road", "pavement", "sidewalk", "terrain")
        ]
        self._lut = (
            None if self.scheme is self.native_scheme else mapping_lut(self.native_scheme.name, self.scheme.name)
        )
        self.options = dict(options or {})
        self.problems = list(problems or [])
        # Empty is an error unless the files were found but recorded as problems (strict=False),
        # so that check_dataset can list them.
        if not self.samples and not self.problems:
            where = empty_hint or f"nothing matched under {self.root}"
            raise DataError(f"{self.root}: no {self.dataset_name} images found for split '{split}' ({where})")

    # -- the SegmentationDataset interface -------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def source(self, index: int) -> str:
        return str(self.samples[index].image)

    def describe(self) -> dict:
        return {
            "dataset": self.dataset_name,
            "split": self.split,
            "root": str(self.root.resolve()),
            "shift": self.shift,
            "seed": self.seed if self.shift else None,
            "size": list(self.size) if self.size else None,
            "scheme": self.scheme.name,
            "options": {k: v for k, v in sorted(self.options.items())},
            "count": len(self.samples),
            "files": files_digest([s.image for s in self.samples] + [s.label for s in self.samples], self.root),
        }

    def read_native_label(self, path: Path) -> np.ndarray:  # pragma: no cover - abstract
        """(H, W) uint8 label in ``native_scheme`` ids, 255 = ignore; DataError for bad values."""
        raise NotImplementedError

    def read_depth(self, sample: Sample):
        """Depth in metres where the layout carries it; real datasets have none."""
        return None

    def load(self, index: int):
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.read_native_label(sample.label)
        if label.shape != image.shape[:2]:
            raise DataError(
                f"{sample.label}: label is {label.shape[1]}x{label.shape[0]} pixels but its image "
                f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}"
            )
        depth = self.read_depth(sample)
        if self.shift is not None:
            from .weather import apply_shift

            # Without depth, weather uses a flat-ground estimate and puts pixels labelled
            # 0 at sky distance: hand it a sky mask in that convention.
            sky = ground = None
            if depth is None:
                sky = np.where(label == self._sky_id, 0, 1).astype(np.uint8)
                ground = np.isin(label, self._ground_ids)
            image = apply_shift(
                image, self.shift, depth=depth, seed=shift_seed(self.seed, sample.name), label=sky, ground=ground
            )
        if self._lut is not None:
            label = self._lut[label]
        return image, label, sample.name, depth

    def class_names(self) -> tuple[str, ...]:
        return self.scheme.classes


def find_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files (png/jpg) in ``folder`` matching ``pattern``, sorted."""
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def paired_sample(image: Path, label: Path, strict: bool, problems: list) -> Sample | None:
    """The sample for ``image`` if its ``label`` exists; otherwise a DataError (``strict``) or
    a problem recorded for ``data check``."""
    if label.exists():
        return Sample(image, label, image.stem)
    msg = f"{image}: image has no label ({label} not found)"
    if strict:
        raise DataError(msg)
    problems.append((str(image), msg))
    return None


def paired_samples(pairs: Iterable[tuple[Path, Path]], strict: bool, problems: list) -> list[Sample]:
    """The samples of the (image, label) ``pairs`` whose label exists (see paired_sample)."""
    found = (paired_sample(image, label, strict, problems) for image, label in pairs)
    return [s for s in found if s is not None]
