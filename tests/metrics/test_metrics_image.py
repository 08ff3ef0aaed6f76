import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from udistill.metrics import IMAGE_SCORES, image_scores, ood_metrics, threshold_at_false_alarm


def test_image_scores_values_and_mask():
    u = torch.tensor([[0.1, 0.2], [0.3, 0.9]])
    s = image_scores(u)
    assert tuple(s) == IMAGE_SCORES
    assert s["min"] == pytest.approx(0.1) and s["max"] == pytest.approx(0.9)
    assert s["mean"] == pytest.approx(0.375) and s["median"] == pytest.approx(0.25)
    assert s["median_plus_min_over_max"] == pytest.approx((0.25 + 0.1) / 0.9)
    m = image_scores(u.numpy(), valid=np.array([[True, True], [True, False]]))
    assert m["max"] == pytest.approx(0.3) and m["median"] == pytest.approx(0.2)
    z = image_scores(np.zeros((3, 3)))
    assert z["median_plus_min_over_max"] == 0.0
    with pytest.raises(ValueError):
        image_scores(u, valid=torch.zeros(2, 2, dtype=torch.bool))


@pytest.mark.parametrize("ties", [False, True])
def test_ood_metrics_match_sklearn(ties):
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 300)
    b = rng.normal(1, 1, 200)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    r = ood_metrics(a, b)
    y = np.r_[np.zeros(a.size), np.ones(b.size)]
    s = np.r_[a, b]
    assert r["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert r["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    np.testing.assert_allclose(r["roc"]["fpr"], fpr)
    np.testing.assert_allclose(r["roc"]["tpr"], tpr)
    flipped = ood_metrics(b, a)  # a score ranking OOD lower gives AUROC < 0.5
    assert flipped["auroc"] == pytest.approx(1 - r["auroc"])


def test_threshold_at_false_alarm():
    rng = np.random.default_rng(2)
    a = rng.random(200)
    for rate in (0.0, 0.05, 0.1, 0.5):
        t = threshold_at_false_alarm(a, rate)
        assert np.mean(a > t) <= rate
        assert np.mean(a >= t) > rate  # the smallest such threshold among the scores
    tied = np.r_[np.zeros(90), np.ones(10)]
    t = threshold_at_false_alarm(tied, 0.05)
    assert np.mean(tied > t) <= 0.05
    assert np.mean(np.ones(5) > threshold_at_false_alarm(np.ones(5), 1.0)) == 1.0
