"""ONNX export: parity with PyTorch at several sizes, metadata, and predict --backend onnxruntime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from udistill.cli import main  # noqa: E402
from udistill.config import ModelConfig  # noqa: E402
from udistill.data.labels import CAMVID11  # noqa: E402
from udistill.deploy.export import export_onnx, read_onnx_metadata  # noqa: E402
from udistill.deploy.predict import Predictor  # noqa: E402
from udistill.models.build import build_model  # noqa: E402
from udistill.models.checkpoint import save_model  # noqa: E402

SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)
THRESHOLDS = {"min": 0.1, "mean": 0.2, "median": 0.2, "max": 0.4, "median_plus_min_over_max": 0.9}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model(SMALL, 11, "prediction+uncertainty").eval()
    ckpt = d / "student.safetensors"
    save_model(
        model,
        ckpt,
        classes=list(CAMVID11.classes),
        label_scheme="camvid11",
        ood={"score": "median_plus_min_over_max", "thresholds": THRESHOLDS},
    )
    onnx_path = export_onnx(ckpt, d / "student.onnx")
    return model, ckpt, onnx_path


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 50, 70), (1, 3, 33, 17)])
def test_parity_with_torch_at_dynamic_sizes(exported, shape):
    model, _, onnx_path = exported
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    probs, sigma = sess.run(["probabilities", "sigma"], {"image": x.numpy()})
    assert probs.shape == (shape[0], 11, *shape[2:]) and sigma.shape == probs.shape
    np.testing.assert_allclose(probs, torch.softmax(out.logits, 1).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(sigma, out.sigma.numpy(), atol=1e-4, rtol=0)


def test_single_file_with_metadata(exported):
    _, _, onnx_path = exported
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["student.onnx", "student.safetensors"]
    proto = onnx.load(str(onnx_path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "sigma"]
    meta = read_onnx_metadata(onnx_path)
    assert meta["classes"] == list(CAMVID11.classes) and meta["label_scheme"] == "camvid11"
    assert meta["ood"]["thresholds"] == THRESHOLDS


def test_single_head_export_has_probabilities_only(tmp_path):
    torch.manual_seed(2)
    model = build_model(SMALL, 11, "prediction").eval()
    save_model(model, tmp_path / "b.safetensors", classes=list(CAMVID11.classes), label_scheme="camvid11")
    path = export_onnx(tmp_path / "b.safetensors", tmp_path / "b.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    x = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        ref = torch.softmax(model(x).logits, 1).numpy()
    np.testing.assert_allclose(sess.run(None, {"image": x.numpy()})[0], ref, atol=1e-4, rtol=0)


def test_predict_onnxruntime_equals_torch(exported, tmp_path):
    _, ckpt, onnx_path = exported
    img = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(img)
    outs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["predict", str(ckpt), str(img), "--out", str(out), "--backend", backend]) == 0
        outs[backend] = (json.loads((out / "in.json").read_text()), np.asarray(Image.open(out / "in_seg.png")))
    (jt, lt), (jo, lo) = outs["torch"], outs["onnxruntime"]
    assert jo["backend"] == "onnxruntime" and jt["backend"] == "torch"
    assert jo["image_score"] == pytest.approx(jt["image_score"], abs=1e-4)
    assert jo["threshold"] == jt["threshold"] == THRESHOLDS["median_plus_min_over_max"]
    assert jo["is_ood"] == jt["is_ood"]
    assert (lo != lt).mean() < 1e-3  # argmax may differ only at exact near-ties


def test_onnxruntime_predictor_needs_only_the_onnx(exported, tmp_path):
    _, _, onnx_path = exported
    alone = tmp_path / "deployed.onnx"
    shutil.copy(onnx_path, alone)
    p = Predictor.from_checkpoint(alone, backend="onnxruntime", score="max")
    assert p.threshold == THRESHOLDS["max"] and p.classes == list(CAMVID11.classes) and p.has_uncertainty
    r = p(np.zeros((20, 30, 3), np.uint8))
    assert r.labels.shape == (20, 30) and r.uncertainty.dtype == np.float32


def test_export_cli(exported, tmp_path, capsys):
    _, ckpt, _ = exported
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file()
    assert main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
