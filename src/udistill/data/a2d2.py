"""A2D2 (Audi Autonomous Driving Dataset), camera_lidar_semantic, mapped to Cityscapes' 19 trainIds.

Published layout (``root`` is the folder holding ``camera_lidar_semantic/`` or that folder)::

    camera_lidar_semantic/class_list.json            {"#ff0000": "Car 1", ...}  (55 colours)
    camera_lidar_semantic/20180807_145028/camera/cam_front_center/20180807145028_camera_frontcenter_000000091.png
    camera_lidar_semantic/20180807_145028/label/cam_front_center/20180807145028_label_frontcenter_000000091.png

(the camera folders also hold a .json per frame, and lidar/ the point clouds: both unused).
Labels are RGB colour codes. Each colour is looked up in class_list.json; the class name
(numbered variants such as "Car 1".."Car 4" grouped) goes through :data:`A2D2_TO_TRAINID`.
Classes with no Cityscapes counterpart become 255 = ignore; a colour that class_list.json
does not list is a DataError.

A2D2 publishes no split. ``split="all"`` reads every sequence; ``train``/``val``/``test``
assign whole sequences by a hash of the sequence name (sha256 % 100: below 70 train, below
85 val, else test), so a sequence's split never depends on which others are on disk. Of
the 23 published sequences this puts 19 in train, 20181016_095036 and 20181204_154421 in
val, 20181204_135952 and 20181204_170238 in test.
``sequences=[...]`` keeps only those sequences (with any split). ``cameras`` selects
cameras (default ``["front_center"]``; ``"all"`` for every ``cam_*`` folder present).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import FileDataset, as_list, find_images, paired_samples, resolve_root
from .imageio import read_color_label
from .labels import CITYSCAPES19, IGNORE_INDEX
from .registry import register_dataset

SPLITS = ("all", "train", "val", "test")
CAMERAS = ("front_center", "front_left", "front_right", "side_left", "side_right", "rear_center")
_SEQUENCE = re.compile(r"^\d{8}_\d{6}$")

# A2D2 class (numbered variants grouped) -> Cityscapes trainId; IGNORE_INDEX where Cityscapes
# has no evaluated class (its own guard rail, parking, ego vehicle, static... are ignored too).
A2D2_TO_TRAINID = {
    "Car": 13,
    "Bicycle": 18,
    "Pedestrian": 11,  # person
    "Truck": 14,
    "Small vehicles": 17,  # motorbikes and scooters -> motorcycle
    "Utility vehicle": 14,  # vans, tow/garbage trucks -> truck (closest)
    "Tractor": IGNORE_INDEX,  # no Cityscapes class
    "Traffic signal": 6,  # traffic light
    "Signal corpus": 6,  # traffic light housing: Cityscapes' light includes its box
    "Traffic sign": 7,
    "Electronic traffic": 7,  # electronic traffic signs
    "Irrelevant signs": IGNORE_INDEX,  # non-traffic signs: no evaluated class
    "Poles": 5,
    "Sidebars": IGNORE_INDEX,  # guard rails: ignored in Cityscapes
    "Grid structure": 4,  # fence
    "Road blocks": IGNORE_INDEX,  # barriers: Cityscapes 'static'
    "Traffic guide obj.": IGNORE_INDEX,  # bollards, pylons: 'static'
    "Obstacles / trash": IGNORE_INDEX,
    "Animals": IGNORE_INDEX,
    "RD normal street": 0,  # road and everything painted on or built into it
    "Drivable cobblestone": 0,
    "Slow drive area": 0,
    "RD restricted area": 0,
    "Speed bumper": 0,
    "Solid line": 0,
    "Dashed line": 0,
    "Zebra crossing": 0,
    "Painted driv. instr.": 0,
    "Curbstone": 1,  # Cityscapes counts the curb as sidewalk
    "Sidewalk": 1,
    "Non-drivable street": IGNORE_INDEX,  # ambiguous between road and sidewalk
    "Parking area": IGNORE_INDEX,  # Cityscapes 'parking' is ignored
    "Buildings": 2,
    "Nature object": 8,  # vegetation (A2D2 has no terrain class)
    "Sky": 10,
    "Ego car": IGNORE_INDEX,  # Cityscapes 'ego vehicle'
    "Blurred area": IGNORE_INDEX,
    "Rain dirt": IGNORE_INDEX,
}


def class_group(name: str) -> str:
    """'Car 1' -> 'Car'; 'Obstacles / trash' unchanged."""
    return re.sub(r"\s+\d+$", "", name.strip())


def split_of(sequence: str) -> str:
    bucket = int(hashlib.sha256(sequence.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "val" if bucket < 85 else "test"


def load_class_list(path: Path) -> dict[int, int]:
    """class_list.json -> {0xRRGGBB: trainId}. Classes not in A2D2_TO_TRAINID map to ignore."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: A2D2 class_list.json not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: class list is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: class list must be a non-empty JSON object of '#rrggbb': name")
    table = {}
    for colour, name in data.items():
        if not (isinstance(colour, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", colour) and isinstance(name, str)):
            raise DataError(f"{path}: bad class list entry {colour!r}: {name!r} (expected '#rrggbb': 'name')")
        table[int(colour[1:], 16)] = A2D2_TO_TRAINID.get(class_group(name), IGNORE_INDEX)
    return table


class A2D2(FileDataset):
    dataset_name = "a2d2"
    native_scheme = CITYSCAPES19

    def __init__(self, *, colour_table: dict[int, int], class_list: Path, **kw):
        self.colour_table = colour_table
        self.class_list = class_list
        keys = np.array(sorted(colour_table), np.int64)
        self._keys = keys
        self._values = np.array([colour_table[k] for k in keys], np.uint8)
        super().__init__(**kw)

    def read_native_label(self, path: Path) -> np.ndarray:
        rgb = read_color_label(path).astype(np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, inverse = np.unique(codes.ravel(), return_inverse=True)
        pos = np.searchsorted(self._keys, uniq).clip(0, len(self._keys) - 1)
        known = self._keys[pos] == uniq
        if not known.all():
            bad = ", ".join(f"#{c:06x}" for c in uniq[~known][:5])
            raise DataError(f"{path}: label colours {bad} are not in {self.class_list.name}")
        return self._values[pos][inverse].reshape(codes.shape)


def _camera_names(sequence_dir: Path, cameras) -> list[str]:
    if cameras == "all" or cameras == ["all"]:
        return sorted(p.name[len("cam_") :] for p in (sequence_dir / "camera").glob("cam_*") if p.is_dir())
    names = []
    for c in as_list(cameras):
        c = str(c).removeprefix("cam_")
        if c not in CAMERAS:
            raise DataError(f"a2d2: unknown camera '{c}' (known: {', '.join(CAMERAS)}, or 'all')")
        names.append(c)
    return names


@register_dataset("a2d2")
def build_a2d2(
    split="all",
    root=None,
    shift=None,
    size=None,
    seed=0,
    cameras=("front_center",),
    sequences=None,
    label_scheme=None,
    strict=True,
) -> A2D2:
    """A2D2 semantic segmentation; root defaults to $UDISTILL_A2D2. See the module docstring."""
    if split not in SPLITS:
        raise DataError(f"a2d2: unknown split '{split}' (known: {', '.join(SPLITS)})")
    root = resolve_root(root, "a2d2", "UDISTILL_A2D2")
    base = (
        root
        if (root / "class_list.json").exists() or root.name == "camera_lidar_semantic"
        else root / "camera_lidar_semantic"
    )
    if not base.is_dir():
        raise DataError(f"{base}: A2D2 camera_lidar_semantic folder not found")
    class_list = base / "class_list.json"
    table = load_class_list(class_list)
    keep = as_list(sequences)
    all_sequences = sorted(p.name for p in base.iterdir() if p.is_dir() and _SEQUENCE.match(p.name))
    if not all_sequences:
        raise DataError(f"{base}: no A2D2 sequence folders (YYYYMMDD_hhmmss) found")
    chosen = [s for s in all_sequences if (keep is None or s in keep) and (split == "all" or split_of(s) == split)]
    problems: list = []
    samples = []
    for seq in chosen:
        seq_dir = base / seq
        for cam in _camera_names(seq_dir, cameras):
            token = cam.replace("_", "")
            cam_dir = seq_dir / "camera" / f"cam_{cam}"
            label_dir = seq_dir / "label" / f"cam_{cam}"
            pairs = (
                (image, label_dir / image.name.replace(f"_camera_{token}_", f"_label_{token}_"))
                for image in find_images(cam_dir, f"*_camera_{token}_*.png")
            )
            samples += paired_samples(pairs, strict, problems)
    cams = cameras if isinstance(cameras, str) else list(cameras)
    return A2D2(
        root=root,
        split=split,
        samples=samples,
        shift=shift,
        size=size,
        seed=seed,
        label_scheme=label_scheme,
        problems=problems,
        colour_table=table,
        class_list=class_list,
        empty_hint=f"sequences for split '{split}': {', '.join(chosen) or 'none'}",
        options={"cameras": cams, "sequences": keep},
    )
