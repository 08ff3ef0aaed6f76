"""The ``images`` dataset: a folder or a list file of unlabelled frames."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.data import build_dataset
from udistill.data.labels import CITYSCAPES19
from udistill.errors import DataError


def write_frames(folder: Path, count: int = 3, h: int = 10, w: int = 14, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(count):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"frame_{i:02d}.png")
        arrays.append(a)
    return arrays


def test_folder_items_are_the_pixels_with_an_all_ignore_label(tmp_path):
    arrays = write_frames(tmp_path / "f")
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    ds = build_dataset("images", "test", root=tmp_path / "f")
    assert len(ds) == 3
    for i, a in enumerate(arrays):
        item = ds[i]
        assert item["name"] == f"frame_{i:02d}"
        assert torch.equal((item["image"] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(a))
        assert item["label"].shape == a.shape[:2]
        assert (item["label"] == 255).all()


def test_list_file_relative_and_comment_lines(tmp_path):
    write_frames(tmp_path / "f", count=3)
    lst = tmp_path / "list.txt"
    lst.write_text("# fleet frames\nf/frame_02.png\n\nf/frame_00.png\n")
    ds = build_dataset("images", "val", root=lst)
    assert [ds[i]["name"] for i in range(len(ds))] == ["f/frame_02", "f/frame_00"]


def test_size_resizes_image_and_label(tmp_path):
    write_frames(tmp_path / "f", count=1, h=20, w=30)
    item = build_dataset("images", "test", root=tmp_path / "f", size=(8, 12))[0]
    assert item["image"].shape == (3, 8, 12) and item["label"].shape == (8, 12)
    assert (item["label"] == 255).all()


def test_label_scheme_option_and_fingerprint_follows_files(tmp_path):
    write_frames(tmp_path / "f", count=2)
    a = build_dataset("images", "test", root=tmp_path / "f", label_scheme="cityscapes19")
    assert a.scheme is CITYSCAPES19
    fp = a.fingerprint()
    write_frames(tmp_path / "f", count=3)
    b = build_dataset("images", "test", root=tmp_path / "f", label_scheme="cityscapes19")
    assert b.fingerprint() != fp


def test_recursive_walks_subfolders(tmp_path):
    write_frames(tmp_path / "f" / "a", count=1)
    write_frames(tmp_path / "f" / "b", count=2)
    assert len(build_dataset("images", "test", root=tmp_path / "f", recursive=True)) == 3
    with pytest.raises(DataError, match="no images"):
        build_dataset("images", "test", root=tmp_path / "f")


def test_shift_changes_pixels_deterministically(tmp_path):
    write_frames(tmp_path / "f", count=1, h=24, w=32)
    clean = build_dataset("images", "test", root=tmp_path / "f")[0]["image"]
    fog1 = build_dataset("images", "test", root=tmp_path / "f", shift="fog")[0]["image"]
    fog2 = build_dataset("images", "test", root=tmp_path / "f", shift="fog")[0]["image"]
    assert not torch.equal(clean, fog1) and torch.equal(fog1, fog2)


@pytest.mark.parametrize("case", ["missing", "empty", "bad-line", "option", "no-root"])
def test_errors_name_the_problem(tmp_path, case):
    (tmp_path / "empty").mkdir()
    kwargs = {
        "missing": {"root": tmp_path / "nope"},
        "empty": {"root": tmp_path / "empty"},
        "bad-line": {"root": _list(tmp_path, "gone.png\n")},
        "option": {"root": tmp_path / "empty", "sequences": ["x"]},
        "no-root": {},
    }[case]
    match = {
        "missing": "not found",
        "empty": "no images",
        "bad-line": "line 1: image .*gone.png not found",
        "option": "unknown option",
        "no-root": "no root",
    }[case]
    with pytest.raises(DataError, match=match):
        build_dataset("images", "test", **kwargs)


def test_corrupt_frame_is_a_data_error_naming_it(tmp_path):
    write_frames(tmp_path / "f", count=1)
    (tmp_path / "f" / "frame_01.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ds = build_dataset("images", "test", root=tmp_path / "f")
    with pytest.raises(DataError, match="frame_01.jpg"):
        ds[1]


def _list(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "list.txt"
    p.write_text(text)
    return p
