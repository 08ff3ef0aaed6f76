"""``images``: a folder, or a list file, of unlabelled images (a user's own camera frames).

Why: the out-of-distribution alarm is only as good as the frames it was calibrated and
tested on, and a fleet's frames come without labels. This dataset lets such frames be used
wherever a data set is: as the in-distribution set of ``udistill calibrate --images DIR``,
as an OOD set in ``evaluate`` (``data.shifts: [{name: fleet, dataset: images, root: DIR}]``,
OOD metrics only: every label is 255 = ignore, so segmentation metrics are empty), and by
``udistill ood-report``.

``root`` is either

- a folder: the image files in it (the types ``predict`` reads,
  :data:`~udistill.data.imageio.IMAGE_EXTENSIONS`), sorted by name (``recursive=True``
  walks sub-folders); or
- a list file (any text file): one image path per line, relative to the list file's folder
  unless absolute; blank lines and lines starting with ``#`` are skipped.

There are no splits: every ``split`` gives the same images. ``label_scheme`` (default
``camvid11``) only names the classes items are delivered in; ``shift=`` applies a synthetic
weather shift (flat-ground depth estimate, as for real images without depth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import SegmentationDataset
from .files import check_shift, files_digest, shift_seed
from .imageio import IMAGE_EXTENSIONS, read_frame, read_image
from .labels import CAMVID11, IGNORE_INDEX, SCHEMES, LabelScheme
from .registry import register_dataset


def list_images(root, recursive: bool = False) -> tuple[Path, list[Path]]:
    """(base folder, sorted image files) for a folder or a list file; DataError when empty."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{path}: image folder or list file not found")
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        base = path
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    else:
        base = path.parent
        files = _read_list(path, base)
        if not files:
            raise DataError(f"{path}: list file names no images")
    return base, files


def _read_list(path: Path, base: Path) -> list[Path]:
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text list of image paths (is it an image? pass its folder)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read list file ({exc.strerror})") from None
    files = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise DataError(f"{path}: line {n}: image {p} not found")
        files.append(p)
    return files


class ImageFolder(SegmentationDataset):
    """Unlabelled images; items carry a label of all 255 (ignore) so every consumer works."""

    dataset_name = "images"

    def __init__(
        self,
        root,
        *,
        split: str = "test",
        shift=None,
        size=None,
        seed: int = 0,
        label_scheme=None,
        recursive: bool = False,
    ):
        self.root, self.files = list_images(root, recursive=recursive)
        self.source_path = Path(root).expanduser()
        self.split = split
        self.shift = check_shift(shift)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.scheme = _scheme(label_scheme)
        self.recursive = bool(recursive)

    def __len__(self) -> int:
        return len(self.files)

    def drop_unreadable(self) -> list[str]:
        """Decode every file as ``predict`` would (:func:`~udistill.data.imageio.read_frame`),
        keep the readable ones and return one line per dropped file (``<file>: <problem>``).

        Why: one corrupt or too small frame among a fleet's thousands must not end a
        calibration, nor silently enter it with a meaningless score."""
        keep, dropped = [], []
        for path in self.files:
            try:
                read_frame(path)
            except DataError as exc:
                dropped.append(str(exc))
                continue
            keep.append(path)
        self.files = keep
        return dropped

    def source(self, index: int) -> str:
        return str(self.files[index])

    def describe(self) -> dict:
        return {
            "dataset": self.dataset_name,
            "root": str(self.source_path.resolve()),
            "shift": self.shift,
            "seed": self.seed if self.shift else None,
            "size": list(self.size) if self.size else None,
            "scheme": self.scheme.name,
            "options": {"recursive": self.recursive},
            "count": len(self.files),
            "files": files_digest(self.files, self.root),
        }

    def load(self, index: int):
        path = self.files[index]
        image = read_image(path)
        name = _name(path, self.root)
        if self.shift is not None:
            from .weather import apply_shift

            image = apply_shift(image, self.shift, seed=shift_seed(self.seed, name))
        label = np.full(image.shape[:2], IGNORE_INDEX, np.uint8)
        return image, label, name, None

    def class_names(self) -> tuple[str, ...]:
        return self.scheme.classes


def _name(path: Path, base: Path) -> str:
    """The item name: the path under ``base`` without suffix (unique inside a recursive walk)."""
    try:
        rel = path.relative_to(base)
    except ValueError:
        return path.stem
    return rel.with_suffix("").as_posix()


def _scheme(label_scheme) -> LabelScheme:
    if label_scheme is None:
        return CAMVID11
    name = label_scheme.name if isinstance(label_scheme, LabelScheme) else str(label_scheme).lower()
    if name not in SCHEMES:
        raise DataError(f"images: unknown label scheme '{label_scheme}' (known: {', '.join(sorted(SCHEMES))})")
    return SCHEMES[name]


@register_dataset("images")
def build_images(split, root=None, shift=None, size=None, seed=0, label_scheme=None, recursive=False, **options):
    """Builder for the registry; see the module docstring. Unknown options raise DataError."""
    if options:
        raise DataError(f"images: unknown option(s) {', '.join(sorted(options))} (known: label_scheme, recursive)")
    if root is None:
        raise DataError("images: no root given (pass root=FOLDER or a list file)")
    return ImageFolder(
        root, split=split, shift=shift, size=size, seed=seed, label_scheme=label_scheme, recursive=recursive
    )
