import math

import numpy as np
import pytest
import torch

from udistill.metrics import ConfusionMatrix


def _reference(pred, target, c, ignore=255):
    m = target != ignore
    p, t = pred[m], target[m]
    ious = []
    for k in range(c):
        inter = np.sum((p == k) & (t == k))
        union = np.sum((p == k) | (t == k))
        ious.append(inter / union if union else math.nan)
    return ious, float(np.mean(p == t))


def test_matches_numpy_reference_and_streams():
    rng = np.random.default_rng(0)
    c = 5
    target = rng.integers(0, c, (3, 16, 20))
    target[:, :2] = 255
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, c, target.shape))
    pred[pred == 255] = 0
    pred[target == 4] = 0  # class 4 never predicted
    cm = ConfusionMatrix(c)
    for i in range(3):
        cm.update(torch.from_numpy(pred[i]), torch.from_numpy(target[i]))  # (H, W)
    r = cm.compute()
    ious, acc = _reference(pred, target, c)
    np.testing.assert_allclose(r["per_class_iou"], ious)
    assert r["miou"] == pytest.approx(np.nanmean(ious))
    assert r["pixel_accuracy"] == pytest.approx(acc)
    one = ConfusionMatrix(c)
    one.update(pred, target)  # (N, H, W) numpy
    assert torch.equal(one.matrix, cm.matrix)


def test_absent_class_is_nan_and_reset_merge():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [255, 0]]))
    r = cm.compute()
    assert math.isnan(r["per_class_iou"][2]) and math.isnan(r["per_class_iou"][3])
    assert r["miou"] == pytest.approx(1.0)
    other = ConfusionMatrix(4)
    other.update(torch.tensor([2]), torch.tensor([3]))
    cm.merge(other)
    r = cm.compute()
    assert r["per_class_iou"][2] == 0.0 and r["per_class_iou"][3] == 0.0
    assert r["pixel_accuracy"] == pytest.approx(3 / 4)
    cm.reset()
    assert int(cm.matrix.sum()) == 0
    assert math.isnan(cm.compute()["miou"])


def test_rejects_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        cm.update(torch.tensor([5]), torch.tensor([0]))
    with pytest.raises(TypeError):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))
