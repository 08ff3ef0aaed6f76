"""udistill predict: outputs, image score, OOD flag, inputs (files, folders, videos, API)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.cli import main
from udistill.config import ModelConfig
from udistill.data.labels import CAMVID11
from udistill.deploy.predict import Prediction, Predictor
from udistill.metrics.image import IMAGE_SCORES, image_scores
from udistill.models.build import build_model
from udistill.models.checkpoint import save_model

SCORE = "median_plus_min_over_max"
SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A structured RGB image (gradients + blobs), so the random model predicts several classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5 + yy / 7)], -1)
    img += rng.normal(0, 0.05, img.shape)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def _save_student(path, model, thresholds=None):
    ood = None
    if thresholds is not None:
        ood = {"score": SCORE, "false_alarm_rate": 0.05, "thresholds": thresholds}
    save_model(model, path, classes=list(CAMVID11.classes), label_scheme="camvid11", **({"ood": ood} if ood else {}))
    return path


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model(SMALL, 11, "prediction+uncertainty").eval()


@pytest.fixture(scope="module")
def ckpt(student, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return _save_student(d / "student.safetensors", student, {s: 0.5 for s in IMAGE_SCORES})


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    p = d / "street.png"
    Image.fromarray(_image(50, 70)).save(p)
    return p


def _direct(model, rgb: np.ndarray):
    """The model's own labels, U and score, computed without the predictor."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    with torch.no_grad():
        out = model(x)
    labels = torch.softmax(out.logits, 1).argmax(1)[0].numpy()
    u = out.sigma.mean(1)[0]
    return labels, u.numpy(), image_scores(u)[SCORE]


def _decode_seg(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    colors = np.asarray(CAMVID11.colors, np.int64)
    flat = rgb.reshape(-1, 3).astype(np.int64)
    match = (flat[:, None, :] == colors[None]).all(-1)
    assert match.any(1).all(), "seg PNG holds colours outside the scheme"
    return match.argmax(1).reshape(rgb.shape[:2])


def test_image_outputs_score_and_colours(student, ckpt, image_file, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(image_file), "--out", str(out)]) == 0
    for suffix in ("_seg.png", "_uncertainty.png", "_overlay.png", ".json"):
        assert (out / f"street{suffix}").is_file(), suffix
    rec = json.loads((out / "street.json").read_text())
    labels, u, score = _direct(student, np.array(Image.open(image_file).convert("RGB")))
    assert rec["score"] == SCORE and rec["input"] == str(image_file)
    assert rec["image_score"] == pytest.approx(score, rel=1e-6, abs=1e-9)
    assert rec["threshold"] == 0.5 and rec["is_ood"] == (score > 0.5)
    assert sum(rec["classes"].values()) == 50 * 70 and list(rec["classes"]) == list(CAMVID11.classes)
    assert np.array_equal(_decode_seg(out / "street_seg.png"), labels)
    assert np.array_equal(np.asarray(Image.open(out / "street_seg.png")), labels)  # palette indices
    assert np.asarray(Image.open(out / "street_uncertainty.png")).shape == (50, 70, 3)
    assert np.asarray(Image.open(out / "street_overlay.png")).shape == (50, 70, 3)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_ood_flag_follows_stored_threshold_and_override(student, image_file, tmp_path):
    _, _, score = _direct(student, np.array(Image.open(image_file).convert("RGB")))
    below = _save_student(tmp_path / "below.safetensors", student, {SCORE: score - 1e-6})
    above = _save_student(tmp_path / "above.safetensors", student, {SCORE: score + 1e-6})

    def flag(ckpt_path, *extra):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        assert main(["predict", str(ckpt_path), str(image_file), "--out", str(out), *extra]) == 0
        return json.loads((out / "street.json").read_text())

    assert flag(below)["is_ood"] is True
    assert flag(above)["is_ood"] is False
    rec = flag(above, "--threshold", str(score - 1e-3))
    assert rec["is_ood"] is True and rec["threshold_source"] == "argument"
    assert flag(below, "--threshold", str(score + 1e-3))["is_ood"] is False


def test_api_accepts_path_pil_numpy_tensor(ckpt, image_file):
    pred = Predictor.from_checkpoint(ckpt)
    rgb = np.array(Image.open(image_file).convert("RGB"))
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    results = [pred(image_file), pred(str(image_file)), pred(Image.open(image_file)), pred(rgb), pred(tensor)]
    for r in results:
        assert isinstance(r, Prediction)
        assert r.labels.dtype == np.int64 and r.labels.shape == (50, 70)
        assert r.uncertainty.dtype == np.float32 and r.uncertainty.shape == (50, 70)
        assert isinstance(r.image_score, float) and isinstance(r.is_ood, bool)
        assert np.array_equal(r.labels, results[0].labels)
        np.testing.assert_allclose(r.uncertainty, results[0].uncertainty, rtol=0, atol=1e-6)
        assert r.image_score == pytest.approx(results[0].image_score, abs=1e-6)
    batch = pred(torch.stack([tensor, tensor]))
    assert batch.labels.shape == (2, 50, 70) and batch.image_score.shape == (2,) and batch.is_ood.dtype == bool
    one = batch.unbatch()[1]
    # a batch of two may run other kernels than one image: labels agree except on near-ties
    assert np.mean(one.labels != results[0].labels) <= 1e-3
    assert one.image_score == pytest.approx(results[0].image_score, abs=1e-6)
    with pytest.raises(ValueError):
        pred(tensor * 255)


def test_single_head_model_uses_msp_and_warns_without_threshold(tmp_path, image_file):
    torch.manual_seed(1)
    model = build_model(SMALL, 11, "prediction").eval()
    path = tmp_path / "baseline.safetensors"
    save_model(model, path, classes=list(CAMVID11.classes), label_scheme="camvid11")
    with pytest.warns(UserWarning, match="no calibrated OOD threshold"):
        pred = Predictor.from_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at construction only
        r = pred(image_file)
    rgb = np.array(Image.open(image_file).convert("RGB"))
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    with torch.no_grad():
        p = torch.softmax(model(x).logits, 1)
    np.testing.assert_allclose(r.uncertainty, (1 - p.max(1).values)[0].numpy(), atol=1e-6)
    assert r.is_ood is False and pred.uncertainty_kind == "one_minus_max_softmax"


def test_folder_recursive_sorted_skips_non_images_and_symlink_loops(ckpt, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i, rel in enumerate(["b.png", "a.jpg", "sub/c.png"]):
        Image.fromarray(_image(40, 56, seed=i)).save(src / rel)
    (src / "notes.txt").write_text("not an image")
    os.symlink(src, src / "sub" / "loop")  # must not hang
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(src), "--out", str(out)]) == 0
    for stem in ("a", "b", "sub/c"):
        for suffix in ("_seg.png", "_uncertainty.png", "_overlay.png", ".json"):
            assert (out / f"{stem}{suffix}").is_file()
    assert not (out / "notes.json").exists() and not (out / "sub" / "loop").exists()


def test_video_jsonl_and_annotated(ckpt, tmp_path):
    pytest.importorskip("imageio")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (96, 64), fps=5, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for i in range(5):
        writer.send(np.ascontiguousarray(_image(64, 96, seed=i)))
    writer.close()
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(video), "--out", str(out), "--video-out"]) == 0
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(5))
    assert all({"image_score", "is_ood", "threshold", "classes", "score"} <= set(r) for r in lines)
    import imageio.v2 as iio

    reader = iio.get_reader(str(out / "clip_annotated.mp4"), format="FFMPEG")
    frames = [f for f in reader]
    reader.close()
    assert len(frames) == 5 and frames[0].shape == (64, 192, 3)


def test_missing_and_corrupt_inputs_exit_2_with_one_line(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(tmp_path / "nope.png"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.png" in err
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_image(40, 56)).save(src / "good.png")
    (src / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    # --on-error stop: the behaviour before bad inputs were skipped (tests/deploy/test_field.py: skip)
    assert main(["predict", str(ckpt), str(src), "--out", str(out), "--on-error", "stop"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zz_broken.png" in err
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"garbage" * 20)
    pytest.importorskip("imageio_ffmpeg")
    assert main(["predict", str(ckpt), str(bad_video), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.mp4" in err
