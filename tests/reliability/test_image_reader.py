"""One image reader for predict, calibrate --images, ood-report and the data sets (issue 22):
16-bit frames scaled by bit depth (not clipped to white), EXIF orientation applied, the same
file types and minimum size everywhere, a bad file in calibrate --images skipped and named."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from udistill.cli import main
from udistill.config import ModelConfig
from udistill.data.imageio import IMAGE_EXTENSIONS, MIN_SIDE, read_frame, read_image, to_rgb8
from udistill.data.images import list_images
from udistill.data.labels import CAMVID11
from udistill.data.registry import build_dataset
from udistill.deploy.alarm_calibration import CalibrateOptions, run_calibrate_cli
from udistill.deploy.predict import IMAGE_EXTENSIONS as PREDICT_EXTENSIONS
from udistill.deploy.predict import plan_inputs
from udistill.deploy.predict.inputs import as_batch
from udistill.errors import ConfigError, DataError
from udistill.models.build import build_model
from udistill.models.checkpoint import read_metadata, save_model

SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)


def _grey(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """A textured 8-bit grey frame (scores differ from frame to frame)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.4 * np.sin(xx / (3 + seed % 5) + yy / (5 + seed % 3)) + rng.normal(0, 0.05, (h, w))
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


def _save16(grey8: np.ndarray, path) -> None:
    """The same frame as a 16-bit PNG (v -> v * 257, so 255 -> 65535)."""
    Image.fromarray(grey8.astype(np.uint16) * 257).save(path)


def _exif_jpeg(path, h: int = 40, w: int = 56, orientation: int = 6) -> None:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, : w // 4] = (255, 0, 0)  # a red block in the top-left corner of the sensor image
    rgb[h // 2 :, :, 2] = 200
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())


@pytest.fixture
def student(tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL, 11, "prediction+uncertainty").eval()
    with torch.no_grad():
        model.uncertainty_head.classifier.weight.mul_(40.0)  # image scores far apart (see test_field_workflow)
    path = tmp_path / "run" / "student" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_model(
        model, path, classes=list(CAMVID11.classes), label_scheme="camvid11", input_size=[32, 48], resize="stretch"
    )
    return path


# --- defect 3: 16-bit frames ----------------------------------------------------------------


def test_16bit_png_of_mid_grey_decodes_to_half_not_white(tmp_path):
    p = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 30), 32768, np.uint16)).save(p)
    assert Image.open(p).mode.startswith("I")
    rgb = read_image(p)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert abs(rgb.mean() / 255 - 0.5) < 0.01
    # the data set (calibrate --images, evaluate) and predict's input see the same value
    item = build_dataset("images", "test", root=tmp_path)[0]
    assert abs(float(item["image"].mean()) - 0.5) < 0.01
    batch, _ = as_batch(p)
    assert abs(float(batch.float().mean()) / (255.0 if batch.dtype == torch.uint8 else 1.0) - 0.5) < 0.01


def test_16bit_png_keeps_every_grey_level_of_an_8bit_frame(tmp_path):
    grey = _grey()
    _save16(grey, tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), np.repeat(grey[..., None], 3, 2))


def test_16bit_pil_images_and_arrays_given_to_predict_are_scaled(tmp_path):
    img = Image.fromarray(np.full((20, 30), 65535, np.uint16))
    assert abs(float(as_batch(img)[0].float().mean()) / 255 - 1.0) < 1e-6
    mode_i = Image.fromarray(np.full((20, 30), 32768, np.int32), mode="I")  # older Pillow's 16-bit PNG
    assert abs(to_rgb8(mode_i).mean() / 255 - 0.5) < 0.01
    arr = np.full((20, 30, 3), 32768, np.uint16)
    t, _ = as_batch(arr)
    assert t.dtype == torch.float32 and abs(float(t.mean()) - 0.5) < 1e-3


def test_16bit_rgb_png_is_scaled(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.zeros((20, 30, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 32768, 0
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    rgb = read_image(tmp_path / "rgb16.png")
    assert tuple(rgb[0, 0]) == (255, 128, 0)


def test_float_tiff_in_unit_range_is_read_and_out_of_range_is_refused(tmp_path):
    Image.fromarray(np.full((20, 30), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert abs(read_image(tmp_path / "f.tif").mean() / 255 - 0.5) < 0.01
    Image.fromarray(np.full((20, 30), 2.0, np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"big\.tif: float image values must lie in \[0, 1\]"):
        read_image(tmp_path / "big.tif")


def test_a_16bit_frame_gets_the_same_image_score_and_threshold_as_its_8bit_original(student, tmp_path, capsys):
    eight, sixteen = tmp_path / "eight", tmp_path / "sixteen"
    eight.mkdir(), sixteen.mkdir()
    for i in range(6):
        g = _grey(seed=i)
        Image.fromarray(g).save(eight / f"{i:02d}.png")
        _save16(g, sixteen / f"{i:02d}.png")
    args = ["--false-alarm", "0.25", "--score", "mean"]
    assert main(["calibrate", str(student), "--images", str(eight), *args]) == 0
    t8 = read_metadata(student)["ood"]["thresholds"]
    assert main(["calibrate", str(student), "--images", str(sixteen), *args]) == 0
    t16 = read_metadata(student)["ood"]["thresholds"]
    assert t16 == pytest.approx(t8, abs=1e-9)
    scores = {}
    for name, folder in (("eight", eight), ("sixteen", sixteen)):
        out = tmp_path / f"pred_{name}"
        assert main(["predict", str(student), str(folder), "--out", str(out)]) == 0
        scores[name] = [json.loads(p.read_text())["image_score"] for p in sorted(out.glob("*.json"))]
    assert scores["sixteen"] == pytest.approx(scores["eight"], abs=1e-9)


# --- defect 7: EXIF orientation -------------------------------------------------------------


def test_jpeg_with_exif_orientation_6_is_read_upright(tmp_path):
    p = tmp_path / "portrait.jpg"
    _exif_jpeg(p)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    assert expected.shape == (56, 40, 3)
    rgb = read_image(p)
    np.testing.assert_array_equal(rgb, expected)
    assert rgb[:5, -5:, 0].mean() > 200 and rgb[:5, :5, 0].mean() < 50  # rotated clockwise: red top-right
    item = build_dataset("images", "test", root=tmp_path)[0]
    assert tuple(item["image"].shape) == (3, 56, 40)
    assert tuple(as_batch(p)[0].shape) == (1, 3, 56, 40)
    assert to_rgb8(Image.open(p)).shape == (56, 40, 3)  # a PIL image given to the predictor


def test_predict_outputs_line_up_with_the_upright_photo(student, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _exif_jpeg(src / "portrait.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(student), str(src), "--out", str(out)]) == 0
    assert np.asarray(Image.open(out / "portrait_seg.png")).shape[:2] == (56, 40)
    assert np.asarray(Image.open(out / "portrait_overlay.png")).shape[0] == 56
    assert json.loads((out / "portrait.json").read_text())["size"] == [56, 40]


def test_damaged_exif_is_ignored_like_viewers_do(tmp_path):
    p = tmp_path / "bad_exif.jpg"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(p, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and not one Pillow warning per frame on stderr
        assert read_image(p).shape == (20, 30, 3)


# --- defect 4: one list of file types, one minimum, bad files skipped in calibrate ----------


def test_predict_and_the_images_data_set_list_the_same_file_types(tmp_path):
    assert set(PREDICT_EXTENSIONS) == set(IMAGE_EXTENSIONS)
    for ext in (".bmp", ".webp", ".png", ".jpg"):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / f"a{ext}")
    listed = {p.suffix for p in list_images(tmp_path)[1]}
    planned = {j.path.suffix for j in plan_inputs([tmp_path])}
    assert listed == planned == {".bmp", ".webp", ".png", ".jpg"}


def test_frames_below_the_minimum_are_refused_with_the_file_named(tmp_path):
    p = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(p)
    with pytest.raises(DataError, match=rf"{p}: image is 1x1 pixels; udistill needs at least {MIN_SIDE}x{MIN_SIDE}"):
        read_frame(p)
    with pytest.raises(DataError, match=r"dot\.png: image is 1x1"):
        as_batch(p)


def test_calibrate_skips_corrupt_and_too_small_files_names_them_and_uses_the_rest(student, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        Image.fromarray(_grey(seed=i)).save(frames / f"{i:02d}.png")
    Image.fromarray(np.repeat(_grey(seed=7)[..., None], 3, 2)).save(frames / "07.bmp")
    Image.fromarray(np.repeat(_grey(seed=8)[..., None], 3, 2)).save(frames / "08.webp", lossless=True)
    (frames / "03b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(frames / "04b.png")
    code = main(["calibrate", str(student), "--images", str(frames), "--false-alarm", "0.25", "--score", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err
    skipped = [line for line in err if line.startswith("udistill: skipped: ")]
    assert len(skipped) == 2
    assert any(str(frames / "03b.png") in line and "corrupt" in line for line in skipped)
    assert any(str(frames / "04b.png") in line and "1x1" in line for line in skipped)
    ood = read_metadata(student)["ood"]
    assert ood["images"] == 8  # six PNGs, the .bmp and the .webp


def test_calibrate_refuses_when_every_file_is_bad(student, tmp_path, capsys):
    frames = tmp_path / "bad"
    frames.mkdir()
    (frames / "a.png").write_bytes(b"nope")
    before = student.read_bytes()
    assert main(["calibrate", str(student), "--images", str(frames), "--false-alarm", "0.25"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("udistill: error: ") and "no readable image" in err[-1]
    assert student.read_bytes() == before


@pytest.mark.parametrize("rate", [-0.1, 2.0, float("nan"), 0.0, 1.0, float("inf")])
def test_calibrate_checks_the_false_alarm_rate_before_anything_else(tmp_path, capsys, rate):
    """Before a checkpoint is loaded or an image scored, in the command and in its function
    (the API a script may call with a rate argparse never saw)."""
    missing = str(tmp_path / "missing.safetensors")  # does not even exist: the rate is refused first
    options = CalibrateOptions(
        false_alarm=rate, images=str(tmp_path), checkpoint=missing, overrides=[], device=None, config=None, score=None
    )
    with pytest.raises(ConfigError, match=r"^--false-alarm: the false-alarm rate must be a number in \(0, 1\)"):
        run_calibrate_cli(options)
    try:
        code = main(["calibrate", missing, "--images", str(tmp_path), "--false-alarm", str(rate)])
    except SystemExit as exc:  # argparse's own check
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--false-alarm" in err[-1] and ("(0, 1)" in err[-1] or "finite" in err[-1])
