"""data.tools: check_dataset, export_dataset (CamVid layout round trip), preview_grid."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.data import build_dataset
from udistill.data.tools import check_dataset, export_dataset, preview_grid, print_summary
from udistill.errors import DataError

H, W = 12, 16
NAMES = ("0006R0_f00930", "0016E5_07959", "0001TP_008550", "0016E5_08010")


def write_camvid(root: Path, split: str = "train", names=NAMES, depth: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for sub in (split, f"{split}annot"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / split / f"{name}.png")
        Image.fromarray(rng.integers(0, 12, (H, W), dtype=np.uint8)).save(root / f"{split}annot" / f"{name}.png")
        if depth:
            (root / f"{split}depth").mkdir(exist_ok=True)
            np.save(root / f"{split}depth" / f"{name}.npy", rng.uniform(1, 80, (H, W)).astype(np.float32))
        lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_check_clean_dataset(tmp_path):
    root = write_camvid(tmp_path)
    summary = check_dataset("camvid", root, "train")
    assert summary["count"] == summary["ok"] == 4 and summary["problems"] == []
    assert summary["sizes"] == {f"{W}x{H}": 4}
    labels = np.stack([np.array(Image.open(root / "trainannot" / f"{n}.png")) for n in NAMES])
    counts = np.bincount(labels.ravel(), minlength=12)
    assert list(summary["class_histogram"].values()) == counts[:11].tolist()
    assert summary["ignore_pixels"] == counts[11]
    assert summary["scheme"] == "camvid11"
    buf = io.StringIO()
    print_summary(summary, file=buf)
    assert "4 of 4 items OK" in buf.getvalue() and "pixels per class" in buf.getvalue()


def test_check_broken_dataset_lists_every_problem(tmp_path):
    root = write_camvid(tmp_path)
    (root / "trainannot" / f"{NAMES[0]}.png").unlink()  # no label
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "trainannot" / f"{NAMES[1]}.png")  # wrong size
    bad = np.zeros((H, W), np.uint8)
    bad[0, 0] = 77
    Image.fromarray(bad).save(root / "trainannot" / f"{NAMES[2]}.png")  # value outside the scheme
    img = root / "train" / f"{NAMES[3]}.png"
    img.write_bytes(img.read_bytes()[:40])  # truncated PNG
    summary = check_dataset("camvid", root, "train")
    assert summary["count"] == 4 and summary["ok"] == 0
    problems = dict(summary["problems"])
    assert len(problems) == 4
    assert "image has no label" in problems[str(root / "train" / f"{NAMES[0]}.png")]
    assert "label is 18x12 pixels" in problems[str(root / "train" / f"{NAMES[1]}.png")]
    assert "[77]" in problems[str(root / "train" / f"{NAMES[2]}.png")]
    assert "corrupt" in problems[str(img)]
    buf = io.StringIO()
    print_summary(summary, file=buf, max_problems=2)
    assert "0 of 4 items OK" in buf.getvalue() and "4 problem(s)" in buf.getvalue() and "2 more" in buf.getvalue()
    # the strict loader stops at the first problem instead
    with pytest.raises(DataError, match="image has no label"):
        build_dataset("camvid", "train", root=root)
    with pytest.raises(DataError, match="root folder not found"):
        check_dataset("camvid", tmp_path / "missing", "train")


def _assert_same_items(a, b, exact_image=True):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x["name"] == y["name"]
        assert torch.equal(x["label"], y["label"])
        if exact_image:
            assert torch.equal(x["image"], y["image"])
        else:
            assert (x["image"] - y["image"]).abs().max() <= 0.5 / 255 + 1e-6
        assert ("depth" in x) == ("depth" in y)
        if "depth" in x:
            assert torch.equal(x["depth"], y["depth"])


def test_export_round_trip_in_camvid_layout(tmp_path):
    src = write_camvid(tmp_path / "src", depth=True)
    out = tmp_path / "out"
    assert export_dataset("camvid", out, "train", count=3, root=src) == 3
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[0] == f"/SegNet/CamVid/train/{NAMES[0]}.png /SegNet/CamVid/trainannot/{NAMES[0]}.png"
    written = np.array(Image.open(out / "trainannot" / f"{NAMES[0]}.png"))
    assert written.dtype == np.uint8 and written.max() <= 11  # ignore written back as 11
    assert not list(out.rglob("*.tmp"))
    original = build_dataset("camvid", "train", root=src, sequences=["0006R0", "0016E5", "0001TP"])
    original.samples = original.samples[:3]
    _assert_same_items(original, build_dataset("camvid", "train", root=out))
    # a resized export is quantised to uint8 once, then reads back as written
    export_dataset("camvid", tmp_path / "small", "train", size=(6, 8), root=src)
    _assert_same_items(
        build_dataset("camvid", "train", root=src, size=(6, 8)),
        build_dataset("camvid", "train", root=tmp_path / "small"),
        exact_image=False,
    )
    with pytest.raises(DataError, match="nothing to export"):
        export_dataset("camvid", tmp_path / "none", "train", count=0, root=src)


def test_preview_grid_writes_png_at_150_dpi(tmp_path):
    ds = build_dataset("camvid", "train", root=write_camvid(tmp_path / "d", depth=True))
    out = preview_grid(ds, tmp_path / "fig" / "preview.png", count=3, seed=1)
    assert out.exists() and not list(out.parent.glob("*.tmp"))
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert round(im.info["dpi"][0]) == 150
        width, height = im.size
    assert width > 300 and height > 300
    again = preview_grid(ds, tmp_path / "fig" / "again.png", count=10)  # count larger than the dataset
    assert again.exists()


def test_export_synthetic_reads_back_as_camvid(tmp_path):
    opts = dict(size=(48, 64), seed=5, length=3)
    synth = build_dataset("synthetic", "train", **opts)
    assert export_dataset("synthetic", tmp_path, "train", **opts) == 3
    back = build_dataset("camvid", "train", root=tmp_path)
    _assert_same_items(synth, back)  # rendered as uint8 at that size: exact, depth included
    summary = check_dataset("synthetic", None, "train", **opts)
    assert summary["ok"] == 3 and summary["problems"] == []
    foggy = build_dataset("camvid", "train", root=tmp_path, shift="fog", seed=1)
    assert not torch.equal(foggy[0]["image"], back[0]["image"])  # fog on exported depth
    assert torch.equal(foggy[0]["label"], back[0]["label"])


def test_check_reports_a_split_whose_every_label_is_missing(tmp_path):
    root = write_camvid(tmp_path, names=NAMES[:2])
    for name in NAMES[:2]:
        (root / "trainannot" / f"{name}.png").unlink()
    summary = check_dataset("camvid", root, "train")
    assert summary["count"] == 2 and summary["ok"] == 0 and len(summary["problems"]) == 2
