"""A benchmark's run folder that reuses a finished run's stages by symbolic link (members, and
the run-level stages a student does not change), so that only what is studied is trained."""

from __future__ import annotations

from pathlib import Path


def linked_run(folder: Path, source: Path, shared: tuple[str, ...] = ("members",)) -> Path:
    """``folder`` (created) with each of ``shared`` that ``source`` has linked into it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in shared:
        link = folder / name
        if (source / name).exists() and not link.is_symlink() and not link.exists():
            link.symlink_to((source / name).resolve(), target_is_directory=(source / name).is_dir())
    return folder
