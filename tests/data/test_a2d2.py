"""A2D2 camera_lidar_semantic: layout, class_list.json colours -> Cityscapes trainIds, splits, cameras."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udistill.data import build_dataset
from udistill.data.a2d2 import split_of
from udistill.data.labels import CAMVID11, CITYSCAPES19
from udistill.errors import DataError

# A2D2's class_list.json (55 colours) with the trainId each must get (255 = ignore).
CLASS_LIST = {
    "#ff0000": ("Car 1", 13),
    "#c80000": ("Car 2", 13),
    "#960000": ("Car 3", 13),
    "#800000": ("Car 4", 13),
    "#b65906": ("Bicycle 1", 18),
    "#963204": ("Bicycle 2", 18),
    "#5a1e01": ("Bicycle 3", 18),
    "#5a1e1e": ("Bicycle 4", 18),
    "#cc99ff": ("Pedestrian 1", 11),
    "#bd499b": ("Pedestrian 2", 11),
    "#ef59bf": ("Pedestrian 3", 11),
    "#ff8000": ("Truck 1", 14),
    "#c88000": ("Truck 2", 14),
    "#968000": ("Truck 3", 14),
    "#00ff00": ("Small vehicles 1", 17),
    "#00c800": ("Small vehicles 2", 17),
    "#009600": ("Small vehicles 3", 17),
    "#0080ff": ("Traffic signal 1", 6),
    "#1e1c9e": ("Traffic signal 2", 6),
    "#3c1c64": ("Traffic signal 3", 6),
    "#00ffff": ("Traffic sign 1", 7),
    "#1edcdc": ("Traffic sign 2", 7),
    "#3c9dc7": ("Traffic sign 3", 7),
    "#ffff00": ("Utility vehicle 1", 14),
    "#ffffc8": ("Utility vehicle 2", 14),
    "#e96400": ("Sidebars", 255),
    "#6e6e00": ("Speed bumper", 0),
    "#808000": ("Curbstone", 1),
    "#ffc125": ("Solid line", 0),
    "#400040": ("Irrelevant signs", 255),
    "#b97a57": ("Road blocks", 255),
    "#000064": ("Tractor", 255),
    "#8b636c": ("Non-drivable street", 255),
    "#d23273": ("Zebra crossing", 0),
    "#ff0080": ("Obstacles / trash", 255),
    "#fff68f": ("Poles", 5),
    "#960096": ("RD restricted area", 0),
    "#ccff99": ("Animals", 255),
    "#eea2ad": ("Grid structure", 4),
    "#212cb1": ("Signal corpus", 6),
    "#b432b4": ("Drivable cobblestone", 0),
    "#ff46b9": ("Electronic traffic", 7),
    "#eee9bf": ("Slow drive area", 0),
    "#93fdc2": ("Nature object", 8),
    "#9696c8": ("Parking area", 255),
    "#b496c8": ("Sidewalk", 1),
    "#48d1cc": ("Ego car", 255),
    "#c87dd2": ("Painted driv. instr.", 0),
    "#9f79ee": ("Traffic guide obj.", 255),
    "#8000ff": ("Dashed line", 0),
    "#ff00ff": ("RD normal street", 0),
    "#87ceff": ("Sky", 10),
    "#f1e6ff": ("Buildings", 2),
    "#60458f": ("Blurred area", 255),
    "#352e52": ("Rain dirt", 255),
}
COLOURS = list(CLASS_LIST)
# One sequence of each split under the hash rule (train, val, test).
SEQUENCES = ("20180807_145028", "20181016_095036", "20181204_170238")
H, W = 3, len(COLOURS)


def rgb(hexcode: str) -> tuple[int, int, int]:
    return tuple(int(hexcode[i : i + 2], 16) for i in (1, 3, 5))


def all_colours_label() -> np.ndarray:
    label = np.zeros((H, W, 3), np.uint8)
    label[:] = rgb("#87ceff")
    label[0] = [rgb(c) for c in COLOURS]
    return label


def write_a2d2(
    root: Path, frames=("000000091", "000001617"), cameras=("front_center", "side_left"), label=None, class_list=None
) -> Path:
    base = root / "camera_lidar_semantic"
    base.mkdir(parents=True, exist_ok=True)
    (base / "class_list.json").write_text(
        json.dumps(class_list or {c: n for c, (n, _) in CLASS_LIST.items()}, indent=4)
    )
    rng = np.random.default_rng(0)
    for seq in SEQUENCES:
        ts = seq.replace("_", "")
        for cam in cameras:
            token = cam.replace("_", "")
            cam_dir = base / seq / "camera" / f"cam_{cam}"
            lab_dir = base / seq / "label" / f"cam_{cam}"
            lidar_dir = base / seq / "lidar" / f"cam_{cam}"
            for d in (cam_dir, lab_dir, lidar_dir):
                d.mkdir(parents=True, exist_ok=True)
            for frame in frames:
                Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
                    cam_dir / f"{ts}_camera_{token}_{frame}.png"
                )
                (cam_dir / f"{ts}_camera_{token}_{frame}.json").write_text("{}")
                (lidar_dir / f"{ts}_lidar_{token}_{frame}.npz").write_bytes(b"")
                Image.fromarray(all_colours_label() if label is None else label).save(
                    lab_dir / f"{ts}_label_{token}_{frame}.png"
                )
    return root


def test_every_class_list_colour_maps_to_its_train_id(tmp_path):
    root = write_a2d2(tmp_path)
    ds = build_dataset("a2d2", "all", root=root)
    assert ds.scheme is CITYSCAPES19
    assert len(ds) == 3 * 2  # three sequences x two frames, front_center only by default
    item = ds[0]
    assert item["name"] == "20180807145028_camera_frontcenter_000000091"
    assert item["label"][0].tolist() == [t for _, t in CLASS_LIST.values()]
    assert (item["label"][1:] == 10).all()
    # root may also be the camera_lidar_semantic folder itself
    assert len(build_dataset("a2d2", "all", root=root / "camera_lidar_semantic")) == 6


def test_colour_not_in_class_list_is_an_error_and_unknown_class_is_ignored(tmp_path):
    label = all_colours_label()
    label[2, 7] = (1, 2, 3)
    root = write_a2d2(tmp_path, frames=("000000091",), cameras=("front_center",), label=label)
    ds = build_dataset("a2d2", "all", root=root)
    with pytest.raises(
        DataError,
        match=r"20180807145028_label_frontcenter_000000091\.png: label colours #010203 are not in class_list\.json",
    ):
        ds[0]
    extra = {c: n for c, (n, _) in CLASS_LIST.items()}
    extra["#010203"] = "Hovercraft 1"  # a class the Cityscapes table does not know -> ignore
    root2 = write_a2d2(tmp_path / "b", frames=("000000091",), cameras=("front_center",), label=label, class_list=extra)
    assert build_dataset("a2d2", "all", root=root2)[0]["label"][2, 7].item() == 255


def test_cameras_sequences_and_label_scheme(tmp_path):
    root = write_a2d2(tmp_path)
    assert len(build_dataset("a2d2", "all", root=root, cameras="all")) == 12
    side = build_dataset("a2d2", "all", root=root, cameras=["cam_side_left"], sequences=[SEQUENCES[1]])
    assert [side[i]["name"] for i in range(len(side))] == [
        "20181016095036_camera_sideleft_000000091",
        "20181016095036_camera_sideleft_000001617",
    ]
    with pytest.raises(DataError, match="unknown camera 'roof'"):
        build_dataset("a2d2", "all", root=root, cameras=["roof"])
    cv = build_dataset("a2d2", "all", root=root, label_scheme="camvid11")
    assert cv.scheme is CAMVID11
    row = cv[0]["label"][0].tolist()
    assert row[COLOURS.index("#ff0000")] == 8 and row[COLOURS.index("#87ceff")] == 0
    assert row[COLOURS.index("#ff00ff")] == 3 and row[COLOURS.index("#93fdc2")] == 5


def test_deterministic_sequence_splits(tmp_path):
    root = write_a2d2(tmp_path, cameras=("front_center",))
    names = {}
    for split in ("train", "val", "test"):
        ds = build_dataset("a2d2", split, root=root)
        names[split] = {ds[i]["name"][:14] for i in range(len(ds))}
    assert names == {"train": {"20180807145028"}, "val": {"20181016095036"}, "test": {"20181204170238"}}
    for seq in SEQUENCES:
        owners = [s for s, n in names.items() if seq.replace("_", "") in n]
        assert owners == [split_of(seq)]
    only = write_a2d2(tmp_path / "b", cameras=("front_center",))
    (only / "camera_lidar_semantic" / "20181016_095036").rename(only / "camera_lidar_semantic" / "x")
    with pytest.raises(DataError, match="no a2d2 images found for split 'val'"):
        build_dataset("a2d2", "val", root=only)
    assert split_of("20180807_145028") == split_of("20180807_145028")
    with pytest.raises(DataError, match="unknown split"):
        build_dataset("a2d2", "trainval", root=root)


def test_missing_pieces(tmp_path):
    root = write_a2d2(tmp_path, frames=("000000091",), cameras=("front_center",))
    (
        root
        / "camera_lidar_semantic"
        / "20181016_095036"
        / "label"
        / "cam_front_center"
        / "20181016095036_label_frontcenter_000000091.png"
    ).unlink()
    with pytest.raises(DataError, match="20181016095036_camera_frontcenter_000000091.png: image has no label"):
        build_dataset("a2d2", "all", root=root)
    (root / "camera_lidar_semantic" / "class_list.json").write_text("{not json")
    with pytest.raises(DataError, match="class_list.json: class list is not valid JSON"):
        build_dataset("a2d2", "all", root=root)
    with pytest.raises(DataError, match="a2d2 root folder not found"):
        build_dataset("a2d2", "all", root=tmp_path / "nope")
