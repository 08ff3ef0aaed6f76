"""A folder of unlabelled frames (the ``images`` dataset) as an OOD set in ``evaluate``:
OOD metrics from its image scores, no segmentation metrics (every label is ignore)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from toy import save_random_run
from udistill.config import ExperimentConfig, ModelConfig, load_config
from udistill.evaluation.evaluate import run_evaluation
from udistill.metrics import image_scores, ood_metrics
from udistill.models.checkpoint import load_model

MODEL = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 16, "head_channels": 16}


def test_an_image_folder_is_an_ood_set(tmp_path):
    run = tmp_path / "run"
    cfg = ModelConfig(**MODEL)
    save_random_run(run, cfg, 11, "camvid11")
    frames = tmp_path / "fleet"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(frames / f"{i}.png")
    exp = load_config(
        ExperimentConfig,
        None,
        [
            f"out_dir={run}",
            "data.size=[32,48]",
            "data.test_options={length: 4}",
            f"data.shifts=[{{name: fleet, dataset: images, root: {frames}}}]",
            f"model={yaml.safe_dump(MODEL, default_flow_style=True).strip()}",
            "teacher.members=2",
            "evaluate.mc_samples=2",
        ],
    )
    res = json.loads((run_evaluation(exp, progress=False) / "results.json").read_text())
    fleet = res["shifts"]["fleet"]
    assert fleet["images"] == 5
    assert all(v is None for v in fleet["miou"].values())  # no labels: no segmentation metric
    ins = res["image_scores"]["in-distribution"]["student_sigma"]["mean"]
    outs = res["image_scores"]["fleet"]["student_sigma"]["mean"]
    assert fleet["ood"]["student_sigma"]["mean"]["auroc"] == pytest.approx(ood_metrics(ins, outs)["auroc"])
    # the scores are the student's U on the frames resized to data.size
    student, _ = load_model(run / "student" / "model.safetensors")
    from udistill.data import build_dataset

    ds = build_dataset("images", "test", root=frames, size=(32, 48))
    with torch.no_grad():
        direct = [image_scores(student(ds[i]["image"][None]).sigma.mean(1)[0])["mean"] for i in range(len(ds))]
    np.testing.assert_allclose(sorted(outs), sorted(direct), rtol=1e-5)
