"""Cityscapes, Foggy Cityscapes and Rain Cityscapes (19 trainIds; labels from gtFine).

All three read labels from ``gtFine/{split}/{city}/{frame}_gtFine_labelIds.png`` and map the
labelIds to the 19 trainIds exactly as cityscapesScripts' ``helpers/labels.py`` does (every
other id, and 255, which is where a license plate's id -1 would land in an 8-bit PNG,
becomes 255 = ignore; a value above 33 other than 255 is a DataError). ``{frame}`` is
``{city}_{seq:06d}_{frame:06d}``.

- ``cityscapes``: ``leftImg8bit/{split}/{city}/{frame}_leftImg8bit.png``
- ``foggy-cityscapes`` (Sakaridis et al., leftImg8bit_trainvaltest_foggy.zip):
  ``leftImg8bit_foggy/{split}/{city}/{frame}_leftImg8bit_foggy_beta_{beta}.png`` with beta
  in 0.005, 0.01, 0.02 (visibility about 600 m, 300 m, 150 m); ``beta=`` picks one
  (default 0.02, the densest) or a list. ``dbf=True`` reads Foggy Cityscapes-DBF
  (``leftImg8bit_foggyDBF/..._leftImg8bit_foggyDBF_beta_{beta}.png``).
- ``rain-cityscapes`` (Hu et al., leftImg8bit_trainval_rain.zip; train and val only):
  ``leftImg8bit_rain/{split}/{city}/{frame}_leftImg8bit_rain_alpha_{a}_beta_{b}_dropsize_{d}_pattern_{p}.png``
  published with (alpha, beta, dropsize) in (0.01, 0.005, 0.01), (0.02, 0.01, 0.005),
  (0.03, 0.015, 0.002) and patterns 1..12; ``alpha=``, ``beta=``, ``dropsize=``, ``pattern=``
  filter (a value or a list; None keeps all).

``root`` is the folder holding ``leftImg8bit*/`` and ``gtFine/`` (default
$UDISTILL_CITYSCAPES); ``gt_root=`` points elsewhere for gtFine when the foggy or rainy
images were unpacked apart. ``cities=[...]`` keeps some cities. ``label_scheme="camvid11"``
delivers labels in CamVid's 11 classes (see labels.py for the folds).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import FileDataset, Sample, apply_lut, as_list, find_images, lut_from_table, paired_samples, resolve_root
from .imageio import read_label
from .labels import CITYSCAPES19
from .registry import register_dataset

SPLITS = ("train", "val", "test")
FOG_BETAS = ("0.005", "0.01", "0.02")

# cityscapesScripts helpers/labels.py: labelId -> trainId for the 19 evaluated classes.
# Every other labelId 0..33 (unlabeled, ego vehicle, rectification border, out of roi,
# static, dynamic, ground, parking, rail track, guard rail, bridge, tunnel, polegroup,
# caravan, trailer) has trainId 255; license plate has id -1 (never drawn into labelIds PNGs).
LABELID_TO_TRAINID = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
_IGNORED_IDS = tuple(i for i in range(34) if i not in LABELID_TO_TRAINID)
_LUT = lut_from_table(LABELID_TO_TRAINID, valid_extra=(*_IGNORED_IDS, 255))

_FRAME = re.compile(r"^(?P<frame>.+?_\d{6}_\d{6})_leftImg8bit(?P<suffix>.*)$")
_RAIN = re.compile(
    r"^_rain_alpha_(?P<alpha>[0-9.]+)_beta_(?P<beta>[0-9.]+)_dropsize_(?P<dropsize>[0-9.]+)_pattern_(?P<pattern>\d+)$"
)


class Cityscapes(FileDataset):
    dataset_name = "cityscapes"
    native_scheme = CITYSCAPES19

    def read_native_label(self, path: Path) -> np.ndarray:
        return apply_lut(read_label(path), _LUT, path, "Cityscapes labelIds (0..33)")


class FoggyCityscapes(Cityscapes):
    dataset_name = "foggy-cityscapes"


class RainCityscapes(Cityscapes):
    dataset_name = "rain-cityscapes"


def _scan(
    root: Path, gt_root: Path, image_folder: str, split: str, cities, accept, strict: bool, problems: list
) -> list[Sample]:
    """Images under ``root/image_folder/split/<city>/`` whose suffix ``accept`` takes, paired with gtFine."""
    if split not in SPLITS:
        raise DataError(f"cityscapes: unknown split '{split}' (known: {', '.join(SPLITS)})")
    split_dir = root / image_folder / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: image folder not found (expected {image_folder}/{split}/<city>/ under the root)")
    gt_dir = gt_root / "gtFine" / split
    if not gt_dir.is_dir():
        raise DataError(f"{gt_dir}: gtFine label folder not found")
    keep = as_list(cities)
    samples = []
    for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if keep is not None and city_dir.name not in keep:
            continue
        frames = ((image, _FRAME.match(image.stem)) for image in find_images(city_dir, "*_leftImg8bit*"))
        pairs = (
            (image, gt_dir / city_dir.name / f"{m.group('frame')}_gtFine_labelIds.png")
            for image, m in frames
            if m is not None and accept(m.group("suffix"))
        )
        samples += paired_samples(pairs, strict, problems)
    return samples


def _roots(root, gt_root) -> tuple[Path, Path]:
    root = resolve_root(root, "cityscapes", "UDISTILL_CITYSCAPES")
    gt = root if gt_root is None else resolve_root(gt_root, "cityscapes gtFine", "UDISTILL_CITYSCAPES")
    return root, gt


@register_dataset("cityscapes")
def build_cityscapes(
    split="train", root=None, shift=None, size=None, seed=0, cities=None, gt_root=None, label_scheme=None, strict=True
) -> Cityscapes:
    root, gt = _roots(root, gt_root)
    problems: list = []
    samples = _scan(root, gt, "leftImg8bit", split, cities, lambda s: s == "", strict, problems)
    return Cityscapes(
        root=root,
        split=split,
        samples=samples,
        shift=shift,
        size=size,
        seed=seed,
        label_scheme=label_scheme,
        problems=problems,
        options={"cities": as_list(cities), "gt_root": None if gt_root is None else str(gt)},
    )


def _beta_str(beta) -> str:
    try:
        value = float(beta)
    except (TypeError, ValueError):
        value = None
    for b in FOG_BETAS:
        if value is not None and abs(value - float(b)) < 1e-9:
            return b
    raise DataError(f"foggy-cityscapes: beta must be one of {', '.join(FOG_BETAS)}, got {beta!r}")


@register_dataset("foggy-cityscapes")
def build_foggy_cityscapes(
    split="train",
    root=None,
    shift=None,
    size=None,
    seed=0,
    beta=0.02,
    dbf=False,
    cities=None,
    gt_root=None,
    label_scheme=None,
    strict=True,
) -> FoggyCityscapes:
    betas = [_beta_str(b) for b in as_list(beta)]
    kind = "foggyDBF" if dbf else "foggy"
    suffixes = {f"_{kind}_beta_{b}" for b in betas}
    root, gt = _roots(root, gt_root)
    problems: list = []
    samples = _scan(root, gt, f"leftImg8bit_{kind}", split, cities, lambda s: s in suffixes, strict, problems)
    return FoggyCityscapes(
        root=root,
        split=split,
        samples=samples,
        shift=shift,
        size=size,
        seed=seed,
        label_scheme=label_scheme,
        problems=problems,
        empty_hint=f"no *_leftImg8bit_{kind}_beta_{{{','.join(betas)}}}.png files",
        options={
            "beta": betas,
            "dbf": bool(dbf),
            "cities": as_list(cities),
            "gt_root": None if gt_root is None else str(gt),
        },
    )


def parse_rain_suffix(suffix: str) -> dict | None:
    """'_rain_alpha_0.01_beta_0.005_dropsize_0.01_pattern_1' -> {'alpha': 0.01, ..., 'pattern': 1}."""
    m = _RAIN.match(suffix)
    if m is None:
        return None
    try:
        return {
            "alpha": float(m["alpha"]),
            "beta": float(m["beta"]),
            "dropsize": float(m["dropsize"]),
            "pattern": int(m["pattern"]),
        }
    except ValueError:
        return None


@register_dataset("rain-cityscapes")
def build_rain_cityscapes(
    split="train",
    root=None,
    shift=None,
    size=None,
    seed=0,
    alpha=None,
    beta=None,
    dropsize=None,
    pattern=None,
    cities=None,
    gt_root=None,
    label_scheme=None,
    strict=True,
) -> RainCityscapes:
    if split == "test":
        raise DataError("rain-cityscapes: only the train and val splits were published")
    filters = {}
    for key, value, cast in (
        ("alpha", alpha, float),
        ("beta", beta, float),
        ("dropsize", dropsize, float),
        ("pattern", pattern, int),
    ):
        values = as_list(value)
        if values is not None:
            try:
                filters[key] = [cast(v) for v in values]
            except (TypeError, ValueError):
                raise DataError(
                    f"rain-cityscapes: {key} must be a number or a list of numbers, got {value!r}"
                ) from None

    def accept(suffix: str) -> bool:
        params = parse_rain_suffix(suffix)
        if params is None:
            return False
        return all(any(abs(params[k] - v) < 1e-9 for v in vs) for k, vs in filters.items())

    root, gt = _roots(root, gt_root)
    problems: list = []
    samples = _scan(root, gt, "leftImg8bit_rain", split, cities, accept, strict, problems)
    return RainCityscapes(
        root=root,
        split=split,
        samples=samples,
        shift=shift,
        size=size,
        seed=seed,
        label_scheme=label_scheme,
        problems=problems,
        empty_hint=f"no rain images match {filters}" if filters else None,
        options={
            **{k: filters.get(k) for k in ("alpha", "beta", "dropsize", "pattern")},
            "cities": as_list(cities),
            "gt_root": None if gt_root is None else str(gt),
        },
    )
