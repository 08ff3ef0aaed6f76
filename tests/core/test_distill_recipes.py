"""Faithful distillation: the σ head's starting point, the σ-loss variants, perturbed views
that give teacher and student the same pixels, and a tiny run in which σ moves toward Σ."""

import numpy as np
import pytest
import torch

from tests.toy import ToyDataset
from udistill.config import DistillConfig, ModelConfig, TrainConfig
from udistill.core.ensemble import Ensemble
from udistill.core.losses import distillation_loss, sigma_loss_fn
from udistill.data.transforms import get_recipe
from udistill.models import build_model, to_student
from udistill.pipeline.distill import distillation_objective, init_sigma_bias, resolve_recipe, teacher_targets
from udistill.pipeline.perturb import PerturbedViews, ViewDataset
from udistill.pipeline.targets import build_cache, reduce_maps
from udistill.train.loop import fit
from udistill.train.views import TrainView

MODEL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)


@pytest.fixture(scope="module")
def ensemble():
    members = []
    for k in range(3):
        torch.manual_seed(k)
        members.append(build_model(MODEL, 3))
    return Ensemble(members)


@pytest.mark.parametrize("heads", ["prediction+uncertainty", "prediction+uncertainty-light"])
def test_bias_init_puts_the_initial_sigma_at_the_intended_value(heads):
    torch.manual_seed(0)
    student = to_student(build_model(MODEL, 3), heads).eval()
    target = torch.tensor([0.002, 0.01, 0.05])
    init_sigma_bias(student, target)
    sigma = student(torch.rand(2, 3, 32, 48)).sigma
    assert torch.allclose(sigma, target.view(1, 3, 1, 1).expand_as(sigma), rtol=1e-4)
    fresh = to_student(build_model(MODEL, 3), heads).eval()(torch.rand(1, 3, 32, 48)).sigma
    assert abs(float(fresh.detach().mean()) - 0.5) < 0.2  # what the paper's fresh head starts at


def test_sigma_loss_variants_follow_their_equations():
    s = torch.tensor([0.01, 0.2, 0.5])
    t = torch.tensor([0.02, 0.1, 0.5])
    assert float(sigma_loss_fn("mse")(s, t)) == pytest.approx(float(((s - t) ** 2).mean()))
    assert float(sigma_loss_fn("log-mse")(s, t)) == pytest.approx(
        float(((torch.log(s + 1e-3) - torch.log(t + 1e-3)) ** 2).mean()), rel=1e-6
    )
    assert float(sigma_loss_fn("sqrt-mse")(s, t)) == pytest.approx(float(((s.sqrt() - t.sqrt()) ** 2).mean()), rel=1e-5)
    # scale-aware: a factor of 2 too high counts the same at 0.001 and at 0.1 in log space
    small = sigma_loss_fn("log-mse")(torch.tensor([0.02]), torch.tensor([0.01]))
    large = sigma_loss_fn("log-mse")(torch.tensor([0.2]), torch.tensor([0.1]))
    mse_small = sigma_loss_fn("mse")(torch.tensor([0.02]), torch.tensor([0.01]))
    mse_large = sigma_loss_fn("mse")(torch.tensor([0.2]), torch.tensor([0.1]))
    assert float(large / small) < 1.5 and float(mse_large / mse_small) == pytest.approx(100, rel=1e-3)
    with pytest.raises(ValueError):
        sigma_loss_fn("l1")


def test_recipes_resolve_and_explicit_keys_override():
    assert resolve_recipe(DistillConfig()).sigma_loss == "mse"
    r = resolve_recipe(DistillConfig(recipe="udistill", sigma_loss="log-mse"))
    assert (r.sigma_loss, r.sigma_init, r.views) == ("log-mse", "teacher-mean", "perturb")
    from udistill.errors import ConfigError

    with pytest.raises(ConfigError, match="distill.recipe"):
        resolve_recipe(DistillConfig(recipe="nope"))


def test_cached_views_give_teacher_and_student_the_same_pixels(tmp_path, ensemble):
    data = ToyDataset(n=4)
    views = PerturbedViews(count=3, seed=5)
    cache = build_cache(ensemble, ViewDataset(data, views), tmp_path / "cache", progress=False, reduction=4)
    view = TrainView(data, get_recipe("none"), seed=0, targets=cache, views=views)
    seen_k = set()
    for epoch in range(3):
        view.epoch = epoch
        for i in range(len(data)):
            item = view[i]
            t = ensemble(item["image"][None])
            # the cached maps are the teacher's output on exactly the pixels the student gets,
            # area-averaged to the cache's 1/4 resolution
            assert item["teacher_mean"].shape == (3, 8, 12)
            assert torch.allclose(item["teacher_mean"].float(), reduce_maps(t.mean, 4)[0], atol=2e-3)
            assert torch.allclose(item["teacher_std"].float(), reduce_maps(t.std, 4)[0], atol=2e-3)
            clean = data[i]["image"]
            seen_k.add(bool(torch.equal(item["image"], clean)))
    assert seen_k == {True, False}  # clean view 0 and perturbed views both occur


def test_views_are_deterministic_perturbed_and_never_weather(ensemble):
    data = ToyDataset(n=4)
    v = PerturbedViews(count=4, seed=1)
    a, b = v.view(data, 2, 3), v.view(data, 2, 3)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], data[2]["image"])
    online = PerturbedViews(count=None, seed=1, clean=0.0)
    x0 = online.sample(data, 1, epoch=0)[0]["image"]
    x1 = online.sample(data, 1, epoch=1)[0]["image"]
    assert not torch.equal(x0, x1)  # a fresh view each epoch online
    import inspect

    import udistill.pipeline.perturb as perturb

    assert "weather" not in inspect.getsource(perturb).split('"""', 2)[2]  # no evaluation shift generator is used


def test_online_teacher_computes_in_float32_inside_autocast(ensemble):
    x = torch.rand(1, 3, 32, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean, std = teacher_targets(ensemble, x, "fp32")
        assert std.dtype == torch.float32
        ref = ensemble(x)
    exact = ensemble(x)
    assert torch.allclose(std, exact.std, atol=1e-6)
    assert ref.std.dtype == torch.float32  # Welford runs in float32, but its inputs were bf16 logits
    assert not torch.allclose(ref.mean, exact.mean, atol=1e-6)


def _agreement(student, ensemble, data):
    """(MSE of σ vs Σ, Pearson of U_s vs U_t, KL) on the training images."""
    student.eval()
    x = torch.stack([data[i]["image"] for i in range(len(data))])
    labels = torch.stack([data[i]["label"] for i in range(len(data))])
    with torch.no_grad():
        out, t = student(x), ensemble(x)
        loss = distillation_loss(out.logits, out.sigma, t.mean, t.std, labels)
    us, ut = out.sigma.mean(1).flatten().numpy(), t.std.mean(1).flatten().numpy()
    pearson = float(np.corrcoef(us, ut)[0, 1]) if us.std() > 0 else 0.0
    return float(loss.unc / 1.1), pearson, float(loss.distill)


def test_tiny_distillation_moves_sigma_toward_sigma_and_p_toward_m(tmp_path, ensemble):
    """The distillation loss alone (alpha = 0: no labels pulling elsewhere) moves a fresh
    student's p toward M (KL falls) and its σ toward Σ (MSE falls, correlation rises)."""
    data = ToyDataset(n=8)
    torch.manual_seed(99)
    student = to_student(build_model(MODEL, 3), "prediction+uncertainty")
    before = _agreement(student, ensemble, data)
    cfg = TrainConfig(epochs=8, batch_size=4, lr=0.01, optimizer="adam", augment="none", progress=False)
    dc = DistillConfig(targets="online", alpha=0.0, recipe="paper")
    fit(
        student,
        data,
        None,
        cfg,
        tmp_path / "s",
        3,
        objective=distillation_objective(dc, ensemble),
        augment=get_recipe("none"),
    )
    after = _agreement(student, ensemble, data)
    assert after[0] < 0.8 * before[0]  # σ comes down from ~0.5 toward Σ's scale
    assert after[1] > before[1] + 0.05  # and follows Σ's pattern more closely
    assert after[2] < 0.8 * before[2]  # the prediction head learns M
