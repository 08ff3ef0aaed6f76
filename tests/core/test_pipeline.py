"""The pipeline as a user drives it: dry runs of the shipped configs, evaluation outputs,
and a tiny end-to-end experiment through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from toy import save_random_run
from udistill.cli import main
from udistill.config import ExperimentConfig, ModelConfig, load_config
from udistill.evaluation.evaluate import METHODS, run_evaluation
from udistill.metrics import IMAGE_SCORES
from udistill.models import build_model, read_metadata, save_model, to_student

ROOT = Path(__file__).resolve().parents[2]
MODEL = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 16, "head_channels": 16, "dropout": 0.1}


@pytest.mark.parametrize("name", ["synthetic", "camvid-cpu", "camvid-gpu", "cityscapes-paper"])
def test_dry_run_of_every_shipped_config(name, capsys):
    assert main(["experiment", "--config", str(ROOT / "configs" / f"{name}.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "member  0" in out and "student" in out and "evaluate" in out


def test_dry_run_rejects_a_bad_config(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  encoder: no-such-encoder\n")
    assert main(["experiment", "--config", str(p), "--dry-run"]) == 2
    assert "model.encoder" in capsys.readouterr().err


def test_demo_preset_is_the_shipped_synthetic_config():
    from udistill.pipeline.demo import preset_path

    assert preset_path().read_text() == (ROOT / "configs" / "synthetic.yaml").read_text()


def _random_run(run: Path, members=2, light=False):
    cfg = ModelConfig(**MODEL)
    meta = {"classes": ["c"] * 11, "label_scheme": "camvid11"}
    for k in range(members):
        torch.manual_seed(k)
        save_model(build_model(cfg, 11), run / "members" / f"member-{k}" / "model.safetensors", **meta)
    save_model(
        to_student(build_model(cfg, 11), "prediction+uncertainty"), run / "student" / "model.safetensors", **meta
    )
    if light:
        save_model(
            to_student(build_model(cfg, 11), "prediction+uncertainty-light"),
            run / "student-light" / "model.safetensors",
            **meta,
        )


def test_evaluation_writes_every_documented_key_and_figure(tmp_path):
    run = tmp_path / "run"
    _random_run(run, light=True)
    cfg = load_config(
        ExperimentConfig,
        None,
        [
            f"out_dir={run}",
            "data.size=[32,48]",
            "data.test_options={length: 6}",
            "data.shifts=[fog, dusk]",
            "data.val_shifts=[fog-dense, rain]",
            f"model={yaml.safe_dump(MODEL, default_flow_style=True).strip()}",
            "teacher.members=2",
            "evaluate.mc_samples=2",
            "evaluate.batch_size=3",
            "evaluate.false_alarm_rate=0.2",  # 6 calibration images: a conformal 5 % needs 19
        ],
    )
    from udistill.deploy.alarm_calibration import run_calibration

    run_calibration(cfg)  # the alarm is fitted by calibrate (on val), evaluation only reads it
    stamp = (run / "student" / "model.safetensors").read_bytes()
    out = run_evaluation(cfg, progress=False)
    assert (run / "student" / "model.safetensors").read_bytes() == stamp  # evaluation never writes checkpoints
    res = json.loads((out / "results.json").read_text())
    for who in ("baseline", "teacher", "student"):
        assert 0 <= res["miou"][who] <= 1
        assert len(res["per_class_iou"][who]) == 11
    for who in ("teacher", "student"):
        assert len(res["per_class_uncertainty"][who]) == 11
    for m in METHODS + ("student_light_sigma", "ensemble_entropy", "ensemble_msp", "student_entropy"):
        assert set(res["pixel"][m]) >= {"auroc", "aupr", "fpr95", "ece", "brier", "aurc", "eaurc", "error_rate"}
        assert 0 <= res["pixel_student_errors"][m]["auroc"] <= 1
        # every method ranks the student's errors in the second table: one error rate for all
        assert (
            res["pixel_student_errors"][m]["error_rate"] == res["pixel_student_errors"]["student_sigma"]["error_rate"]
        )
    for p in ("baseline", "mc_dropout", "teacher", "student", "student_light"):
        assert (
            res["predictors"][p]["error_rate"]
            == res["pixel"][
                {
                    "baseline": "baseline_msp",
                    "mc_dropout": "mc_dropout",
                    "teacher": "ensemble_std",
                    "student": "student_sigma",
                    "student_light": "student_light_sigma",
                }[p]
            ]["error_rate"]
        )
    assert len(res["agreement"]["scale_ratio_by_decile"]) == 10
    assert {"pearson", "spearman"} <= set(res["agreement"])
    for shift in ("fog", "dusk"):
        assert set(res["shifts"][shift]["miou"]) >= {"baseline", "teacher", "student"}
        for m in METHODS:
            for sc in IMAGE_SCORES:
                assert set(res["shifts"][shift]["ood"][m][sc]) == {"auroc", "fpr95", "aupr"}
        # each side's score was chosen on validation; the test entry is read off the test table
        for side, chosen in res["shifts"][shift]["selected"].items():
            sel = res["selection"][side]
            assert (chosen["method"], chosen["score"]) == (sel["method"], sel["score"])
            assert chosen["auroc"] == res["shifts"][shift]["ood"][sel["method"]][sel["score"]]["auroc"]
    assert set(res["selection"]) == {"baseline", "mc_dropout", "ensemble", "student", "student_light"}
    for sel in res["selection"].values():
        assert sel["chosen_on"]["validation"]["images"] == 6 and set(sel["chosen_on"]["shifts"]) == {
            "fog-dense",
            "rain",
        }
        assert set(sel["validation_auroc"]) == {"fog-dense", "rain"}
        assert sel["mean_validation_auroc"] == pytest.approx(np.mean(list(sel["validation_auroc"].values())))
        assert sel["pixel"]["method"] in res["pixel"]
    assert (
        res["pixel_selected"]["student"]["auroc"]
        == res["pixel"][res["selection"]["student"]["pixel"]["method"]]["auroc"]
    )
    assert len(res["classes"]) == 11 and res["config"]["out_dir"] == str(run)
    html = (out / "report.html").read_text()
    assert "student_sigma" in html and "fog" in html
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 7 and all(p.stat().st_size > 1000 for p in pngs)
    # the OOD threshold is calibrated on validation images and stored with the student
    meta = read_metadata(run / "student" / "model.safetensors")
    assert meta["ood"]["false_alarm_rate"] == 0.2 and meta["ood"]["method"] == "conformal"
    assert set(meta["ood"]["thresholds"]) == set(IMAGE_SCORES)
    op = res["shifts"]["fog"]["operating_point"]
    assert op["score"] == meta["ood"]["score"]
    # the operating point recomputes from the stored image scores at the stored threshold
    t = meta["ood"]["thresholds"][op["score"]]
    in_scores = np.asarray(res["image_scores"]["in-distribution"]["student_sigma"][op["score"]])
    fog_scores = np.asarray(res["image_scores"]["fog"]["student_sigma"][op["score"]])
    assert op["false_alarm_rate"] == pytest.approx(np.mean(in_scores > t))
    assert op["detection_rate"] == pytest.approx(np.mean(fog_scores > t))
    assert op["false_alarms"] == int(np.sum(in_scores > t)) and op["in_distribution_images"] == 6
    assert op["false_alarm_rate"] <= op["false_alarm_rate_upper_95"] <= 1


@pytest.mark.slow  # end to end: members, students, control, calibration, evaluation
def test_tiny_experiment_end_to_end_and_rerun_skips_finished_stages(tmp_path, capsys):
    cfg = {
        "out_dir": str(tmp_path / "exp"),
        "data": {
            "dataset": "synthetic",
            "size": [32, 48],
            "train_options": {"length": 8},
            "test_options": {"length": 4},
            "shifts": ["fog"],
        },
        "model": MODEL,
        "train": {"epochs": 1, "batch_size": 4, "progress": False},
        "teacher": {"members": 2},
        "distill": {"light_student": True},
        "evaluate": {"mc_samples": 2, "false_alarm_rate": 0.25},  # 4 calibration images: 3 are needed at 25 %
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["experiment", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "report:" in out
    exp = tmp_path / "exp"
    for f in (
        "members/member-0/model.safetensors",
        "members/member-1/model.safetensors",
        "student/model.safetensors",
        "student-light/model.safetensors",
        "evaluation/results.json",
        "evaluation/report.html",
        "config.yaml",
    ):
        assert (exp / f).exists(), f
    assert read_metadata(exp / "student" / "model.safetensors")["heads"] == "prediction+uncertainty"
    # every stage records the size it was trained at (the predictor resizes frames to it)
    # and what it was built from (the student: the members' weights digests)
    for f in ("members/member-0/model.safetensors", "student/model.safetensors"):
        meta = read_metadata(exp / f)
        assert meta["input_size"] == [32, 48] and meta["resize"] == "stretch"
    from udistill.train.provenance import weights_digest

    built = read_metadata(exp / "student" / "model.safetensors")["built_from"]
    assert built["members"] == {
        str(k): weights_digest(exp / "members" / f"member-{k}" / "model.safetensors") for k in range(2)
    }
    stamp = (exp / "members" / "member-0" / "model.safetensors").stat().st_mtime
    assert main(["train-teacher", "--config", str(p), "--members", "0-1"]) == 0
    assert (exp / "members" / "member-0" / "model.safetensors").stat().st_mtime == stamp


def test_a_model_in_another_label_space_is_scored_in_the_data_space(tmp_path):
    """A Cityscapes-19 model evaluated on CamVid-11 (synthetic) data: probabilities are summed
    into CamVid's classes, per-class uncertainty stays in the model's 19 classes."""
    run = tmp_path / "run"
    cfg = ModelConfig(**MODEL)
    save_random_run(run, cfg, 19, "cityscapes19")
    exp = load_config(
        ExperimentConfig,
        None,
        [
            f"out_dir={run}",
            "data.size=[32,48]",
            "data.test_options={length: 4}",
            f"model={yaml.safe_dump(MODEL, default_flow_style=True).strip()}",
            "teacher.members=2",
            "evaluate.mc_samples=2",
        ],
    )
    res = json.loads((run_evaluation(exp, progress=False) / "results.json").read_text())
    assert res["label_scheme"] == "camvid11" and res["model_label_scheme"] == "cityscapes19"
    assert len(res["per_class_iou"]["student"]) == 11
    assert len(res["per_class_uncertainty"]["student"]) == 19


def test_in_memory_cache_returns_the_same_items_and_keeps_the_dataset_identity():
    import pickle

    from udistill.data.from_config import InMemory, dataset_for

    cfg = load_config(
        ExperimentConfig, None, ["data.size=[32,48]", "data.train_options={length: 3}", "data.cache_in_memory=true"]
    )
    ds = dataset_for(cfg.data, "train")
    plain = dataset_for(
        load_config(ExperimentConfig, None, ["data.size=[32,48]", "data.train_options={length: 3}"]).data, "train"
    )
    assert isinstance(ds, InMemory) and not isinstance(plain, InMemory)
    assert ds.fingerprint() == plain.fingerprint() and ds.scheme is plain.scheme
    first = ds[1]
    assert ds[1] is first and torch.equal(first["image"], plain[1]["image"])
    assert len(pickle.loads(pickle.dumps(ds))) == 3  # DataLoader workers can receive it
