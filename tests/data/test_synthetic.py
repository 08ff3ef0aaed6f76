"""The procedural driving scenes (udistill.data.synthetic) and the weather shifts (weather)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from udistill.data import weather
from udistill.data.labels import CAMVID11
from udistill.data.synthetic import KNOWN_SHIFTS, SyntheticDataset, build_synthetic
from udistill.errors import DataError

SMALL = (120, 160)


def _clean_and_shifted(shift, n=3, size=(180, 240), split="val"):
    clean = SyntheticDataset(split, size=size)
    shifted = SyntheticDataset(split, shift=shift, size=size)
    return [(clean.load(i), shifted.load(i)) for i in range(n)]


def _gray(img):
    return img.astype(np.float64).mean(axis=2)


# --------------------------------------------------------------------------- items
def test_item_shapes_dtypes_and_name():
    ds = build_synthetic("train")
    assert len(ds) == 200 and ds.scheme is CAMVID11
    item = ds[12]
    assert item["image"].shape == (3, 360, 480) and item["image"].dtype == torch.float32
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert item["label"].shape == (360, 480) and item["label"].dtype == torch.int64
    assert int(item["label"].max()) < 11 and int(item["label"].min()) >= 0
    assert item["depth"].shape == (360, 480) and item["depth"].dtype == torch.float32
    assert float(item["depth"].min()) > 0
    assert item["name"] == "synthetic-train-000012"
    # sky is far, and everything far is labelled sky or sits near the horizon
    sky = item["label"] == 0
    assert torch.all(item["depth"][sky] == weather.SKY_DEPTH)


def test_split_lengths_and_length_override():
    assert len(build_synthetic("val")) == 50 and len(build_synthetic("test")) == 50
    assert len(build_synthetic("train", length=7)) == 7
    with pytest.raises(IndexError):
        build_synthetic("val", length=3)[3]
    assert build_synthetic("val", length=3, size=SMALL)[-1]["name"] == "synthetic-val-000002"


def test_size_renders_directly():
    item = build_synthetic("train", size=(64, 96), length=2)[1]
    assert item["image"].shape == (3, 64, 96) and item["label"].shape == (64, 96) and item["depth"].shape == (64, 96)


def test_deterministic_and_distinct():
    a = SyntheticDataset("train", size=SMALL, seed=3)
    b = SyntheticDataset("train", size=SMALL, seed=3)
    img_a, lab_a, _, dep_a = a.load(5)
    img_b, lab_b, _, dep_b = b.load(5)
    assert (
        img_a.tobytes() == img_b.tobytes() and lab_a.tobytes() == lab_b.tobytes() and dep_a.tobytes() == dep_b.tobytes()
    )
    others = [
        a.load(6)[0],
        SyntheticDataset("train", size=SMALL, seed=4).load(5)[0],
        SyntheticDataset("val", size=SMALL, seed=3).load(5)[0],
        SyntheticDataset("test", size=SMALL, seed=3).load(5)[0],
    ]
    for other in others:
        assert not np.array_equal(other, img_a)
    # shifted versions are deterministic too
    fog1 = SyntheticDataset("train", size=SMALL, seed=3, shift="rain").load(5)[0]
    fog2 = SyntheticDataset("train", size=SMALL, seed=3, shift="rain").load(5)[0]
    assert fog1.tobytes() == fog2.tobytes()


def test_fingerprint_depends_on_settings():
    base = build_synthetic("train", size=SMALL).fingerprint()
    assert base == build_synthetic("train", size=SMALL).fingerprint()
    assert base != build_synthetic("train", size=SMALL, seed=1).fingerprint()
    assert base != build_synthetic("train", size=SMALL, shift="fog").fingerprint()
    assert base != build_synthetic("val", size=SMALL).fingerprint()


def test_all_classes_appear():
    ds = SyntheticDataset("train", size=(180, 240), length=20)
    seen = np.zeros(11, bool)
    for i in range(len(ds)):
        seen |= np.bincount(ds.load(i)[1].ravel(), minlength=11)[:11] > 0
    missing = [CAMVID11.classes[k] for k in np.flatnonzero(~seen)]
    assert not missing, f"classes never drawn in 20 scenes: {missing}"


def test_unknown_split_shift_option_raise():
    with pytest.raises(DataError, match="split"):
        build_synthetic("training")
    with pytest.raises(DataError, match="fog-dense"):  # the message lists the known shifts
        build_synthetic("train", shift="snow")
    with pytest.raises(DataError, match="lenght"):
        build_synthetic("train", lenght=3)
    with pytest.raises(DataError):
        build_synthetic("train", length=0)


def test_registered():
    from udistill.data.registry import _REGISTRY

    assert _REGISTRY["synthetic"] is build_synthetic


# --------------------------------------------------------------------------- shifts
def test_known_shifts():
    assert set(weather.KNOWN_SHIFTS) == {"fog-light", "fog", "fog-dense", "rain", "dusk", "rain-light", "dusk-light"}
    assert set(KNOWN_SHIFTS) == set(weather.KNOWN_SHIFTS) | {"new-city"}
    # appended, never inserted: a shift's random stream is keyed by its index
    assert weather.KNOWN_SHIFTS[:5] == ("fog-light", "fog", "fog-dense", "rain", "dusk")


@pytest.mark.parametrize(("light", "heavy"), [("rain-light", "rain"), ("dusk-light", "dusk"), ("fog-light", "fog")])
def test_graded_shifts_lie_between_clean_and_the_full_shift(light, heavy):
    """The light strength of a shift changes the clean image less than the full one, on
    every scene: the validation shifts are graded."""
    for i in range(3):
        clean = SyntheticDataset("val", size=(72, 96), length=3)[i]["image"]
        lo = SyntheticDataset("val", shift=light, size=(72, 96), length=3)[i]["image"]
        hi = SyntheticDataset("val", shift=heavy, size=(72, 96), length=3)[i]["image"]
        assert 0.005 < float((lo - clean).abs().mean()) < float((hi - clean).abs().mean())


@pytest.mark.parametrize("shift", ["fog-light", "fog", "fog-dense", "rain", "dusk", "rain-light", "dusk-light"])
def test_weather_keeps_labels_and_depth(shift):
    for (c_img, c_lab, _, c_dep), (s_img, s_lab, _, s_dep) in _clean_and_shifted(shift, n=2, size=SMALL):
        assert np.array_equal(c_lab, s_lab) and np.array_equal(c_dep, s_dep)
        assert not np.array_equal(c_img, s_img)


def _region_contrast_ratios(shift, n=3):
    """(near, far) ratios of shifted to clean grey-level std, over near/far non-sky pixels."""
    near_r, far_r = [], []
    for (c_img, c_lab, _, dep), (s_img, _, _, _) in _clean_and_shifted(shift, n=n):
        near, far = dep < 8, (dep > 40) & (c_lab != 0)
        if near.sum() < 50 or far.sum() < 50:
            continue
        near_r.append(_gray(s_img)[near].std() / _gray(c_img)[near].std())
        far_r.append(_gray(s_img)[far].std() / _gray(c_img)[far].std())
    assert near_r, "no scene with enough near and far pixels"
    return float(np.mean(near_r)), float(np.mean(far_r))


def test_fog_lowers_contrast_more_with_depth_and_density():
    light = _region_contrast_ratios("fog-light")
    medium = _region_contrast_ratios("fog")
    dense = _region_contrast_ratios("fog-dense")
    for near, far in (light, medium, dense):
        assert far < 0.85 * near  # far pixels lose more contrast than near ones
    # denser fog, less contrast far away (near pixels' std also gains the depth-varying
    # airlight term A·(1 − t), so it is not a clean contrast measure there)
    assert light[1] > medium[1] > dense[1]
    assert dense[1] < 0.3  # dense fog all but hides the far scene


def test_rain_lowers_contrast():
    for (c_img, _, _, _), (s_img, _, _, _) in _clean_and_shifted("rain", n=2):
        assert np.abs(s_img.astype(int) - c_img).mean() > 5
    near, far = _region_contrast_ratios("rain")
    # the veil of rain accumulation lowers contrast, more with distance; streaks do not undo it
    assert far < near < 1.0 and far < 0.8


def test_dusk_is_darker():
    for (c_img, _, _, _), (s_img, _, _, _) in _clean_and_shifted("dusk", n=2):
        assert s_img.mean() < 0.6 * c_img.mean()


def test_new_city_differs_in_colour_statistics():
    def stats(shift):
        ds = SyntheticDataset("val", shift=shift, size=(180, 240))
        feats = [ds.load(i)[0].reshape(-1, 3).astype(np.float64) for i in range(6)]
        return np.concatenate([np.mean([f.mean(0) for f in feats], 0), np.mean([f.std(0) for f in feats], 0)])

    assert np.linalg.norm(stats("new-city") - stats(None)) > 10.0
    # still a street scene in the same label scheme
    lab = SyntheticDataset("val", shift="new-city", size=SMALL).load(0)[1]
    assert lab.max() < 11 and {0, 1, 3} <= set(np.unique(lab).tolist())


# --------------------------------------------------------------------------- weather on real-looking images
def test_estimate_depth_increases_towards_horizon():
    h, w = 120, 160
    d = weather.estimate_depth(h, w)
    assert d.shape == (h, w) and d.dtype == np.float32
    horizon = int(0.45 * h)
    col = d[:, 0]
    below = col[horizon + 1 :]
    assert np.all(np.diff(below) <= 0)  # deeper going up, towards the horizon
    assert below[0] > below[-1] and below[-1] < 10
    assert np.all(col[:horizon] == col[:horizon].max())  # a constant above the horizon
    assert np.all(d == d[:, :1])  # constant along rows
    label = np.ones((h, w), np.uint8)
    label[:10] = 0
    ds = weather.estimate_depth(h, w, label)
    assert np.all(ds[:10] == weather.SKY_DEPTH) and np.array_equal(ds[10:], d[10:])


@pytest.mark.parametrize("shift", weather.KNOWN_SHIFTS)
def test_apply_shift_without_depth(shift):
    img = SyntheticDataset("val", size=SMALL).load(0)[0]
    out = weather.apply_shift(img, shift, None, seed=1)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert np.array_equal(out, weather.apply_shift(img, shift, None, seed=1))


def test_apply_shift_errors():
    img = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(DataError, match="fog-light"):
        weather.apply_shift(img, "snow", None, 0)
    with pytest.raises(DataError, match="synthetic"):
        weather.apply_shift(img, "new-city", None, 0)
    with pytest.raises(DataError):
        weather.apply_shift(img, "fog", np.ones((10, 10), np.float32), 0)
    with pytest.raises(DataError):
        weather.apply_shift(img.astype(np.float32), "fog", None, 0)
