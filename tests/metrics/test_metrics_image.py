import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from udistill.metrics import (
    IMAGE_SCORES,
    binomial_upper_bound,
    conformal_min_frames,
    conformal_threshold,
    image_scores,
    ood_metrics,
    threshold_at_false_alarm,
)


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
    assert r["aupr"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
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


@pytest.mark.parametrize("n,rate", [(20, 0.05), (30, 0.1), (12, 0.25)])
def test_conformal_threshold_holds_its_rate_where_the_plain_quantile_does_not(n, rate):
    """Over many exchangeable draws (calibration and new frames from one distribution), the
    conformal threshold flags new frames at most at the target rate on average; the plain
    empirical quantile exceeds it at small n."""
    rng = np.random.default_rng(0)
    conformal, plain = [], []
    for _ in range(4000):
        cal, new = rng.random(n), rng.random(200)
        conformal.append(np.mean(new > conformal_threshold(cal, rate)))
        plain.append(np.mean(new > threshold_at_false_alarm(cal, rate)))
    assert np.mean(conformal) <= rate + 0.01
    assert np.mean(plain) > rate + 0.01


def test_conformal_threshold_rank_and_minimum_frames():
    a = np.arange(1.0, 20.0)  # n = 19: k = ceil(20 * 0.95) = 19, the largest score
    t = conformal_threshold(a, 0.05)
    assert a[-1] < t <= a[-1] + 1e-5
    t = conformal_threshold(np.arange(1.0, 11.0), 0.25)  # n = 10: k = ceil(11 * 0.75) = 9
    assert t == pytest.approx(9.5)
    assert conformal_min_frames(0.05) == 19 and conformal_min_frames(0.1) == 9 and conformal_min_frames(0.5) == 1
    with pytest.raises(ValueError, match="at least 19"):
        conformal_threshold(np.arange(18.0), 0.05)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        conformal_threshold(np.arange(18.0), float("nan"))


def test_binomial_upper_bound_matches_known_values():
    assert binomial_upper_bound(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59), rel=1e-6)  # rule of three
    assert binomial_upper_bound(5, 100) == pytest.approx(0.1023, abs=2e-4)  # one-sided Clopper-Pearson
    assert binomial_upper_bound(3, 3) == 1.0
