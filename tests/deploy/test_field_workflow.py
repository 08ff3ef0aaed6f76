"""The field workflow end to end on a tiny student: calibrate on your own folder, predict it,
ood-report it; a calibration made for other weights is refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from toy import save_random_student
from udistill.cli import main
from udistill.config import ModelConfig
from udistill.data.registry import build_dataset
from udistill.deploy.alarm_calibration import collect_image_scores, student_uncertainty
from udistill.deploy.predict import Predictor
from udistill.metrics import SCORE_TOLERANCE
from udistill.models.build import build_model
from udistill.models.checkpoint import load_model, read_metadata, save_model
from udistill.train.provenance import StaleStageError

SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)


def _frames(folder, count, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        yy, xx = np.mgrid[0:40, 0:56].astype(np.float32)
        img = np.stack([xx / 56, yy / 40, 0.5 + 0.5 * np.sin(xx / (3 + i % 5) + yy / (5 + i % 3))], -1) + rng.normal(
            0, 0.08, (40, 56, 3)
        )
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _spread_student() -> torch.nn.Module:
    """A random student whose σ differs clearly from frame to frame: the uncertainty head's
    output layer is scaled up, so image scores are far apart compared with the arithmetic
    noise of another CPU or batch size (a random head alone gives scores within 1e-5)."""
    torch.manual_seed(0)
    model = build_model(SMALL, 11, "prediction+uncertainty").eval()
    with torch.no_grad():
        model.uncertainty_head.classifier.weight.mul_(40.0)
    return model


@pytest.fixture
def student(tmp_path):
    return save_random_student(tmp_path / "run" / "student" / "model.safetensors", SMALL, model=_spread_student())


def test_image_scores_do_not_depend_on_batch_composition(student, tmp_path):
    """calibrate scores frames in batches, predict one at a time: they agree to within the
    stated tolerance that thresholds keep clear of."""
    frames = _frames(tmp_path / "f", 6)
    ds = build_dataset("images", "test", root=frames, size=[32, 48])
    unc = student_uncertainty(load_model(student)[0].eval())
    batched = collect_image_scores(unc, ds, "cpu", batch_size=6)[0]["mean"]
    single = collect_image_scores(unc, ds, "cpu", batch_size=1)[0]["mean"]
    assert np.max(np.abs(np.array(batched) - np.array(single))) < SCORE_TOLERANCE / 10


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_calibrating_on_a_folder_keeps_false_alarms_on_it_within_the_rate(student, tmp_path, capsys, rate):
    frames = _frames(tmp_path / "mine", 12)
    assert (
        main(
            ["calibrate", str(tmp_path / "run"), "--images", str(frames), "--false-alarm", str(rate), "--score", "mean"]
        )
        == 0
    )
    ood = read_metadata(student)["ood"]
    assert ood["score"] == "mean" and ood["false_alarm_rate"] == rate and ood["input_size"] == [32, 48]
    assert ood["method"] == "conformal" and ood["n"] == 12
    assert ood["display_range"][1] > 0
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "run"), str(frames), "--out", str(out)]) == 0
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    scores = np.sort([r["image_score"] for r in recs])
    t = ood["thresholds"]["mean"]
    k = math.ceil(13 * (1 - rate))  # the conformal rank with n = 12
    # the premise: no frame within 10x the stated tolerance of the threshold (scores differ
    # across CPUs by ~1e-9), so the verdict below does not hinge on the last digits
    assert np.min(np.abs(scores - t)) > 10 * SCORE_TOLERANCE
    assert scores[k - 1] < t < scores[k]
    flags = [r["is_ood"] for r in recs]
    assert len(flags) == 12 and sum(flags) == 12 - k and 0 < sum(flags) / 12 <= rate
    rec = json.loads((out / "00.json").read_text())
    assert rec["threshold_source"] == "checkpoint" and rec["uncertainty_png_scale"] == ood["display_range"]
    capsys.readouterr()
    assert (
        main(
            [
                "ood-report",
                str(student),
                "--in",
                str(frames),
                "--ood",
                str(_frames(tmp_path / "other", 3, seed=5)),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "r.json").read_text())["in"]["false_alarm_rate"] == pytest.approx(sum(flags) / 12)


def test_calibrate_refuses_too_few_frames_for_the_rate_before_scoring(student, tmp_path, capsys):
    frames = _frames(tmp_path / "few", 12)
    before = student.read_bytes()
    code = main(["calibrate", str(tmp_path / "run"), "--images", str(frames), "--false-alarm", "0.05"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "12 image(s)" in err[0] and "at least 19" in err[0]
    assert student.read_bytes() == before


def test_a_calibration_fitted_on_other_weights_is_refused(student, tmp_path, capsys):
    meta = read_metadata(student)
    meta["ood"] = {"score": "mean", "thresholds": {"mean": 0.5}, "built_from": {"student": "0123456789abcdef"}}
    torch.manual_seed(1)
    other = tmp_path / "grafted.safetensors"
    save_model(
        build_model(SMALL, 11, "prediction+uncertainty"),
        other,
        **{k: v for k, v in meta.items() if k not in ("format", "model", "heads", "num_classes", "normalisation")},
    )
    with pytest.raises(StaleStageError, match="calibration is stale"):
        Predictor.from_checkpoint(other)
    _frames(tmp_path / "f", 1)
    assert main(["predict", str(other), str(tmp_path / "f"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `udistill calibrate` again" in err[0]


def test_calibrate_stride_takes_every_nth_frame(student, tmp_path, capsys):
    frames = _frames(tmp_path / "video", 40)
    assert main(["calibrate", str(tmp_path / "run"), "--images", str(frames), "--stride", "2", "--score", "mean"]) == 0
    ood = read_metadata(student)["ood"]
    assert ood["n"] == 20 and "every 2th" in ood["calibration_set"]
    ds = build_dataset("images", "test", root=frames, size=[32, 48])
    unc = student_uncertainty(load_model(student)[0].eval())
    every_other = np.array(collect_image_scores(unc, ds, "cpu")[0]["mean"])[::2]
    k = math.ceil(21 * 0.95)  # conformal rank at 5 % with n = 20
    assert np.sort(every_other)[k - 1] < ood["thresholds"]["mean"]
    assert main(["calibrate", str(tmp_path / "run"), "--images", str(frames), "--stride", "0"]) == 2
