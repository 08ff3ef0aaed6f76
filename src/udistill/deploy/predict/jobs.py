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

from ...data.imageio import IMAGE_EXTENSIONS  # the one list of image formats (predict, calibrate, data sets)
from ...errors import DataError, UdistillError

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


# --- what a job writes, and which existing files are ours ---------------------------------------

IMAGE_SUFFIXES = ("_seg.png", "_uncertainty.png", "_overlay.png")
LEGACY_KEYS = ("input", "image_score", "uncertainty_png_scale")  # a record from before "outputs"


@dataclass(frozen=True)
class Outputs:
    """A job's output files. ``record`` is written last and names the others (``outputs``):
    it exists only beside a complete set. ``journal`` (hidden, fixed name) holds the record
    while the set is being written, so a killed run leaves a mark naming its files."""

    files: tuple[Path, ...]
    record: Path

    @property
    def journal(self) -> Path:
        return self.record.with_name(f".{self.record.name}.pending")

    @property
    def partial(self) -> Path:
        """A video's frames done so far (hidden; kept when the run is interrupted)."""
        return self.record.with_name(f".{self.record.name}.partial.jsonl")

    @property
    def all(self) -> tuple[Path, ...]:
        return (*self.files, self.record)


def job_outputs(job: Job, out: Path, video_out: bool = False) -> Outputs:
    base = out / job.key
    if job.kind == "image":
        return Outputs(
            tuple(base.with_name(base.name + s) for s in IMAGE_SUFFIXES), base.with_name(base.name + ".json")
        )
    files = [base.with_name(base.name + ".jsonl")]
    if video_out:
        files.append(base.with_name(base.name + "_annotated.mp4"))
    # a video's record is hidden: its visible outputs stay the .jsonl and the .mp4
    return Outputs(tuple(files), base.with_name(f".{base.name}.video.json"))


def read_record(path: Path) -> dict | None:
    """A predict record (a dict naming an ``input``), or None when ``path`` is not one."""
    import json

    try:
        if not path.is_file():
            return None
        rec = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(rec, dict) and isinstance(rec.get("input"), str)):
        return None
    return rec if isinstance(rec.get("outputs"), list) or all(k in rec for k in LEGACY_KEYS) else None


def legacy_jsonl(path: Path) -> bool:
    """A video's .jsonl written before videos had a record: its first line is frame 0 of an input."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(first, dict) and first.get("frame") == 0 and isinstance(first.get("input"), str)


def owned_names(rec: dict | None, job: Job) -> set[str]:
    """The output file names a record vouches for."""
    if rec is None:
        return set()
    names = rec.get("outputs")
    if isinstance(names, list):
        return {n for n in names if isinstance(n, str)}
    if job.kind == "image" and all(k in rec for k in LEGACY_KEYS):
        return {Path(job.key).name + s for s in IMAGE_SUFFIXES}
    return set()


def _resolved(path: Path) -> Path:
    """``path.resolve()``, or the absolute path for a symbolic-link loop (reported when read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def check_ownership(jobs: Sequence[Job], out: Path, video_out: bool = False) -> None:
    """Refuse (one line naming the file) to write over a file predict did not create.

    An existing output is ours when the job's record, or the journal of an interrupted run,
    names it; an input of this run is never written over. Folders in the way are not
    refused here: that frame is reported and skipped when its turn comes."""
    inputs = {_resolved(j.path) for j in jobs}
    for job in jobs:
        o = job_outputs(job, out, video_out)
        rec, journal = read_record(o.record), read_record(o.journal)
        ours = owned_names(rec, job) | owned_names(journal, job)
        for path in o.all:
            if not (path.is_file() or path.is_symlink()):
                continue
            if _resolved(path) in inputs:
                raise UdistillError(
                    f"{path}: is an input of this run and would be overwritten by the outputs of "
                    f"{job.path}; choose another --out"
                )
            if path == o.record:
                if rec is None:
                    raise UdistillError(f"{path}: exists and was not written by udistill predict; not overwriting it")
            elif path.name not in ours and not (path.suffix == ".jsonl" and legacy_jsonl(path)):
                raise UdistillError(
                    f"{path}: exists and is not part of an earlier predict result; not overwriting it "
                    "(choose another --out or move the file)"
                )
