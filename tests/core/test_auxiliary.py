"""Auxiliary distillation data: disjoint from every evaluation shift by construction, no
cross-entropy on it, mixed at the configured ratio, and a student whose softmax entropy on
auxiliary images moves toward the teacher's."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.toy import ToyDataset
from udistill.config import DistillConfig, ModelConfig, TrainConfig
from udistill.core.ensemble import Ensemble
from udistill.core.losses import distillation_loss
from udistill.data import weather
from udistill.data.auxiliary import (
    AUXILIARY_SPLIT,
    AUXILIARY_STYLES,
    CORRUPTIONS,
    AuxiliarySet,
    DistillationSet,
    auxiliary_count,
    check_folders_disjoint,
    parse_auxiliary,
    with_auxiliary,
)
from udistill.data.images import ImageFolder
from udistill.data.labels import IGNORE_INDEX
from udistill.data.synthetic import SPLIT_LENGTHS, STYLES, scene_seed
from udistill.data.transforms import get_recipe
from udistill.errors import ConfigError
from udistill.models import build_model, to_student
from udistill.pipeline.distill import distillation_objective
from udistill.train.loop import fit

ROOT = Path(__file__).resolve().parents[2]
MODEL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)
SHIPPED = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "src/udistill/presets").glob("*.yaml"))


def _shift_names(cfg: dict) -> set[str]:
    names = set()
    for key in ("shifts", "val_shifts"):
        for entry in (cfg.get("data") or {}).get(key) or []:
            names.add(entry if isinstance(entry, str) else entry.get("shift") or entry.get("name"))
    return names


def test_auxiliary_sources_share_no_generator_style_or_split_with_any_evaluation_shift(monkeypatch):
    """By construction: no auxiliary style is an evaluation style (or a copy of one under
    another name), no corruption family is a weather shift, auxiliary scenes have seeds of
    their own, and rendering every source never calls the weather generator. A new source
    that used one of those would fail here."""
    shift_styles = {"new-city"}  # the synthetic data set's generator shift
    for name in AUXILIARY_STYLES:
        assert name not in shift_styles
        for other in shift_styles:  # not the same city under another name
            assert dataclasses.replace(STYLES[name], name=other) != STYLES[other]
    assert not set(CORRUPTIONS) & (set(weather.KNOWN_SHIFTS) | shift_styles)
    assert AUXILIARY_SPLIT not in SPLIT_LENGTHS
    evaluation_seeds = {scene_seed(0, split, i) for split in SPLIT_LENGTHS for i in range(100)}
    assert not {scene_seed(0, AUXILIARY_SPLIT, i) for i in range(100)} & evaluation_seeds
    with pytest.raises(ConfigError, match="never auxiliary"):
        parse_auxiliary(["synthetic:new-city"])
    with pytest.raises(ConfigError, match="training distribution"):
        parse_auxiliary(["synthetic:camvid"], train_dataset="synthetic")

    def forbidden(*args, **kwargs):
        raise AssertionError("an auxiliary source used the weather generator of the evaluation shifts")

    for fn in ("apply_shift", "fog", "_fog", "_rain", "_dusk", "rain_streaks"):
        monkeypatch.setattr(weather, fn, forbidden)
    sources = parse_auxiliary([f"synthetic:{s}" for s in AUXILIARY_STYLES] + [f"corrupt:{c}" for c in CORRUPTIONS])
    aux = AuxiliarySet(sources, 2 * len(sources), ToyDataset(n=4), size=(32, 48))
    for k in range(len(aux)):
        item = aux[k]
        assert item["image"].shape == (3, 32, 48) and (item["label"] == IGNORE_INDEX).all()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_keep_auxiliary_data_apart_from_their_shifts(path):
    cfg = yaml.safe_load(path.read_text()) or {}
    entries = (cfg.get("distill") or {}).get("auxiliary") or []
    shifts = _shift_names(cfg)
    for source in parse_auxiliary(entries, (cfg.get("data") or {}).get("dataset")):
        assert source.name not in shifts, f"{path.name}: auxiliary {source.spec} is an evaluation shift"
        assert source.kind != "folder", f"{path.name}: a shipped config cannot name a folder"


def test_an_auxiliary_folder_sharing_an_image_with_an_evaluation_set_is_refused(tmp_path):
    val, aux = tmp_path / "val", tmp_path / "aux"
    val.mkdir(), aux.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(val / f"frame{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(aux / f"fleet{i}.png")
    sources = parse_auxiliary([str(aux)])
    auxset = AuxiliarySet(sources, 3, ToyDataset(n=4), size=(32, 48))
    check_folders_disjoint(auxset, {"val": ImageFolder(val)})  # disjoint: accepted
    shutil.copy(val / "frame1.png", aux / "renamed-copy.png")
    auxset = AuxiliarySet(sources, 3, ToyDataset(n=4), size=(32, 48))
    with pytest.raises(ConfigError, match="renamed-copy.*frame1|frame1.*renamed-copy"):
        check_folders_disjoint(auxset, {"val": ImageFolder(val)})
    with pytest.raises(ConfigError, match="not a folder"):
        parse_auxiliary([str(tmp_path / "missing")])


def test_auxiliary_images_are_mixed_at_the_ratio_unlabelled_and_fixed():
    train = ToyDataset(n=12)
    dset = with_auxiliary(train, ["corrupt:pixelate", "corrupt:channel-swap"], 0.25, size=(32, 48))
    assert isinstance(dset, DistillationSet)
    n_aux = len(dset) - len(train)
    assert n_aux == auxiliary_count(12, 0.25) == 4 and n_aux / len(dset) == 0.25
    again = with_auxiliary(train, ["corrupt:pixelate", "corrupt:channel-swap"], 0.25, size=(32, 48))
    for i in range(len(train), len(dset)):
        item = dset[i]
        assert dset.is_auxiliary(i) and (item["label"] == IGNORE_INDEX).all()
        assert torch.equal(item["image"], again[i]["image"])  # cached targets stay valid
        assert all(not torch.equal(item["image"], train[j]["image"]) for j in range(len(train)))
    assert torch.equal(dset[3]["label"], train[3]["label"])  # training items are untouched
    assert with_auxiliary(train, [], 0.25, size=(32, 48)) is train
    with pytest.raises(ConfigError, match="auxiliary_ratio"):
        with_auxiliary(train, ["corrupt:pixelate"], 1.0, size=(32, 48))


def test_auxiliary_images_carry_no_cross_entropy():
    """In a batch mixing training and auxiliary images the CE term equals the CE of the
    training images alone; an all-auxiliary batch has CE 0 and no CE gradient."""
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, requires_grad=True)
    sigma, mean = torch.rand(4, 3, 8, 8), torch.softmax(torch.randn(4, 3, 8, 8), 1)
    std = torch.rand(4, 3, 8, 8) * 0.1
    labels = torch.randint(0, 3, (4, 8, 8))
    labels[2:] = IGNORE_INDEX  # items 2, 3 are auxiliary
    mixed = distillation_loss(logits, sigma, mean, std, labels, alpha=1.0)
    alone = torch.nn.functional.cross_entropy(logits[:2], labels[:2])
    assert float(mixed.cls.detach()) == pytest.approx(float(alone.detach()), rel=1e-6)
    aux_only = distillation_loss(logits[2:], sigma[2:], mean[2:], std[2:], labels[2:], alpha=1.0)
    assert float(aux_only.cls) == 0.0
    (grad,) = torch.autograd.grad(aux_only.cls, logits)
    assert float(grad.abs().sum()) == 0.0
    assert float(aux_only.distill) > 0 and float(aux_only.unc) > 0  # the teacher's targets still count


def _entropy(p: torch.Tensor) -> float:
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(1).mean())


def test_tiny_run_raises_student_entropy_toward_the_teacher_on_auxiliary_images(tmp_path):
    """A confident student (trained on the toy scenes) distilled from an uncertain teacher
    (untrained members that disagree) with unfamiliar auxiliary images (channel-swapped,
    pixelated) ends, on *unseen* auxiliary images, with a softmax entropy that rose toward
    the teacher's, and closer to it than after the same distillation without them."""
    train = ToyDataset(n=8)
    members = []
    for k in range(3):
        torch.manual_seed(10 + k)
        members.append(build_model(MODEL, 3).eval())
    ensemble = Ensemble(members)
    sources = ["corrupt:channel-swap", "corrupt:pixelate"]
    probe = AuxiliarySet(parse_auxiliary(sources), 8, ToyDataset(n=8, seed=7), size=(32, 48), seed=3)
    x = torch.stack([probe[i]["image"] for i in range(len(probe))])  # auxiliary images no one trained on
    torch.manual_seed(0)
    base = build_model(MODEL, 3)
    cfg = TrainConfig(epochs=10, batch_size=4, lr=0.01, optimizer="adam", augment="none", progress=False)
    fit(base, train, None, cfg, tmp_path / "base", 3, augment=get_recipe("none"))
    with torch.no_grad():
        teacher_h = _entropy(ensemble(x).mean)
        start_h = _entropy(torch.softmax(base.eval()(x).logits, 1))

    def distilled(auxiliary: list[str]) -> float:
        torch.manual_seed(0)
        student = to_student(copy.deepcopy(base).train(), "prediction+uncertainty")
        dset = with_auxiliary(train, auxiliary, 0.5, size=(32, 48))
        cfg = TrainConfig(epochs=6, batch_size=4, lr=0.003, optimizer="adam", augment="none", progress=False)
        dc = DistillConfig(targets="online", alpha=0.1)
        out = tmp_path / f"s-{len(auxiliary)}"
        fit(
            student, dset, None, cfg, out, 3, objective=distillation_objective(dc, ensemble), augment=get_recipe("none")
        )
        with torch.no_grad():
            return _entropy(torch.softmax(student.eval()(x).logits, 1))

    assert teacher_h > start_h + 0.2  # the teacher is the less certain one on these images
    with_aux, without = distilled(sources), distilled([])
    assert with_aux > start_h
    assert abs(with_aux - teacher_h) < 0.5 * abs(start_h - teacher_h)
    assert abs(with_aux - teacher_h) < abs(without - teacher_h)
