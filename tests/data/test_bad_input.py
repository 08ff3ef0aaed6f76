"""Every bad input file is one DataError that names the file and says what is wrong."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toy import png_header
from udistill.data import build_dataset
from udistill.data.imageio import read_color_label, read_image, read_label
from udistill.errors import DataError, UdistillError

H, W = 10, 14
NAME = "0006R0_f00930"


def write_pair(
    root: Path, image=None, label=None, image_ext: str = ".png", list_file: bool = True
) -> tuple[Path, Path]:
    """One CamVid pair (SegNet layout, list file with the /SegNet/CamVid/ prefix); returns its paths."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "trainannot").mkdir(parents=True, exist_ok=True)
    img_path, lab_path = root / "train" / f"{NAME}{image_ext}", root / "trainannot" / f"{NAME}.png"
    (image if image is not None else Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))).save(img_path)
    (label if label is not None else Image.fromarray(rng.integers(0, 12, (H, W), dtype=np.uint8))).save(lab_path)
    if list_file:
        (root / "train.txt").write_text(
            f"/SegNet/CamVid/train/{img_path.name} /SegNet/CamVid/trainannot/{lab_path.name}\n"
        )
    return img_path, lab_path


def load_first(root: Path):
    return build_dataset("camvid", "train", root=root)[0]


def test_errors_are_user_errors():
    assert issubclass(DataError, UdistillError)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'absent'}: camvid root folder not found"):
        build_dataset("camvid", "train", root=tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="must be a folder"):
        build_dataset("camvid", "train", root=tmp_path / "file")


@pytest.mark.parametrize("list_file", [True, False])
def test_image_without_label(tmp_path, list_file):
    img, lab = write_pair(tmp_path, list_file=list_file)
    lab.unlink()
    with pytest.raises(DataError, match=rf"{img}: image has no label \({lab}"):
        build_dataset("camvid", "train", root=tmp_path)


def test_listed_image_missing(tmp_path):
    img, _ = write_pair(tmp_path)
    img.unlink()
    with pytest.raises(DataError, match=rf"{img}: image listed in train.txt line 1 not found"):
        build_dataset("camvid", "train", root=tmp_path)


def test_malformed_list_line(tmp_path):
    write_pair(tmp_path)
    (tmp_path / "train.txt").write_text("only-one-token.png\n")
    with pytest.raises(DataError, match=r"train.txt: line 1 should be 'image label'"):
        build_dataset("camvid", "train", root=tmp_path)


def test_label_of_wrong_size(tmp_path):
    _, lab = write_pair(tmp_path, label=Image.fromarray(np.zeros((H + 1, W), np.uint8)))
    with pytest.raises(DataError, match=rf"{lab}: label is {W}x{H + 1} pixels but its image {NAME}.png is {W}x{H}"):
        load_first(tmp_path)


def test_label_value_outside_scheme(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[0, 0] = 40
    _, lab = write_pair(tmp_path, label=Image.fromarray(label))
    with pytest.raises(DataError, match=rf"{lab}: label values \[40\] are not valid CamVid"):
        load_first(tmp_path)


def test_label_with_three_channels_or_16_bit_values(tmp_path):
    _, lab = write_pair(tmp_path, label=Image.fromarray(np.zeros((H, W, 3), np.uint8)))
    with pytest.raises(DataError, match=rf"{lab}: label must be a single-channel PNG, got mode RGB"):
        load_first(tmp_path)
    _, lab = write_pair(tmp_path, label=Image.fromarray(np.full((H, W), 300, np.uint16)))
    with pytest.raises(DataError, match=rf"{lab}: label values outside 0..255"):
        load_first(tmp_path)


@pytest.mark.parametrize("which", ["image", "label"])
@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "text"])
def test_damaged_png(tmp_path, which, damage):
    img, lab = write_pair(
        tmp_path,
        image=Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        label=Image.fromarray(np.random.default_rng(1).integers(0, 12, (64, 64), dtype=np.uint8)),
    )
    path = img if which == "image" else lab
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        path.write_bytes(data[:60] + bytes(np.random.default_rng(2).integers(0, 256, len(data) - 60, dtype=np.uint8)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("not an image at all\n")
    expected = "is an empty file" if damage == "empty" else "is corrupt or not an image"
    with pytest.raises(DataError, match=rf"{path}: {which} {expected}"):
        load_first(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty"])
def test_damaged_jpeg(tmp_path, damage):
    rng = np.random.default_rng(3)
    img, _ = write_pair(
        tmp_path,
        image=Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        label=Image.fromarray(np.zeros((64, 64), np.uint8)),
        image_ext=".jpg",
    )
    assert load_first(tmp_path)["image"].shape == (3, 64, 64)  # an intact JPEG reads
    data = img.read_bytes()
    if damage == "truncated":
        img.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        img.write_bytes(data[:2] + b"\x00" * (len(data) - 2))
    else:
        img.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{img}: image (is corrupt or not an image|is an empty file)"):
        load_first(tmp_path)


def test_grayscale_rgba_and_palette_images_are_read_as_rgb(tmp_path):
    gray = np.random.default_rng(4).integers(0, 256, (H, W), dtype=np.uint8)
    write_pair(tmp_path, image=Image.fromarray(gray, mode="L"))
    item = load_first(tmp_path)
    assert item["image"].shape == (3, H, W)
    assert torch.equal(item["image"][0], item["image"][2])
    assert torch.allclose(item["image"][1] * 255, torch.from_numpy(gray).float())

    rgba = np.random.default_rng(5).integers(0, 256, (H, W, 4), dtype=np.uint8)
    write_pair(tmp_path, image=Image.fromarray(rgba, mode="RGBA"))
    item = load_first(tmp_path)
    assert item["image"].shape == (3, H, W)
    assert torch.allclose(item["image"].permute(1, 2, 0) * 255, torch.from_numpy(rgba[..., :3]).float())

    palette_label = Image.fromarray(np.full((H, W), 3, np.uint8), mode="P")
    palette_label.putpalette([0, 0, 0] * 256)
    write_pair(tmp_path, label=palette_label)
    assert (load_first(tmp_path)["label"] == 3).all()


@pytest.mark.parametrize(
    "width,height,message",
    [
        (20000, 20000, "too large to decode safely"),  # Pillow's own bomb guard (> 2x its limit)
        (9000, 9000, "over the 64,000,000 pixel limit"),  # udistill's stricter limit
    ],
)
def test_decompression_bomb_header_is_refused_before_decoding(tmp_path, width, height, message):
    img, _ = write_pair(tmp_path)
    img.write_bytes(png_header(width, height))
    assert img.stat().st_size < 100
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"{img}: image .*{message}"):
        load_first(tmp_path)
    assert time.perf_counter() - start < 2.0


def test_imageio_readers_name_the_file(tmp_path):
    missing = tmp_path / "missing.png"
    for reader, what in ((read_image, "image"), (read_label, "label"), (read_color_label, "label")):
        with pytest.raises(DataError, match=rf"{missing}: {what} not found"):
            reader(missing)
    with pytest.raises(DataError, match="image path is a folder, not a file"):
        read_image(tmp_path)
    bomb = tmp_path / "bomb_label.png"
    bomb.write_bytes(png_header(20000, 20000))
    with pytest.raises(DataError, match=rf"{bomb}: label"):
        read_color_label(bomb)
