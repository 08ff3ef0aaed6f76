"""udistill ood-report: AUROC as scikit-learn computes it, operating point at the stored threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from toy import save_random_student
from udistill.cli import main
from udistill.config import ModelConfig
from udistill.deploy.predict import Predictor

sklearn_metrics = pytest.importorskip("sklearn.metrics")

SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32)


def _frames(folder, count, style, seed):
    """Frames of one 'look': smooth gradients (style 0), noise (1), dark (2)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        yy, xx = np.mgrid[0:40, 0:56].astype(np.float32)
        if style == 0:
            img = np.stack([xx / 56, yy / 40, 0.5 + 0.5 * np.sin(xx / (4 + i) + yy / 7)], -1)
        elif style == 1:
            img = rng.random((40, 56, 3))
        else:
            img = 0.1 * np.stack([xx / 56, yy / 40, np.full_like(xx, 0.5)], -1) + rng.normal(0, 0.02, (40, 56, 3))
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return sorted(folder.glob("*.png"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("oodr")
    ckpt = save_random_student(
        d / "run" / "student" / "model.safetensors",
        SMALL,
        {"score": "mean", "false_alarm_rate": 0.05, "thresholds": {"mean": 0.5}},
    )
    folders = {
        "in": _frames(d / "in", 7, 0, 0),
        "noise": _frames(d / "noise", 5, 1, 1),
        "dark": _frames(d / "dark", 6, 2, 2),
    }
    return d, ckpt, folders


def test_auroc_equals_scikit_learn_on_the_same_scores(setup, capsys):
    d, ckpt, folders = setup
    with pytest.warns(UserWarning, match="no calibrated"):
        pass_through = Predictor.from_checkpoint(ckpt, score="median")  # no stored threshold for 'median'
    predictor = Predictor.from_checkpoint(ckpt, score="mean")
    scores = {k: [predictor(p).image_score for p in files] for k, files in folders.items()}
    t = 0.5 if max(scores["in"]) < 0.5 else float(np.median(scores["in"]))
    out = d / "report.json"
    argv = [
        "ood-report",
        str(d / "run"),
        "--in",
        str(d / "in"),
        "--ood",
        str(d / "noise"),
        "--ood",
        str(d / "dark"),
        "--json",
        str(out),
        "--threshold",
        str(t),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rep["score"] == "mean" and rep["threshold"] == t
    assert rep["in"]["images"] == 7
    assert rep["in"]["false_alarm_rate"] == pytest.approx(np.mean(np.array(scores["in"]) > t))
    for entry, name in zip(rep["ood"], ("noise", "dark")):
        y = [0] * len(scores["in"]) + [1] * len(scores[name])
        s = scores["in"] + scores[name]
        assert entry["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
        assert entry["detection_rate"] == pytest.approx(np.mean(np.array(scores[name]) > t))
        assert entry["images"] == len(scores[name])
        assert f"{entry['auroc']:6.3f}" in printed
    # the other scores are reported too, each as scikit-learn would give it
    med_in = [pass_through(p).scores["median"] for p in folders["in"]]
    med_noise = [pass_through(p).scores["median"] for p in folders["noise"]]
    y = [0] * len(med_in) + [1] * len(med_noise)
    assert rep["ood"][0]["auroc_by_score"]["median"] == pytest.approx(
        sklearn_metrics.roc_auc_score(y, med_in + med_noise), abs=1e-12
    )


def test_the_stored_score_and_threshold_are_used_and_bad_images_skipped(setup, capsys):
    d, ckpt, folders = setup
    (d / "noise2").mkdir()
    for p in folders["noise"][:2]:
        (d / "noise2" / p.name).write_bytes(p.read_bytes())
    (d / "noise2" / "zz.png").write_bytes(b"broken")
    assert main(["ood-report", str(ckpt), "--in", str(d / "in"), "--ood", str(d / "noise2")]) == 3
    captured = capsys.readouterr()
    assert "score mean, threshold 0.5 (checkpoint)" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"udistill: skipped: {d / 'noise2' / 'zz.png'}: image is corrupt")
    assert "noise2" in captured.out and " 2 " in captured.out  # two images scored


def test_no_ood_folder_is_an_error(setup, capsys):
    d, ckpt, _ = setup
    assert main(["ood-report", str(ckpt), "--in", str(d / "in")]) == 2
    assert "at least one --ood" in capsys.readouterr().err
