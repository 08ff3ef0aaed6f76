"""The predictor in the field: training-size resizing, bad frames skipped, minimum size,
run folders, heat maps on the calibrated display range."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from udistill.cli import main
from udistill.config import ModelConfig
from udistill.data.labels import CAMVID11
from udistill.deploy.predict import Predictor
from udistill.deploy.predict.rendering import colormap_lut
from udistill.metrics.image import IMAGE_SCORES, image_scores
from udistill.models.build import build_model
from udistill.models.checkpoint import save_model

SCORE = "median_plus_min_over_max"
SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)
TRAIN_SIZE = [32, 48]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5 + yy / 7)], -1) + rng.normal(0, 0.05, (h, w, 3))
    return (img.clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model(SMALL, 11, "prediction+uncertainty").eval()


def _save(path, model, resize="stretch", ood=None, input_size=TRAIN_SIZE):
    meta = {"classes": list(CAMVID11.classes), "label_scheme": "camvid11", "input_size": input_size, "resize": resize}
    if ood is not None:
        meta["ood"] = ood
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path, **meta)
    return path


@pytest.fixture(scope="module")
def ckpt(student, tmp_path_factory):
    return _save(
        tmp_path_factory.mktemp("ck") / "student" / "model.safetensors",
        student,
        ood={"score": SCORE, "thresholds": {s: 0.5 for s in IMAGE_SCORES}, "display_range": [0.0, 0.6]},
    )


def _model_maps(model, rgb, size):
    """Labels (frame size) and U (model size) computed by hand: resize, run, upsample."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255
    small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True) if size else x
    with torch.no_grad():
        out = model(small)
    probs = torch.softmax(out.logits, 1)
    u_small = out.sigma.mean(1)
    big = F.interpolate(
        torch.cat([probs, u_small[:, None]], 1), size=rgb.shape[:2], mode="bilinear", align_corners=False
    )
    return big[0, :11].argmax(0).numpy(), big[0, 11].numpy(), u_small[0]


def test_frames_are_resized_to_the_training_size_and_results_come_back(student, ckpt):
    rgb = _image(75, 101)
    pred = Predictor.from_checkpoint(ckpt)(rgb)
    labels, u_big, u_small = _model_maps(student, rgb, TRAIN_SIZE)
    assert pred.labels.shape == (75, 101) and pred.uncertainty.shape == (75, 101)
    assert (pred.labels == labels).mean() > 0.999  # float rounding at argmax ties only
    np.testing.assert_allclose(pred.uncertainty, u_big, atol=1e-5)
    # the score (and so the threshold) is taken at the training size, not on the upsampled map
    assert pred.image_score == pytest.approx(image_scores(u_small)[SCORE], rel=1e-5)
    assert pred.is_ood == (pred.image_score > 0.5)
    native = Predictor.from_checkpoint(ckpt, native=True)(rgb)
    _, _, u_native = _model_maps(student, rgb, None)
    assert native.image_score == pytest.approx(image_scores(u_native)[SCORE], rel=1e-5)
    assert np.abs(native.uncertainty - pred.uncertainty).max() > 1e-4  # another map: the model saw another scale


@pytest.mark.parametrize("mode", ["keep-aspect", "pad"])
def test_aspect_keeping_modes_score_the_frame_only(student, tmp_path, mode):
    path = _save(tmp_path / "m.safetensors", student, resize=mode)
    rgb = _image(40, 120)  # wide: scaled to 16x48 inside 32x48
    with pytest.warns(UserWarning):
        pred = Predictor.from_checkpoint(path)(rgb)
    assert pred.labels.shape == (40, 120)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255
    small = F.interpolate(x, size=(16, 48), mode="bilinear", align_corners=False, antialias=True)
    if mode == "pad":
        small = F.pad(small, (0, 0, 0, 16), mode="replicate")
    with torch.no_grad():
        u = student(small).sigma.mean(1)[0, :16]
    assert pred.image_score == pytest.approx(image_scores(u)[SCORE], rel=1e-5)


def test_old_checkpoints_without_input_size_run_native(student, tmp_path):
    path = tmp_path / "old.safetensors"
    save_model(student, path, classes=list(CAMVID11.classes), label_scheme="camvid11")
    rgb = _image(40, 56)
    with pytest.warns(UserWarning):
        pred = Predictor.from_checkpoint(path)(rgb)
    _, _, u = _model_maps(student, rgb, None)
    assert pred.image_score == pytest.approx(image_scores(u)[SCORE], rel=1e-5)


def test_a_folder_with_bad_images_writes_the_good_ones_and_exits_3(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    good = ["a.png", "c.png", "e.jpg"]
    for i, name in enumerate(good):
        Image.fromarray(_image(40, 56, seed=i)).save(src / name)
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)  # truncated JPEG
    Image.fromarray(_image(1, 1)).save(src / "d.png")  # below the minimum size
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(src), "--out", str(out)]) == 3
    captured = capsys.readouterr()
    for name in good:
        stem = name.rsplit(".", 1)[0]
        assert all((out / f"{stem}{s}").is_file() for s in ("_seg.png", "_uncertainty.png", "_overlay.png", ".json"))
    assert not list(out.glob("b*")) and not list(out.glob("d*"))
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"udistill: skipped: {src / 'b.jpg'}: ") and "corrupt" in lines[0]
    assert lines[1] == f"udistill: skipped: {src / 'd.png'}: image is 1x1 pixels; udistill needs at least 16x16"
    assert "processed 3, skipped 2" in captured.out


def test_all_good_exits_0_and_all_bad_exits_2(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_image(16, 16)).save(src / "smallest.png")  # the minimum is accepted
    assert main(["predict", str(ckpt), str(src), "--out", str(tmp_path / "o1")]) == 0
    assert "processed 1, skipped 0" in capsys.readouterr().out
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(_image(15, 200)).save(bad / "thin.png")
    (bad / "x.png").write_bytes(b"not a png")
    assert main(["predict", str(ckpt), str(bad), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 3 and err[-1] == "udistill: error: none of the 2 inputs could be processed (each is listed above)"
    )


def test_the_api_refuses_a_1x1_image(ckpt):
    from udistill.errors import DataError

    with pytest.raises(DataError, match="1x1 pixels"):
        Predictor.from_checkpoint(ckpt)(np.zeros((1, 1, 3), np.uint8))


def test_run_folder_and_student_folder_are_accepted(ckpt, tmp_path):
    run = ckpt.parent.parent
    rgb = _image(40, 56)
    ref = Predictor.from_checkpoint(ckpt)(rgb)
    for where in (run, ckpt.parent):
        assert Predictor.from_checkpoint(where)(rgb).image_score == ref.image_score
    out = tmp_path / "o"
    Image.fromarray(rgb).save(tmp_path / "f.png")
    assert main(["predict", str(run), str(tmp_path / "f.png"), "--out", str(out)]) == 0
    assert json.loads((out / "f.json").read_text())["image_score"] == pytest.approx(ref.image_score)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), str(tmp_path / "f.png"), "--out", str(out)]) == 2


def test_heat_map_uses_the_calibrated_display_range_with_a_colour_bar(ckpt, student, tmp_path):
    rgb = _image(64, 128)
    Image.fromarray(rgb).save(tmp_path / "f.png")
    out = tmp_path / "o"
    assert main(["predict", str(ckpt), str(tmp_path / "f.png"), "--out", str(out)]) == 0
    rec = json.loads((out / "f.json").read_text())
    assert rec["uncertainty_png_scale"] == [0.0, 0.6] and rec["uncertainty_png_scale_source"] == "calibration"
    u = Predictor.from_checkpoint(ckpt)(rgb).uncertainty
    lut = colormap_lut()
    expected = lut[np.round(np.clip(u / 0.6, 0, 1) * 255).astype(np.uint8)]
    heat = np.asarray(Image.open(out / "f_uncertainty.png"))
    assert np.array_equal(heat, expected)
    over = np.asarray(Image.open(out / "f_overlay.png"))
    assert over.shape == (64, 128, 3)
    bar_w = max(3, 128 // 40)
    assert np.array_equal(over[2, 128 - 2 - bar_w], lut[255]) and np.array_equal(
        over[2 + max(8, 64 // 3) - 1, 128 - 3], lut[0]
    )


def test_without_a_stored_range_each_frame_uses_its_own_p99(student, tmp_path):
    path = _save(tmp_path / "s.safetensors", student, ood={"score": SCORE, "thresholds": {SCORE: 0.5}})
    Image.fromarray(_image(40, 56)).save(tmp_path / "f.png")
    out = tmp_path / "o"
    assert main(["predict", str(path), str(tmp_path / "f.png"), "--out", str(out)]) == 0
    rec = json.loads((out / "f.json").read_text())
    u = Predictor.from_checkpoint(path)(_image(40, 56)).uncertainty
    assert rec["uncertainty_png_scale_source"] == "frame_p99"
    assert rec["uncertainty_png_scale"][1] == pytest.approx(float(np.percentile(u, 99)), rel=1e-6)


def test_a_bad_video_beside_good_images_is_skipped(ckpt, tmp_path, capsys):
    Image.fromarray(_image(40, 56)).save(tmp_path / "good.png")
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 20)
    out = tmp_path / "out"
    pytest.importorskip("imageio_ffmpeg")
    assert main(["predict", str(ckpt), str(tmp_path / "good.png"), str(tmp_path / "bad.mp4"), "--out", str(out)]) == 3
    captured = capsys.readouterr()
    assert (out / "good.json").is_file() and not (out / "bad.jsonl").exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"udistill: skipped: {tmp_path / 'bad.mp4'}: cannot read video")
    assert "processed 1, skipped 1" in captured.out
