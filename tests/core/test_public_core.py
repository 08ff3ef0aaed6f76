"""The public core (``udistill.core``, exported from ``udistill``) used as a team with its own
models would use it: plain ``nn.Module``s, no config, no files."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import udistill
from udistill import Alarm, Distiller, Ensemble, add_uncertainty_head, distillation_loss, image_score, pixel_uncertainty
from udistill.core import frame_scores
from udistill.metrics import image_scores


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add contention (several times slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinySeg(nn.Module):
    """A user's segmentation model: a named feature map ("body"), a 1x1 classifier, logits out."""

    def __init__(self, classes: int = 3, width: int = 16, gain: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(width, classes, 1)
        self.gain = gain

    def forward(self, x):
        return self.head(self.body(x)) * self.gain


def agreement(teacher, student, images):
    """(MSE(σ, Σ), Pearson(σ, Σ), KL(M || p)) on held-out images."""
    student.eval()
    with torch.no_grad():
        t, o = teacher(images), student(images)
    s, sd = o.sigma.flatten(), t.std.flatten()
    corr = torch.corrcoef(torch.stack([s, sd]))[0, 1].item()
    kl = (t.mean * (t.mean.clamp_min(1e-12).log() - F.log_softmax(o.logits, 1))).sum(1).mean().item()
    return F.mse_loss(s, sd).item(), corr, kl


def test_distils_three_plain_modules_with_no_config_and_no_files(tmp_path, monkeypatch):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir(), tmp.mkdir()
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # torch's own first-optimizer setup makes a cache dir
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.manual_seed(0)  # the caller's choice, not the library's
    seed = torch.initial_seed()
    images = torch.rand(96, 3, 16, 16)
    held_out = images[64:]

    # --- user code: the public core only (no config object, nothing on disk) ---
    teacher = Ensemble([TinySeg(gain=4.0) for _ in range(3)])
    student = add_uncertainty_head(TinySeg(), head="paper", feature_layer="body", head_channels=16)
    loader = torch.utils.data.DataLoader(images[:64], batch_size=8, shuffle=True)
    before = agreement(teacher, student, held_out)
    distiller = Distiller(student, teacher, lr=3e-3)
    history = distiller.fit(loader, epochs=60)
    after = agreement(teacher, student, held_out)
    # --- end of user code ---

    assert history[-1]["loss"] < history[0]["loss"] / 10
    assert after[0] < before[0] / 100, (before, after)  # σ toward Σ: MSE falls
    assert after[1] > before[1] + 0.15 and after[1] > 0.65, (before, after)  # ... and correlation rises
    assert after[2] < before[2] / 10, (before, after)  # p toward M
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == cudnn
    assert torch.initial_seed() == seed


def test_distiller_sets_no_global_state(monkeypatch):
    torch.manual_seed(1)
    student = add_uncertainty_head(TinySeg(), "light", feature_layer="body")
    teacher = [TinySeg(), TinySeg()]
    rng = torch.random.get_rng_state()

    def forbidden(*a, **k):
        raise AssertionError("the library set a global seed")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", forbidden)
    d = Distiller(student, teacher)
    assert torch.equal(torch.random.get_rng_state(), rng)  # construction draws nothing
    d.step(torch.rand(2, 3, 8, 8))
    d.fit([torch.rand(2, 3, 8, 8)], epochs=1)


def test_distiller_batch_forms_and_cached_targets():
    torch.manual_seed(2)
    student = add_uncertainty_head(TinySeg(), "paper", feature_layer="body", head_channels=8)
    teacher = Ensemble([TinySeg(gain=3.0) for _ in range(2)])
    x = torch.rand(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :4] = 255
    d = Distiller(student, teacher, alpha=0.5)
    assert d.step(x)["ce"] == 0.0  # no labels: no CE term
    assert d.step((x, labels))["ce"] > 0
    assert d.step({"image": x, "label": torch.full_like(labels, 255)})["ce"] == 0.0
    mean, std = teacher(x).mean, teacher(x).std
    cached = Distiller(student, teacher=None)
    parts = cached.step({"image": x, "label": labels, "teacher_mean": mean, "teacher_std": std})
    assert set(parts) == {"loss", "kl", "ce", "mse"} and all(np.isfinite(list(parts.values())))
    # cached targets at a reduced resolution are upsampled by the loss
    small = {"image": x, "teacher_mean": F.avg_pool2d(mean, 2), "teacher_std": F.avg_pool2d(std, 2)}
    assert np.isfinite(cached.step(small)["loss"])
    with pytest.raises(ValueError, match="no teacher"):
        cached.step(x)
    with pytest.raises(ValueError, match="sigma_loss"):
        Distiller(student, teacher, sigma_loss="l1")
    # the loss is the library's distillation_loss
    student.eval()
    with torch.no_grad():
        out = student(x)
        ref = distillation_loss(out.logits, out.sigma, mean, std, labels, alpha=0.5)
        got = d.loss((x, labels))
    assert torch.allclose(got.total, ref.total)


def _entropy(p):
    return -(p * np.log(p)).sum(1)


class DictOut(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("z", logits)

    def forward(self, x):
        return {"out": self.z.expand(x.shape[0], -1, -1, -1)}


def test_ensemble_on_tensor_dict_and_callable_members_matches_numpy():
    torch.manual_seed(3)
    f, c, h, w = 5, 4, 3, 5
    logits = [torch.randn(1, c, h, w) * 3 for _ in range(f)]

    class TensorOut(nn.Module):
        def __init__(self, z):
            super().__init__()
            self.register_buffer("z", z)

        def forward(self, x):
            return self.z.expand(x.shape[0], -1, -1, -1)

    members = [TensorOut(logits[0]), TensorOut(logits[1]), DictOut(logits[2])]
    members += [lambda x, z=logits[3]: z.expand(x.shape[0], -1, -1, -1)]
    members += [lambda x, z=logits[4]: udistill.SegOutput(z.expand(x.shape[0], -1, -1, -1))]
    out = Ensemble(members, temperature=1.3)(torch.zeros(2, 3, h, w))
    probs = np.stack([torch.softmax(z / 1.3, 1).numpy()[0] for z in logits])  # (F, C, H, W)
    np.testing.assert_allclose(out.mean[1].numpy(), probs.mean(0), atol=1e-6)
    np.testing.assert_allclose(out.std[1].numpy(), probs.std(0, ddof=0), atol=1e-6)
    h_mean = _entropy(probs.mean(0)[None])[0]
    np.testing.assert_allclose(out.entropy[1].numpy(), h_mean, atol=1e-5)
    mi = h_mean - np.mean([_entropy(p[None])[0] for p in probs], axis=0)
    np.testing.assert_allclose(out.mutual_info[1].numpy(), mi, atol=1e-5)
    np.testing.assert_allclose(pixel_uncertainty(out).numpy(), out.std.mean(1).numpy())


def test_ensemble_rejects_members_without_logits():
    with pytest.raises(TypeError, match="logits"):
        Ensemble([lambda x: "not logits"])(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="N, C, H, W"):
        Ensemble([lambda x: torch.zeros(1, 3, 2)])(torch.zeros(1, 3, 2, 2))


def _check_student(student, x, classes):
    student.train()
    out = student(x)
    assert out.logits.shape == (x.shape[0], classes, *x.shape[-2:])
    assert out.sigma.shape == out.logits.shape
    assert float(out.sigma.detach().min()) > 0 and float(out.sigma.detach().max()) < 1
    out.sigma.mean().backward()
    new = [p for n, p in student.named_parameters() if n.startswith("uncertainty_head")]
    assert new and all(p.grad is not None and p.grad.abs().sum() > 0 for p in new)


@pytest.mark.parametrize("head", ["paper", "light"])
def test_add_uncertainty_head_on_smp(head):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(4)
    model = smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=3, decoder_channels=32)
    student = add_uncertainty_head(model, head=head, num_classes=3, head_channels=16)
    _check_student(student, torch.rand(2, 3, 32, 32), 3)


@pytest.mark.parametrize("head", ["paper", "light"])
def test_add_uncertainty_head_on_torchvision_deeplabv3(head):
    seg = pytest.importorskip("torchvision.models.segmentation")
    torch.manual_seed(5)
    model = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    model.train()
    student = add_uncertainty_head(model, head=head, head_channels=16)
    assert student.feature_layer == ("classifier.0" if head == "paper" else "classifier.3")
    assert model.training and model.classifier[2].training  # the probe restored the modes
    _check_student(student, torch.rand(2, 3, 48, 48), 4)


def test_add_uncertainty_head_on_a_named_feature_layer():
    torch.manual_seed(6)
    model = TinySeg(classes=5)
    student = add_uncertainty_head(model, head="paper", feature_layer="body.2", head_channels=8)
    _check_student(student, torch.rand(2, 3, 12, 12), 5)
    assert student.model is model  # wrapped, not copied
    with pytest.raises(ValueError, match="feature_layer"):
        add_uncertainty_head(TinySeg())  # nobody knows where a plain module keeps its features
    with pytest.raises(ValueError, match="no submodule"):
        add_uncertainty_head(TinySeg(), feature_layer="decoder")
    with pytest.raises(ValueError, match="num_classes"):
        add_uncertainty_head(TinySeg(classes=3), feature_layer="body", num_classes=4)
    with pytest.raises(ValueError, match="head"):
        add_uncertainty_head(TinySeg(), head="huge", feature_layer="body")


def test_image_scores_are_the_registrys():
    u = torch.rand(3, 6, 7)
    for kind in ("mean", "median", "min", "max", "median_plus_min_over_max"):
        got = image_score(u, kind)
        assert got.shape == (3,)
        assert got[1].item() == pytest.approx(image_scores(u[1])[kind])
    with pytest.raises(ValueError, match="unknown image score"):
        image_score(u, "p99")


def _conformal_far(n, rate, draws, rng, m=200):
    fars = []
    for _ in range(draws):
        alarm = Alarm.calibrate(rng.standard_normal(n), rate)
        fars.append(float(alarm(torch.from_numpy(rng.standard_normal(m))).double().mean()))
    return float(np.mean(fars))


@pytest.mark.parametrize("n", [19, 99])
def test_alarm_false_alarm_rate_on_exchangeable_scores(n):
    rng = np.random.default_rng(7)
    far = _conformal_far(n, 0.05, draws=1000, rng=rng)
    assert far <= 0.05 + 0.008, far  # the promise holds on average over calibration draws
    assert far >= 0.03, far  # and the alarm is not uselessly conservative


def test_alarm_refuses_too_few_frames_and_bad_rates():
    with pytest.raises(ValueError, match="at least 19"):
        Alarm.calibrate(list(np.linspace(0, 1, 18)), 0.05)
    with pytest.raises(ValueError, match="rate"):
        Alarm.calibrate(list(np.linspace(0, 1, 50)), 1.5)

    class Untouchable(nn.Module):
        def forward(self, x):
            raise AssertionError("frames were scored before the count was checked")

    with pytest.raises(ValueError, match="at least 19"):
        Alarm.calibrate(torch.rand(5, 3, 8, 8), 0.05, student=Untouchable())
    with pytest.raises(ValueError, match="student"):
        Alarm.calibrate(torch.rand(30, 3, 8, 8), 0.05)


def test_alarm_scores_frames_with_its_student():
    torch.manual_seed(8)
    student = add_uncertainty_head(TinySeg(), "light", feature_layer="body").eval()
    frames = torch.rand(24, 3, 8, 8)
    alarm = Alarm.calibrate(frames, 0.1, student=student, score="max")
    loader = torch.utils.data.DataLoader(frames, batch_size=5)
    assert alarm == Alarm.calibrate(loader, 0.1, student=student, score="max")
    flags = alarm(frames)
    assert flags.dtype == torch.bool and flags.shape == (24,)
    assert torch.equal(flags, frame_scores(student, frames, "max") > alarm.threshold)
    assert int(flags.sum()) <= 2  # on its own calibration frames: at most the rank's share
    report = alarm.false_alarms(frames)
    assert report["n"] == 24 and report["upper_bound"] >= report["rate"]


def test_public_names_are_exported():
    for name in ("Ensemble", "add_uncertainty_head", "distillation_loss", "Distiller", "Alarm", "Predictor"):
        assert name in udistill.__all__ and getattr(udistill, name) is not None


@pytest.mark.parametrize("head", ["paper", "light"])
def test_sigma_init_starts_the_head_at_the_teachers_scale(head):
    torch.manual_seed(9)
    student = add_uncertainty_head(TinySeg(), head, feature_layer="body", head_channels=8)
    teacher = Ensemble([TinySeg(gain=3.0) for _ in range(3)])
    x = torch.rand(4, 3, 8, 8)
    Distiller(student, teacher, sigma_init=0.02).loss(x)
    assert torch.allclose(student(x).sigma, torch.tensor(0.02), atol=1e-6)
    Distiller(student, teacher, sigma_init="teacher-mean").loss(x)
    per_class = student(x).sigma.mean((0, 2, 3))
    assert torch.allclose(per_class, teacher(x).std.mean((0, 2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="sigma_init"):
        Distiller(student, teacher, sigma_init=1.5)
