"""The field workflow end to end on a tiny student: calibrate on your own folder, predict it,
ood-report it; a calibration made for other weights is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from udistill.cli import main
from udistill.config import ModelConfig
from udistill.data.labels import CAMVID11
from udistill.models.build import build_model
from udistill.models.checkpoint import read_metadata, save_model
from udistill.predict import Predictor
from udistill.provenance import StaleStageError

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


@pytest.fixture
def student(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "run" / "student" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_model(
        build_model(SMALL, 11, "prediction+uncertainty").eval(),
        path,
        classes=list(CAMVID11.classes),
        label_scheme="camvid11",
        input_size=[32, 48],
        resize="stretch",
    )
    return path


@pytest.mark.parametrize("rate", [0.1, 0.25])
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
    assert ood["display_range"][1] > 0
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "run"), str(frames), "--out", str(out)]) == 0
    flags = [json.loads(p.read_text())["is_ood"] for p in sorted(out.glob("*.json"))]
    assert len(flags) == 12 and 0 < sum(flags) / len(flags) <= rate  # the threshold is not trivially high
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
