"""Cityscapes, Foggy Cityscapes, Rain Cityscapes: published layout, labelId -> trainId, filters."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.data import build_dataset
from udistill.data.labels import CAMVID11, CITYSCAPES19
from udistill.errors import DataError

H, W = 4, 40
FRAMES = {
    "train": {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bochum": ["bochum_000000_000313"]},
    "val": {"frankfurt": ["frankfurt_000000_000294"]},
}
BETAS = ("0.005", "0.01", "0.02")
RAIN = [("0.01", "0.005", "0.01"), ("0.02", "0.01", "0.005"), ("0.03", "0.015", "0.002")]

# cityscapesScripts helpers/labels.py, labelId 0..33 -> trainId, written out independently
# of the implementation's table.
EXPECTED_TRAINID = [
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    0,
    1,
    255,
    255,
    2,
    3,
    4,
    255,
    255,
    255,
    5,
    255,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    255,
    255,
    16,
    17,
    18,
]


def _png(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def all_ids_label() -> np.ndarray:
    label = np.full((H, W), 7, np.uint8)
    label[0, :34] = np.arange(34)
    label[0, 34] = 255  # license plate's id -1 as an 8-bit value
    return label


def write_cityscapes(root: Path, foggy=True, rain=True, label=None, gt=True) -> Path:
    """Tiny Cityscapes + Foggy + Rain Cityscapes in the published folder and file names."""
    rng = np.random.default_rng(0)
    for split, cities in FRAMES.items():
        for city, frames in cities.items():
            for frame in frames:
                image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
                _png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", image)
                if gt:
                    g = root / "gtFine" / split / city
                    _png(g / f"{frame}_gtFine_labelIds.png", all_ids_label() if label is None else label)
                    _png(g / f"{frame}_gtFine_instanceIds.png", np.zeros((H, W)))
                    _png(g / f"{frame}_gtFine_color.png", np.zeros((H, W, 3)))
                    (g / f"{frame}_gtFine_polygons.json").write_text("{}")
                if foggy:
                    for beta in BETAS:
                        _png(
                            root / "leftImg8bit_foggy" / split / city / f"{frame}_leftImg8bit_foggy_beta_{beta}.png",
                            image,
                        )
                if rain:
                    for pattern in (1, 2):
                        for a, b, d in RAIN:
                            name = f"{frame}_leftImg8bit_rain_alpha_{a}_beta_{b}_dropsize_{d}_pattern_{pattern}.png"
                            _png(root / "leftImg8bit_rain" / split / city / name, image)
    return root


def test_every_label_id_maps_to_the_official_train_id(tmp_path):
    root = write_cityscapes(tmp_path, foggy=False, rain=False)
    ds = build_dataset("cityscapes", "train", root=root)
    assert ds.scheme is CITYSCAPES19 and len(ds) == 3
    label = ds[0]["label"]
    assert label.dtype == torch.int64
    assert label[0, :34].tolist() == EXPECTED_TRAINID
    assert label[0, 34].item() == 255
    assert (label[1:] == 0).all()  # labelId 7 = road = trainId 0
    assert [ds[i]["name"] for i in range(3)] == [
        "aachen_000000_000019_leftImg8bit",
        "aachen_000001_000019_leftImg8bit",
        "bochum_000000_000313_leftImg8bit",
    ]
    assert len(build_dataset("cityscapes", "val", root=root)) == 1
    assert len(build_dataset("cityscapes", "train", root=root, cities=["bochum"])) == 1


@pytest.mark.parametrize("value", [34, 35, 100, 254])
def test_label_id_above_33_is_an_error(tmp_path, value):
    label = np.full((H, W), 7, np.uint8)
    label[2, 5] = value
    root = write_cityscapes(tmp_path, foggy=False, rain=False, label=label)
    with pytest.raises(DataError, match=rf"aachen_000000_000019_gtFine_labelIds\.png.*\[{value}\]"):
        build_dataset("cityscapes", "train", root=root)[0]


def test_camvid11_label_scheme(tmp_path):
    root = write_cityscapes(tmp_path, foggy=False, rain=False)
    ds = build_dataset("cityscapes", "train", root=root, label_scheme="camvid11")
    assert ds.scheme is CAMVID11
    got = ds[0]["label"][0]
    # labelId -> CamVid-11 via trainId (road, sidewalk->pavement, building, wall->building,
    # fence, pole, light and sign -> sign-symbol, vegetation->tree, terrain->ignore, sky, ...)
    by_id = {
        7: 3,
        8: 4,
        11: 1,
        12: 1,
        13: 7,
        17: 2,
        19: 6,
        20: 6,
        21: 5,
        22: 255,
        23: 0,
        24: 9,
        25: 10,
        26: 8,
        27: 8,
        28: 8,
        31: 8,
        32: 10,
        33: 10,
        0: 255,
        4: 255,
    }
    for label_id, cv in by_id.items():
        assert got[label_id].item() == cv, label_id
    with pytest.raises(DataError, match="unknown label scheme"):
        build_dataset("cityscapes", "train", root=root, label_scheme="ade20k")


def test_foggy_beta_selection_and_labels_from_gtfine(tmp_path):
    root = write_cityscapes(tmp_path, rain=False)
    ds = build_dataset("foggy-cityscapes", "train", root=root)
    assert len(ds) == 3
    assert all(ds[i]["name"].endswith("_leftImg8bit_foggy_beta_0.02") for i in range(3))
    assert ds[0]["label"][0, :34].tolist() == EXPECTED_TRAINID
    light = build_dataset("foggy-cityscapes", "train", root=root, beta=0.005)
    assert light[0]["name"] == "aachen_000000_000019_leftImg8bit_foggy_beta_0.005"
    assert len(build_dataset("foggy-cityscapes", "train", root=root, beta=[0.01, "0.02"])) == 6
    assert light.fingerprint() != ds.fingerprint()
    with pytest.raises(DataError, match="beta must be one of"):
        build_dataset("foggy-cityscapes", "train", root=root, beta=0.03)
    with pytest.raises(DataError, match="leftImg8bit_foggyDBF"):
        build_dataset("foggy-cityscapes", "train", root=root, dbf=True)


def test_rain_filters_and_source_frame_labels(tmp_path):
    root = write_cityscapes(tmp_path, foggy=False)
    everything = build_dataset("rain-cityscapes", "train", root=root)
    assert len(everything) == 3 * 2 * 3
    heavy = build_dataset("rain-cityscapes", "train", root=root, alpha=0.03, pattern=2)
    assert len(heavy) == 3
    assert heavy[0]["name"] == "aachen_000000_000019_leftImg8bit_rain_alpha_0.03_beta_0.015_dropsize_0.002_pattern_2"
    assert heavy[0]["label"][0, :34].tolist() == EXPECTED_TRAINID
    assert len(build_dataset("rain-cityscapes", "val", root=root, beta=[0.005, 0.01], dropsize=0.01)) == 2
    with pytest.raises(DataError, match="no rain images match"):
        build_dataset("rain-cityscapes", "train", root=root, alpha=0.5)
    with pytest.raises(DataError, match="only the train and val"):
        build_dataset("rain-cityscapes", "test", root=root)


def test_gt_root_elsewhere_and_missing_labels(tmp_path):
    images = write_cityscapes(tmp_path / "foggy", rain=False, gt=False)
    with pytest.raises(DataError, match="gtFine label folder not found"):
        build_dataset("foggy-cityscapes", "train", root=images)
    gt = write_cityscapes(tmp_path / "cs", foggy=False, rain=False)
    ds = build_dataset("foggy-cityscapes", "train", root=images, gt_root=gt)
    assert len(ds) == 3 and ds[0]["label"][0, :34].tolist() == EXPECTED_TRAINID
    (gt / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match=r"bochum_000000_000313_leftImg8bit_foggy_beta_0\.02\.png: image has no label"):
        build_dataset("foggy-cityscapes", "train", root=images, gt_root=gt)
    with pytest.raises(DataError, match="cityscapes root folder not found"):
        build_dataset("cityscapes", "train", root=tmp_path / "missing")
