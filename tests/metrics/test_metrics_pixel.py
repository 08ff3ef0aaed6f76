import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from udistill.metrics import BinnedPixelMetrics, SigmaHistogram2D, mirror_histogram


def _pixels(n=4000, seed=0, quantise_bins=None):
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < 0.25
    s = np.clip(rng.normal(0.35 + 0.25 * wrong, 0.18), 0.0, 1.0)
    if quantise_bins:  # bin centres: many exact ties, all pixels of a bin share one score
        s = (np.minimum(np.floor(s * quantise_bins), quantise_bins - 1) + 0.5) / quantise_bins
    return s, wrong


def _fpr95(wrong, s):
    """FPR where the exact ROC curve reaches TPR 0.95, linear between its two neighbouring points."""
    fpr, tpr, _ = roc_curve(wrong, s, drop_intermediate=False)
    j = int(np.argmax(tpr >= 0.95))
    if j == 0 or tpr[j] == tpr[j - 1]:
        return fpr[j]
    return fpr[j - 1] + (0.95 - tpr[j - 1]) / (tpr[j] - tpr[j - 1]) * (fpr[j] - fpr[j - 1])


def _aurc_exact(s, wrong):
    """Mean over k of the risk of the k most confident pixels; ties get their expected risk
    under a random order (errors spread evenly through a tied group)."""
    order = np.argsort(s, kind="stable")
    s, w = s[order], wrong[order].astype(float)
    errs = np.cumsum(w)
    n = s.size
    expected = errs.copy()
    start = 0
    for end in np.r_[np.flatnonzero(np.diff(s)) + 1, n]:
        prev = errs[start - 1] if start else 0.0
        m, e = end - start, errs[end - 1] - prev
        expected[start:end] = prev + e * np.arange(1, m + 1) / m
        start = end
    return float(np.mean(expected / np.arange(1, n + 1)))


def test_quantised_scores_equal_sklearn_exactly():
    s, wrong = _pixels(quantise_bins=128)
    m = BinnedPixelMetrics(bins=128)
    m.update(s, wrong)
    r = m.compute()
    assert r["auroc"] == pytest.approx(roc_auc_score(wrong, s), abs=1e-12)
    assert r["aupr"] == pytest.approx(average_precision_score(wrong, s), abs=1e-12)
    assert r["fpr95"] == pytest.approx(_fpr95(wrong, s), abs=1e-12)
    assert r["aurc"] == pytest.approx(_aurc_exact(s, wrong), abs=1e-12)


def test_continuous_scores_within_1e3():
    s, wrong = _pixels(seed=1)
    m = BinnedPixelMetrics(bins=1 << 16)  # enough bins that few pixels share one
    m.update(torch.from_numpy(s).float(), torch.from_numpy(wrong))
    r = m.compute()
    assert r["auroc"] == pytest.approx(roc_auc_score(wrong, s), abs=1e-3)
    assert r["aupr"] == pytest.approx(average_precision_score(wrong, s), abs=1e-3)
    assert r["fpr95"] == pytest.approx(_fpr95(wrong, s), abs=1e-3)
    o = np.argsort(s)
    assert r["aurc"] == pytest.approx(np.mean(np.cumsum(wrong[o]) / np.arange(1, s.size + 1)), abs=1e-3)
    assert r["n_pixels"] == s.size and r["n_wrong"] == int(wrong.sum())


def test_eaurc_zero_for_perfect_ranking():
    wrong = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    s = np.where(wrong, 0.9, 0.1)
    m = BinnedPixelMetrics(bins=64)
    m.update(s, wrong)
    r = m.compute()
    assert r["eaurc"] == pytest.approx(0.0, abs=1e-12)
    assert r["auroc"] == 1.0 and r["fpr95"] == 0.0 and r["aupr"] == 1.0


def test_ece_and_brier_vs_numpy():
    rng = np.random.default_rng(2)
    n, c = 3, 4
    logits = rng.normal(0, 2, (n, c, 8, 9))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    target = rng.integers(0, c, (n, 8, 9))
    target[:, 0, :3] = 255
    pred = probs.argmax(1)
    conf = probs.max(1)
    wrong = pred != target
    m = BinnedPixelMetrics()
    m.update(
        torch.from_numpy(1 - conf),
        torch.from_numpy(wrong),
        confidence=torch.from_numpy(conf),
        probs=torch.from_numpy(probs).float(),
        target=torch.from_numpy(target),
    )
    r = m.compute()
    valid = target != 255
    cv, wv = conf[valid], wrong[valid]
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        k = (cv > lo) & (cv <= hi)
        if k.any():
            ece += k.mean() * abs((~wv[k]).mean() - cv[k].mean())
    assert r["ece"] == pytest.approx(ece, abs=1e-9)
    onehot = np.eye(c)[np.where(valid, target, 0)].transpose(0, 3, 1, 2)
    brier = ((probs - onehot) ** 2).sum(1)[valid].mean()
    assert r["brier"] == pytest.approx(brier, abs=1e-6)
    assert r["n_pixels"] == int(valid.sum())
    # precomputed per-pixel Brier + explicit valid mask gives the same
    pre = np.where(valid, ((probs - onehot) ** 2).sum(1), 0.0)
    m2 = BinnedPixelMetrics()
    m2.update(1 - conf, wrong, confidence=conf, valid=valid, brier=pre)
    r2 = m2.compute()
    assert r2["brier"] == pytest.approx(brier, abs=1e-12)
    assert r2["ece"] == pytest.approx(ece, abs=1e-12)
    # single image (C, H, W) layout
    m3 = BinnedPixelMetrics()
    m3.update(1 - conf[0], wrong[0], probs=probs[0], target=target[0])
    b0 = ((probs[0] - onehot[0]) ** 2).sum(0)[valid[0]].mean()
    assert m3.compute()["brier"] == pytest.approx(b0, abs=1e-6)


def test_streaming_merge_and_state_roundtrip():
    s, wrong = _pixels(3000, seed=3)
    conf = 1 - s
    whole = BinnedPixelMetrics(bins=512)
    whole.update(s, wrong, confidence=conf)
    parts = BinnedPixelMetrics(bins=512)
    a, b = BinnedPixelMetrics(bins=512), BinnedPixelMetrics(bins=512)
    for i, idx in enumerate(np.array_split(np.arange(s.size), 6)):
        parts.update(s[idx], wrong[idx], confidence=conf[idx])
        (a if i % 2 else b).update(s[idx], wrong[idx], confidence=conf[idx])
    ref = whole.compute()
    for other in (parts.compute(), a.merge(b).compute()):
        for k in ("auroc", "aupr", "fpr95", "ece", "aurc", "eaurc"):
            assert other[k] == pytest.approx(ref[k], abs=1e-12)
    c = BinnedPixelMetrics(bins=512)
    c.load_state_tensor(whole.state_tensor())
    assert c.compute()["aurc"] == ref["aurc"]
    with pytest.raises(ValueError):
        whole.merge(BinnedPixelMetrics(bins=256))


def test_memory_is_constant():
    rng = np.random.default_rng(4)
    m = BinnedPixelMetrics()
    sizes = []
    for i in range(100):
        s = rng.random(500)
        m.update(s, s > rng.random(500), confidence=1 - s, brier=s)
        if i + 1 in (10, 100):
            sizes.append((m.state_nbytes, m.state_tensor().numel()))
    assert sizes[0] == sizes[1]


def test_curves_histogram_json_and_clamping():
    s, wrong = _pixels(20000, seed=5)
    s[:10] = 1.5  # out of range: clamped into the last bin
    s[10:15] = -0.2
    m = BinnedPixelMetrics()
    m.update(s, wrong, confidence=np.clip(1 - s, 0, 1), target=np.where(np.arange(s.size) < 3, 255, 0))
    r = m.compute()
    json.dumps(r)
    assert r["clamped"] == 12 and r["n_pixels"] == s.size - 3
    rc, roc = r["risk_coverage"], r["roc"]
    assert 2 <= len(rc["coverage"]) <= 200 and len(rc["coverage"]) == len(rc["risk"])
    assert rc["coverage"][-1] == pytest.approx(1.0) and rc["risk"][-1] == pytest.approx(r["error_rate"])
    assert np.all(np.diff(rc["coverage"]) > 0)
    assert 2 <= len(roc["fpr"]) <= 200 and roc["fpr"][0] == 0.0 and roc["tpr"][-1] == pytest.approx(1.0)
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(r["auroc"], abs=5e-3)
    h = r["histogram"]
    assert len(h["edges"]) == 65 and len(h["pos"]) == 64
    assert sum(h["pos"]) == pytest.approx(1.0) and sum(h["neg"]) == pytest.approx(1.0)
    assert h["n_pos"] + h["n_neg"] == r["n_pixels"]
    rel = r["reliability"]
    assert sum(rel["count"]) == r["n_pixels"]
    mir = mirror_histogram(h)
    assert mir["pos"][0] == h["pos"][-1] and mir["edges"][0] == pytest.approx(0.0)
    empty = BinnedPixelMetrics().compute()
    assert math.isnan(empty["auroc"]) and math.isnan(empty["ece"]) and math.isnan(empty["brier"])
    with pytest.raises(ValueError):
        m.update(np.array([np.nan]), np.array([True]))


def test_sigma_histogram_2d():
    rng = np.random.default_rng(6)
    t = rng.random((2, 10, 10)) * 0.5
    st = np.clip(t + rng.normal(0, 0.05, t.shape), 0, None)
    st[0, 0, 0] = 0.9  # clamped into the last bin
    wrong = rng.random(t.shape) < 0.3
    h = SigmaHistogram2D(bins=16, high=0.5)
    h.update(torch.from_numpy(t[0]), st[0], wrong[0])
    h.update(t[1], st[1], wrong[1])
    size = h.state_nbytes
    r = h.compute()
    json.dumps(r)
    edges = np.linspace(0, 0.5, 17)
    for key, sel in (("correct", ~wrong), ("wrong", wrong)):
        ref, _, _ = np.histogram2d(t[sel], np.clip(st[sel], 0, 0.4999), bins=[edges, edges])
        np.testing.assert_array_equal(np.array(r[key]), ref)
    h.update(t, st, wrong, valid=np.zeros(t.shape, bool))
    assert h.state_nbytes == size
    assert np.array(h.compute()["correct"]).sum() == (~wrong).sum()
