import numpy as np
import torch

from udistill.core.losses import distillation_loss


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_each_term_matches_numpy():
    rng = np.random.default_rng(0)
    n, c, h, w = 2, 4, 3, 5
    logits = rng.normal(size=(n, c, h, w))
    sigma = rng.uniform(0.01, 0.99, size=(n, c, h, w))
    members = _softmax(rng.normal(size=(6, n, c, h, w)), axis=2)
    m, s = members.mean(0), members.std(0)  # population std (ddof=0)
    labels = rng.integers(0, c, size=(n, h, w))
    labels[0, 0, :2] = 255
    t, alpha, beta = 2.0, 0.1, 1.1

    out = distillation_loss(
        *(torch.tensor(a, dtype=torch.float32) for a in (logits, sigma, m, s)),
        torch.tensor(labels),
        temperature=t,
        alpha=alpha,
        beta=beta,
    )

    p_s = _softmax(logits / t, axis=1)
    kl = (m * (np.log(m) - np.log(p_s))).sum(1).mean()
    p1 = _softmax(logits, axis=1)
    valid = labels != 255
    onehot_p = np.take_along_axis(p1, np.where(valid, labels, 0)[:, None], axis=1)[:, 0]
    ce = -np.log(onehot_p[valid]).mean()
    mse = ((sigma - s) ** 2).mean()
    assert np.isclose(out.distill.item(), t * t * kl, rtol=1e-4)
    assert np.isclose(out.cls.item(), alpha * ce, rtol=1e-4)
    assert np.isclose(out.unc.item(), beta * mse, rtol=1e-4)
    assert np.isclose(out.total.item(), t * t * kl + alpha * ce + beta * mse, rtol=1e-4)


def test_kl_is_zero_when_student_matches_teacher():
    logits = torch.randn(1, 3, 4, 4)
    m = torch.softmax(logits, 1)
    out = distillation_loss(logits, torch.zeros_like(m), m, torch.zeros_like(m), torch.full((1, 4, 4), 255))
    assert out.distill.item() < 1e-6
    assert out.cls.item() == 0.0
