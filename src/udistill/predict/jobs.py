"""What ``udistill predict`` was asked to do: files, folders and videos expanded into jobs.

Folders are searched recursively in sorted order for files with an image extension; hidden
files and folders and symbolic links to folders are skipped (no loops); the output folder is
never searched. Two inputs with the same output stem get the extension (``x_jpg``) or a
counter appended.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, UdistillError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")


@dataclass(frozen=True)
class Job:
    kind: str  # "image" | "video"
    path: Path
    key: str  # output stem relative to --out (may contain sub-folders)
    from_folder: bool


def walk_images(root: Path, skip: Path | None) -> Iterator[Path]:
    """Image files under ``root``, sorted, without following symbolic links to folders."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield here / name


def plan_inputs(inputs: Sequence[str | Path], out: Path | None = None) -> list[Job]:
    """Expand files and folders into jobs with unique output stems."""
    skip = out.resolve() if out is not None else None
    jobs: list[Job] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: input not found")
        if p.is_dir():
            if skip is not None and p.resolve() == skip:
                raise UdistillError(f"{p}: the output folder (--out) must differ from the input folder")
            found = list(walk_images(p, skip))
            if not found:
                raise DataError(f"{p}: folder holds no image ({', '.join(IMAGE_EXTENSIONS)})")
            jobs += [Job("image", f, f.relative_to(p).with_suffix("").as_posix(), True) for f in found]
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            jobs.append(Job("video", p, p.stem, False))
        else:
            jobs.append(Job("image", p, p.stem, False))
    return _unique_keys(jobs)


def _unique_keys(jobs: list[Job]) -> list[Job]:
    taken: set[str] = set()
    unique = []
    for job in jobs:
        key = job.key
        if key in taken:
            key = f"{job.key}_{job.path.suffix.lstrip('.').lower() or 'file'}"
            n = 2
            while key in taken:
                key = f"{job.key}_{n}"
                n += 1
        taken.add(key)
        unique.append(Job(job.kind, job.path, key, job.from_folder))
    return unique
