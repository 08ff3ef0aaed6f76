"""Loading a checkpoint never touches the network, even when its config names ImageNet weights.

The guard makes every socket connection fail and points the weight caches at an empty folder,
so any attempt to fetch pretrained weights (smp/timm via torch.hub or the Hugging Face hub)
raises; loading, converting to a student, building an ensemble, predicting and exporting
must all work without it.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from udistill.config import ModelConfig
from udistill.data.labels import CAMVID11
from udistill.models.build import SegmentationModel, to_student
from udistill.models.checkpoint import load_model, save_model

IMAGENET = ModelConfig(
    encoder="tu-mobilenetv3_small_100", encoder_weights="imagenet", decoder_channels=32, head_channels=32
)


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    def refuse(self, address, *a, **k):
        raise NetworkUsed(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache" / "hub"))
    try:
        import huggingface_hub.constants as hc

        monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache" / "hub"), raising=False)
        monkeypatch.setattr(hc, "HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf-cache" / "hub"), raising=False)
    except ImportError:
        pass


@pytest.fixture
def imagenet_checkpoints(tmp_path):
    """A member and a student whose recorded config says encoder_weights=imagenet
    (built offline here; the weights are random, which does not matter)."""
    torch.manual_seed(0)
    member = SegmentationModel(IMAGENET, 11, "prediction", pretrained=False).eval()
    student = SegmentationModel(IMAGENET, 11, "prediction+uncertainty", pretrained=False).eval()
    meta = {"classes": list(CAMVID11.classes), "label_scheme": "camvid11"}
    save_model(member, tmp_path / "member.safetensors", **meta)
    save_model(student, tmp_path / "student.safetensors", **meta)
    return tmp_path / "member.safetensors", tmp_path / "student.safetensors"


def test_the_guard_catches_a_download(no_network):
    """The guard is real: building with pretrained weights does try the network here."""
    with pytest.raises(Exception) as info:
        SegmentationModel(IMAGENET, 11, "prediction")
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert (
        any(isinstance(e, NetworkUsed) for e in chain)
        or "network" in str(info.value).lower()
        or "connect" in str(info.value).lower()
    )


def test_load_convert_ensemble_predict_export_offline(no_network, imagenet_checkpoints, tmp_path):
    from udistill.core.ensemble import Ensemble
    from udistill.deploy.predict import Predictor

    member_path, student_path = imagenet_checkpoints
    member, meta = load_model(member_path)
    assert meta["model"]["encoder_weights"] == "imagenet"  # the record is kept
    assert member.cfg.encoder_weights == "imagenet"
    student = to_student(member, "prediction+uncertainty").eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(student(x).logits, member(x).logits)  # the weights were copied
    ens = Ensemble.from_paths([member_path, member_path])
    assert ens(x).mean.shape == (1, 11, 32, 48)
    with pytest.warns(UserWarning, match="no calibrated OOD threshold"):
        pred = Predictor.from_checkpoint(student_path, device="cpu")(np.zeros((40, 60, 3), np.uint8))
    assert pred.labels.shape == (40, 60)
    pytest.importorskip("onnx")
    from udistill.deploy.export import export_onnx

    assert export_onnx(student_path, tmp_path / "s.onnx").is_file()
