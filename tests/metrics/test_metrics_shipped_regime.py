"""The binned pixel metrics in the regime evaluation ships: 4096 log-spaced bins and the
small uncertainties of a confident model (scores concentrated in [1e-4, 1e-2]), checked
against an exact scikit-learn computation; and the predictor calibration metrics against a
direct numpy computation."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from tests.metrics.test_metrics_pixel import _fpr95 as _exact_fpr95
from udistill.config import EvaluateConfig
from udistill.metrics import BinnedPixelMetrics
from udistill.metrics.calibration import PredictorCalibration

SHIPPED_BINS = EvaluateConfig().bins


def _confident_pixels(n=200_000, seed=0):
    """A confident model: log-normal uncertainties, most in [1e-4, 1e-2]; wrong pixels higher."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < 0.08
    log_s = rng.normal(np.log(1e-3) + 1.6 * wrong, 0.9)
    s = np.exp(log_s).astype(np.float32).astype(np.float64)
    return s, wrong


def test_scores_really_sit_in_the_confident_regime():
    s, _ = _confident_pixels()
    assert 0.85 < np.mean((s > 1e-4) & (s < 1e-2)) < 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_log_bins_match_sklearn_where_confident_models_live(seed):
    s, wrong = _confident_pixels(seed=seed)
    m = BinnedPixelMetrics(bins=SHIPPED_BINS, spacing="log", floor=1e-6)  # what evaluate.py builds
    m.update(torch.from_numpy(s).float(), torch.from_numpy(wrong))
    r = m.compute()
    assert r["auroc"] == pytest.approx(roc_auc_score(wrong, s), abs=1e-3)
    assert r["fpr95"] == pytest.approx(_exact_fpr95(wrong, s), abs=0.01)
    assert r["aupr"] == pytest.approx(average_precision_score(wrong, s), abs=2e-3)
    assert r["aupr_over_error_rate"] == pytest.approx(r["aupr"] / wrong.mean(), rel=1e-9)
    o = np.argsort(s, kind="stable")
    aurc = np.mean(np.cumsum(wrong[o]) / np.arange(1, s.size + 1))
    assert r["aurc"] == pytest.approx(aurc, abs=1e-3)
    assert r["clamped"] == 0


def test_linear_bins_fail_for_a_very_confident_model_and_log_bins_do_not():
    """Why log bins: with most scores below 1/4096, 4096 linear bins on [0, 1] tie most
    pixels in bin 0 and AUROC / FPR95 come out far off; log bins stay exact."""
    rng = np.random.default_rng(0)
    wrong = rng.random(200_000) < 0.08
    s = np.exp(rng.normal(np.log(5e-5) + 2.0 * wrong, 0.9))
    exact_auroc, exact_fpr95 = roc_auc_score(wrong, s), _exact_fpr95(wrong, s)
    lin = BinnedPixelMetrics(bins=SHIPPED_BINS, spacing="linear")
    log = BinnedPixelMetrics(bins=SHIPPED_BINS, spacing="log")
    for m in (lin, log):
        m.update(s, wrong)
    assert abs(lin.compute()["auroc"] - exact_auroc) > 0.05 and abs(lin.compute()["fpr95"] - exact_fpr95) > 0.2
    assert log.compute()["auroc"] == pytest.approx(exact_auroc, abs=1e-3)
    assert log.compute()["fpr95"] == pytest.approx(exact_fpr95, abs=0.01)


def test_scores_below_the_floor_are_tied_and_counted():
    m = BinnedPixelMetrics(bins=64, spacing="log", floor=1e-3)
    m.update(np.array([0.0, 1e-5, 5e-4, 0.5, 1.2]), np.array([False, True, False, True, True]))
    r = m.compute()
    assert r["below_floor"] == 3 and r["clamped"] == 1  # 1.2 > high
    edges = m.edges()
    assert edges[0] == 0 and edges[1] == pytest.approx(1e-3) and edges[-1] == pytest.approx(1.0)
    assert np.all(np.diff(edges) > 0)


def _probs(n=3000, c=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, c))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    target = np.array([rng.choice(c, p=row) if rng.random() < 0.7 else rng.integers(c) for row in p])
    return p, target


def test_predictor_calibration_against_numpy_and_sklearn():
    p, t = _probs()
    t_ign = t.copy()
    t_ign[:50] = 255  # ignored pixels leave every number
    cal = PredictorCalibration(ece_bins=15)
    # as (N, C, H, W) = (1, C, 1, n)
    cal.update(torch.from_numpy(p.T[None, :, None, :]), torch.from_numpy(t_ign[None, None, :]))
    r = cal.compute()
    p, t = p[50:], t[50:]
    conf, pred = p.max(1), p.argmax(1)
    correct = pred == t
    assert r["error_rate"] == pytest.approx(1 - correct.mean(), abs=1e-9)
    assert r["nll"] == pytest.approx(log_loss(t, p, labels=range(p.shape[1])), abs=1e-9)
    onehot = np.eye(p.shape[1])[t]
    assert r["brier"] == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-9)
    b = np.clip(np.ceil(conf * 15) - 1, 0, 14).astype(int)
    ece = sum(abs(correct[b == k].sum() - conf[b == k].sum()) for k in range(15)) / len(t)
    assert r["ece"] == pytest.approx(ece, abs=1e-7)  # probabilities are reduced in float32
    # adaptive ECE: 15 groups of (nearly) equal mass sorted by confidence
    order = np.argsort(-conf)
    groups = np.array_split(order, 15)
    ece_ad = sum(abs(correct[g].sum() - conf[g].sum()) for g in groups) / len(t)
    assert r["ece_adaptive"] == pytest.approx(ece_ad, abs=0.01)
    assert r["n_pixels"] == len(t)


def test_two_scores_of_one_predictor_share_its_calibration():
    """ECE and Brier are a predictor's: the same whatever score ranks its errors."""
    from udistill.core.pixel_scores import PredictorOutput, score_map

    p, t = _probs(n=500, c=5, seed=3)
    probs = torch.from_numpy(p.T[None, :, None, :]).float()
    out = PredictorOutput(probs)
    msp, ent = score_map("msp", out), score_map("entropy", out)
    assert not torch.allclose(msp, ent)
    assert float(ent.max()) <= 1 and float(ent.min()) >= 0
    assert torch.allclose(msp, 1 - probs.max(1).values)
    assert math.isclose(
        float(ent[0, 0, 0]), float(-(probs[0, :, 0, 0] * probs[0, :, 0, 0].log()).sum() / math.log(5)), rel_tol=1e-5
    )
