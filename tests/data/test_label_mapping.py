"""labels.map_labels / map_probabilities between Cityscapes-19 and CamVid-11, value by value."""

import numpy as np
import pytest
import torch

from udistill.data.labels import CAMVID11, CITYSCAPES19, IGNORE_INDEX, map_labels, map_probabilities, mapping_lut

CS = {n: i for i, n in enumerate(CITYSCAPES19.classes)}
CV = {n: i for i, n in enumerate(CAMVID11.classes)}
# Cityscapes class -> CamVid class (None = no counterpart -> ignore), written out by name.
CS_TO_CV = {
    "road": "road",
    "sidewalk": "pavement",
    "building": "building",
    "wall": "building",
    "fence": "fence",
    "pole": "pole",
    "traffic light": "sign-symbol",
    "traffic sign": "sign-symbol",
    "vegetation": "tree",
    "terrain": None,
    "sky": "sky",
    "person": "pedestrian",
    "rider": "bicyclist",
    "car": "car",
    "truck": "car",
    "bus": "car",
    "train": "car",
    "motorcycle": "bicyclist",
    "bicycle": "bicyclist",
}
CV_TO_CS = {
    "sky": "sky",
    "building": "building",
    "pole": "pole",
    "road": "road",
    "pavement": "sidewalk",
    "tree": "vegetation",
    "sign-symbol": "traffic sign",
    "fence": "fence",
    "car": "car",
    "pedestrian": "person",
    "bicyclist": "bicycle",
}


def test_cityscapes_to_camvid_every_class():
    src = np.array([[CS[n] for n in CS_TO_CV] + [IGNORE_INDEX]])
    want = [IGNORE_INDEX if CS_TO_CV[n] is None else CV[CS_TO_CV[n]] for n in CS_TO_CV] + [IGNORE_INDEX]
    out = map_labels(src, "cityscapes19", "camvid11")
    assert out.dtype == np.int64 and out.shape == src.shape
    assert out[0].tolist() == want


def test_camvid_to_cityscapes_every_class():
    src = np.array([[CV[n] for n in CV_TO_CS] + [IGNORE_INDEX]])
    want = [CS[CV_TO_CS[n]] for n in CV_TO_CS] + [IGNORE_INDEX]
    assert map_labels(src, "camvid11", "cityscapes19")[0].tolist() == want


def test_identity_and_unknown_pairs():
    x = np.arange(12).reshape(3, 4)
    assert np.array_equal(map_labels(x, "camvid11", "camvid11"), x)
    # ids outside the source scheme have no target: they become ignore
    assert map_labels(np.array([19, 200]), "cityscapes19", "camvid11").tolist() == [IGNORE_INDEX] * 2
    with pytest.raises(ValueError, match="no label mapping"):
        mapping_lut("camvid11", "ade150")
    assert mapping_lut("camvid11", "cityscapes19").shape == (256,)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_map_probabilities_sums_source_classes(backend):
    rng = np.random.default_rng(0)
    p = rng.random((2, 19, 3, 4)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    x = torch.from_numpy(p) if backend == "torch" else p
    out = map_probabilities(x, "cityscapes19", "camvid11")
    out = out.numpy() if backend == "torch" else out
    assert out.shape == (2, 11, 3, 4) and out.dtype == np.float32
    for cv_name, cv_id in CV.items():
        sources = [CS[n] for n, t in CS_TO_CV.items() if t == cv_name]
        kept = 1.0 - p[:, CS["terrain"]]
        np.testing.assert_allclose(out[:, cv_id], p[:, sources].sum(1) / kept, rtol=1e-5)
    # terrain has no CamVid class: its mass is dropped and the rest renormalised to sum to 1
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    # consistent with map_labels on the argmax wherever the winning class has a counterpart
    lab = map_labels(p.argmax(1), "cityscapes19", "camvid11")
    assert ((lab == IGNORE_INDEX) | (lab <= 10)).all()


def test_map_probabilities_camvid_to_cityscapes_keeps_mass():
    p = torch.softmax(torch.randn(1, 11, 2, 2, generator=torch.Generator().manual_seed(0)), 1)
    out = map_probabilities(p, "camvid11", "cityscapes19")
    assert out.shape == (1, 19, 2, 2)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 2, 2))
    for cv_name, cs_name in CV_TO_CS.items():
        torch.testing.assert_close(out[:, CS[cs_name]], p[:, CV[cv_name]])
    unused = [CS[n] for n in CS if n not in CV_TO_CS.values()]
    assert (out[:, unused] == 0).all()


def test_colorize_uses_scheme_colours_and_black_for_ignore():
    lab = np.array([[0, 3, IGNORE_INDEX]])
    rgb = CAMVID11.colorize(lab)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0].tolist() == [list(CAMVID11.colors[0]), list(CAMVID11.colors[3]), [0, 0, 0]]
