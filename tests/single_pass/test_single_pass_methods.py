"""The single-pass methods against known answers: temperature scaling lowers the validation
NLL and keeps the argmax; the streamed feature-density statistics equal a direct numpy fit;
a multi-head ensemble of identical heads is that head, with no spread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toy import ToyDataset
from udistill.data.labels import IGNORE_INDEX
from udistill.models.build import SegOutput, build_model
from udistill.single_pass.common import labels_to_features, to_image, trunk
from udistill.single_pass.feature_density import accumulate_features, fit_density, load_density, save_density
from udistill.single_pass.multi_head import (
    MultiHead,
    MultiHeadPredictor,
    build_multi_head,
    load_multi_head,
    save_multi_head,
    train_heads,
)
from udistill.single_pass.temperature import T_MAX, T_MIN, TemperatureScaled, collect_logits, fit_temperature, nll


@pytest.fixture
def model(tiny_model_cfg):
    torch.manual_seed(0)
    return build_model(tiny_model_cfg, 3).eval()


class ColourModel(torch.nn.Module):
    """Logits = −k × (squared distance of each pixel's colour to the toy classes' colours +
    seeded noise): informative, often wrong and overconfident, so its best temperature lies
    inside the search bounds, above 1."""

    def __init__(self, k: float = 50.0, noise: float = 0.2):
        super().__init__()
        self.k, self.noise = k, noise
        self.register_buffer("colours", torch.tensor([[40, 40, 40], [200, 60, 60], [60, 200, 60]]) / 255.0)

    def forward(self, x):
        d = ((x[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        eps = torch.randn(d.shape, generator=torch.Generator().manual_seed(0))
        return SegOutput(-self.k * (d + self.noise * eps))


def test_temperature_scaling_lowers_the_validation_nll_and_never_changes_the_argmax(model):
    val = ToyDataset(n=4, seed=1)
    z, y = collect_logits(ColourModel(), val, "cpu", batch_size=3)
    assert z.shape == (y.numel(), 3) and (y != IGNORE_INDEX).all()
    fit = fit_temperature(z, y)
    assert T_MIN * 1.1 < fit["temperature"] < T_MAX / 1.1 and fit["temperature"] > 1, fit
    assert fit["nll"] < fit["nll_at_1"] - 1e-3
    assert fit["nll"] == pytest.approx(nll(z, y, fit["temperature"]))
    for t in (fit["temperature"] * 0.9, fit["temperature"] * 1.1):  # a minimum, not just an improvement
        assert nll(z, y, t) >= fit["nll"] - 1e-9
    x = torch.stack([val[i]["image"] for i in range(len(val))])
    for m, t in ((ColourModel(), fit["temperature"]), (model, 0.2), (model, 7.0)):
        with torch.no_grad():
            base = m(x).logits
        assert torch.equal(TemperatureScaled(m, t)(x).probs.argmax(1), base.argmax(1))


def test_temperature_sample_is_bounded_and_seeded(model):
    val = ToyDataset(n=4, seed=1)
    z, y = collect_logits(model, val, "cpu", max_pixels=400, seed=3)
    z2, y2 = collect_logits(model, val, "cpu", max_pixels=400, seed=3)
    assert z.shape[0] == 400 and torch.equal(z, z2) and torch.equal(y, y2)


def _direct_features(model, ds):
    xs, ys = [], []
    for i in range(len(ds)):
        item = ds[i]
        feats, size = trunk(model, item["image"][None])
        lab = labels_to_features(torch.as_tensor(item["label"])[None], size, tuple(feats.shape[-2:]))
        xs.append(feats[0].permute(1, 2, 0).reshape(-1, feats.shape[1]).double().numpy())
        ys.append(lab.reshape(-1).numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = y != IGNORE_INDEX
    return x[keep], y[keep]


def test_streamed_density_statistics_equal_a_direct_numpy_fit(model):
    ds = ToyDataset(n=5, seed=2)
    acc = accumulate_features(model, ds, "cpu", num_classes=3, batch_size=2, reservoir=500)
    x, y = _direct_features(model, ds)
    classes = np.unique(y)
    assert acc.count.sum() == len(y) and acc.images == 5
    for c in classes:
        np.testing.assert_allclose(acc.mean[c].numpy(), x[y == c].mean(0), rtol=1e-5, atol=1e-5)
    per_class = acc.covariance("per-class").numpy()
    for k, c in enumerate(classes):
        np.testing.assert_allclose(per_class[k], np.cov(x[y == c].T), rtol=1e-5, atol=1e-5)
    pooled = sum((np.sum(y == c) - 1) * np.cov(x[y == c].T) for c in classes) / (len(y) - len(classes))
    np.testing.assert_allclose(acc.covariance("shared")[0].numpy(), pooled, rtol=1e-5, atol=1e-5)
    # the fitted log density is the Gaussian mixture's, computed directly
    density, info = fit_density(acc, "shared", jitter=1e-3)
    assert info["jitter_used"] == 1e-3 and info["pixels"] == len(y)
    cov = pooled + 1e-3 * np.trace(pooled) / pooled.shape[0] * np.eye(pooled.shape[0])
    _, logdet = np.linalg.slogdet(cov)
    inv = np.linalg.inv(cov)
    prior = np.array([np.mean(y == c) for c in classes])
    pts = x[:7]
    logs = []
    for k, c in enumerate(classes):
        d = pts - x[y == c].mean(0)
        m = np.einsum("pd,de,pe->p", d, inv, d)
        logs.append(np.log(prior[k]) - 0.5 * (m + logdet + x.shape[1] * math.log(2 * math.pi)))
    direct = -np.logaddexp.reduce(np.stack(logs), axis=0)
    got = density.raw_score(torch.from_numpy(pts).float().T[None, :, :, None])[0, :, 0].double().numpy()
    np.testing.assert_allclose(got, direct, rtol=1e-3, atol=1e-3)


def test_density_score_choices_are_monotone_maps_and_round_trip(model, tmp_path):
    ds = ToyDataset(n=3, seed=2)
    acc = accumulate_features(model, ds, "cpu", num_classes=3, batch_size=3, reservoir=300)
    x = torch.stack([ds[i]["image"] for i in range(2)])
    feats, size = trunk(model, x)
    for cov in ("shared", "per-class"):
        for score in ("log_density", "mahalanobis"):
            density, info = fit_density(acc, cov, 1e-4, score)
            u = density(feats, size)
            s = to_image(density.raw_score(feats)[:, None], size)[:, 0]
            assert u.shape == (2, 32, 48) and float(u.min()) >= 0 and float(u.max()) <= 1
            order = torch.argsort(s.flatten())
            assert (torch.diff(u.flatten()[order]) >= 0).all()  # the [0, 1] map keeps the ranking
            save_density(tmp_path / "d.safetensors", density, info)
            back, meta = load_density(tmp_path / "d.safetensors")
            assert meta["covariance"] == cov and meta["score"] == score
            torch.testing.assert_close(back(feats, size), u, rtol=1e-6, atol=1e-7)  # same tensors, other alignment


def test_identical_heads_give_zero_std_and_exactly_the_single_heads_probabilities(model):
    x = torch.stack([ToyDataset(n=2)[i]["image"] for i in range(2)])
    feats, size = trunk(model, x)
    for shared in (None, model.head.block):
        mh = MultiHead(model.cfg.decoder_channels, model.cfg.head_channels, 3, 4, shared).eval()
        for h in mh.heads[1:]:
            h.load_state_dict(mh.heads[0].state_dict())
        with torch.no_grad():
            out = mh.predict(feats, size)
        inner = shared(feats) if shared is not None else feats
        single = torch.softmax(to_image(mh.heads[0](inner), size).float(), 1)
        assert torch.equal(out.spread, torch.zeros_like(out.spread))
        assert torch.equal(out.probs, single)
        assert float(out.mutual_info.abs().max()) == 0.0
    # heads that are copies of the baseline's own head give the baseline's probabilities
    mh = MultiHead(model.cfg.decoder_channels, model.cfg.head_channels, 3, 3).eval()
    for h in mh.heads:
        h.load_state_dict(model.head.state_dict())
    with torch.no_grad():
        base = torch.softmax(model(x).logits, 1)
    torch.testing.assert_close(MultiHeadPredictor(model, mh)(x).probs, base, rtol=1e-6, atol=1e-6)


def test_multi_head_training_resumes_to_the_same_heads_and_round_trips(model, tmp_path):
    ds = ToyDataset(n=6, seed=4)

    def trained(epochs, state):
        heads = build_multi_head(model, 3, 8, seed=1)
        hist = train_heads(model, heads, ds, "cpu", epochs, 1e-2, 4, None, 1, 64, state_path=state, log=lambda _: None)
        return heads, hist

    straight, hist = trained(2, None)
    assert len(hist) == 2 and hist[1]["loss"] < hist[0]["loss"]
    trained(1, tmp_path / "s.safetensors")  # stopped after one epoch
    resumed, hist2 = trained(2, tmp_path / "s.safetensors")
    assert [h["epoch"] for h in hist2] == [1, 2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # heads differ (own seeds, own bootstrap): the ensemble has a spread
    x = ds[0]["image"][None]
    assert float(MultiHeadPredictor(model, straight)(x).spread.mean()) > 0
    save_multi_head(tmp_path / "m.safetensors", straight, {"epochs": 2})
    back, meta = load_multi_head(tmp_path / "m.safetensors")
    assert meta["shape"]["heads"] == 3
    torch.testing.assert_close(MultiHeadPredictor(model, back)(x).probs, MultiHeadPredictor(model, straight)(x).probs)
