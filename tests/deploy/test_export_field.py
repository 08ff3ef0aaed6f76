"""ONNX for the field: in-graph resizing to the training size, fused outputs, int8 with fidelity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from toy import save_random_student  # noqa: E402
from udistill.cli import main  # noqa: E402
from udistill.config import ModelConfig  # noqa: E402
from udistill.deploy.export import export_onnx, read_onnx_metadata  # noqa: E402
from udistill.deploy.predict import Predictor  # noqa: E402
from udistill.metrics.image import IMAGE_SCORES, image_scores  # noqa: E402

SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)


def _rgb(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / (4 + seed) + yy / 7)], -1) + rng.normal(0, 0.05, (h, w, 3))
    return (img.clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("xf")
    ckpt = save_random_student(
        d / "run" / "student" / "model.safetensors", SMALL, {"score": "mean", "thresholds": {"mean": 0.5}}
    )
    full = export_onnx(d / "run", d / "full.onnx")
    fused = export_onnx(ckpt, d / "fused.onnx", fused=True)
    return d, ckpt, full, fused


@pytest.mark.parametrize("hw", [(75, 101), (40, 56)])
def test_resizing_graph_matches_the_torch_predictor(run, hw):
    _, ckpt, full, _ = run
    rgb = _rgb(*hw, 3)
    a = Predictor.from_checkpoint(ckpt, score="mean")(rgb)
    b = Predictor.from_checkpoint(full, backend="onnxruntime", score="mean")(rgb)
    assert b.labels.shape == hw and b.uncertainty.shape == hw
    assert (a.labels == b.labels).mean() > 0.999
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, atol=1e-4)
    for s in IMAGE_SCORES:
        assert b.scores[s] == pytest.approx(a.scores[s], rel=1e-4)
    sess = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "sigma", "score_map"]
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / 255
    assert sess.run(["score_map"], {"image": x})[0].shape == (1, 32, 48)
    assert read_onnx_metadata(full)["onnx"]["resize"] == {"input_size": [32, 48], "resize": "stretch"}


def test_fused_outputs_agree_with_the_full_graph_and_move_fewer_bytes(run):
    _, _, full, fused = run
    x = np.stack([_rgb(60, 80, s).transpose(2, 0, 1) for s in (1, 2)]).astype(np.float32) / 255
    fs = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"])
    us = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"])
    probs, sigma, score_map = fs.run(None, {"image": x})
    labels, u, scores = us.run(None, {"image": x})
    assert labels.dtype == np.uint8 and u.dtype == np.float16 and scores.dtype == np.float32
    assert labels.shape == (2, 60, 80) and u.shape == (2, 60, 80) and scores.shape == (2, 5)
    assert (labels == probs.argmax(1)).mean() > 0.999
    np.testing.assert_allclose(u.astype(np.float32), sigma.mean(1), atol=2e-3)
    for i in range(2):
        ref = image_scores(score_map[i])
        np.testing.assert_allclose(scores[i], [ref[s] for s in IMAGE_SCORES], rtol=1e-5)
    full_bytes = probs.nbytes + sigma.nbytes + score_map.nbytes
    fused_bytes = labels.nbytes + u.nbytes + scores.nbytes
    assert full_bytes / fused_bytes > 2 * 11 * 4 / 3 * 0.9  # C = 11: (2 C float32) / (uint8 + float16)


def test_int8_export_writes_a_quantised_file_with_measured_fidelity(run, tmp_path, capsys):
    d, ckpt, _, _ = run
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        Image.fromarray(_rgb(48, 64, i)).save(frames / f"{i}.png")
    out = tmp_path / "s.onnx"
    assert main(["export", str(d / "run"), "--onnx", str(out), "--int8", "--calibration-images", str(frames)]) == 0
    int8 = tmp_path / "s.int8.onnx"
    assert "label agreement" in capsys.readouterr().out
    proto = onnx.load(str(int8))
    assert any(n.op_type in ("QLinearConv", "ConvInteger", "QuantizeLinear") for n in proto.graph.node)
    fid = read_onnx_metadata(int8)["onnx"]["int8"]
    assert fid["holdout_images"] == 2 and fid["calibration_images"] == 6
    # recompute on the held-out images (every fourth: 3.png and 7.png) with both files
    a = Predictor.from_checkpoint(out, backend="onnxruntime")
    b = Predictor.from_checkpoint(int8, backend="onnxruntime")
    same = total = 0
    ua, ub = [], []
    for name in ("3.png", "7.png"):
        pa, pb = a(frames / name), b(frames / name)
        same += int((pa.labels == pb.labels).sum())
        total += pa.labels.size
        ua.append(pa.uncertainty.ravel())
        ub.append(pb.uncertainty.ravel())
    assert fid["label_agreement"] == pytest.approx(same / total)
    assert fid["u_pearson"] == pytest.approx(float(np.corrcoef(np.concatenate(ua), np.concatenate(ub))[0, 1]), abs=1e-6)


def test_int8_needs_calibration_images(run, tmp_path, capsys):
    d, _, _, _ = run
    assert main(["export", str(d / "run"), "--onnx", str(tmp_path / "x.onnx"), "--int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calibration-images" in err[0]
