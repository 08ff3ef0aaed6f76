import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from udistill.metrics import CorrelationMeter


def _data(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 0.05, n) + 1000.0  # a large offset stresses the float64 moments
    y = 0.8 * (x - 1000.0) + rng.normal(0, 0.03, n)
    cls = rng.integers(0, 4, n)
    y[cls == 3] = rng.normal(0, 1, int(np.sum(cls == 3)))  # class 3 uncorrelated
    return x, y, cls


def test_exact_vs_scipy_streamed():
    x, y, cls = _data()
    m = CorrelationMeter()
    for part in np.array_split(np.arange(x.size), 7):
        m.update(torch.from_numpy(x[part]), y[part], cls=cls[part])
    r = m.compute()
    assert r["pearson"] == pytest.approx(pearsonr(x, y).statistic, abs=1e-9)
    assert r["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert r["n"] == x.size and r["n_sampled"] == x.size
    for c in range(4):
        k = cls == c
        pc = r["per_class"][c]
        assert pc["pearson"] == pytest.approx(pearsonr(x[k], y[k]).statistic, abs=1e-9)
        assert pc["spearman"] == pytest.approx(spearmanr(x[k], y[k]).statistic, abs=1e-12)
        assert pc["n"] == int(k.sum())


def test_reservoir_bounded_and_close():
    x, y, cls = _data(20000, seed=3)
    m = CorrelationMeter(max_samples=4000, per_class_samples=1500, seed=5)
    for part in np.array_split(np.arange(x.size), 10):
        m.update(x[part], y[part], cls=cls[part])
    size = m.state_nbytes
    r = m.compute()
    assert r["n_sampled"] == 4000
    assert r["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=0.05)
    m.update(x, y, cls=cls)
    assert m.state_nbytes == size
    assert r["pearson"] == pytest.approx(pearsonr(x, y).statistic, abs=1e-9)


def test_merge_valid_ignore_and_degenerate():
    x, y, cls = _data(3000, seed=4)
    cls[:100] = 255
    a, b = CorrelationMeter(seed=0), CorrelationMeter(seed=1)
    a.update(x[:1000], y[:1000], cls=cls[:1000])
    b.update(x[1000:], y[1000:], cls=cls[1000:])
    r = a.merge(b).compute()
    assert r["pearson"] == pytest.approx(pearsonr(x, y).statistic, abs=1e-9)
    assert r["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert 255 not in r["per_class"]
    v = CorrelationMeter()
    v.update(x, y, valid=x > np.median(x))
    assert v.compute()["n"] == int(np.sum(x > np.median(x)))
    const = CorrelationMeter()
    const.update(np.ones(10), np.arange(10.0))
    assert math.isnan(const.compute()["pearson"]) and math.isnan(const.compute()["spearman"])
    with pytest.raises(ValueError):
        const.update(np.array([np.nan]), np.array([1.0]))
