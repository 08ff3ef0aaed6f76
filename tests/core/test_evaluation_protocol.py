"""The rules of honest measurement: numbers pinned against a hand computation, bold only
among comparable rows, a calibration set disjoint from every test set, seeded MC dropout,
the evaluated teacher at T = 1, removed config keys reported."""

import math

import numpy as np
import pytest
import torch

from tests.toy import ToyDataset
from udistill.config import ExperimentConfig, ModelConfig, load_config
from udistill.core.ensemble import Ensemble
from udistill.evaluation.evaluate import EvaluatedModels, SetAccumulator, evaluate_set, pixel_results, predictor_table
from udistill.evaluation.mc_dropout import MCDropout
from udistill.evaluation.methods import methods_for
from udistill.evaluation.report.tables import pixel_table
from udistill.models import build_model, to_student

MODEL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16, dropout=0.1)


def _constant(model, logits, sigma=None):
    """Make ``model`` output the same logits (and σ) at every pixel: zero the 1x1 outputs' weights."""
    with torch.no_grad():
        model.head.classifier.weight.zero_()
        model.head.classifier.bias.copy_(torch.tensor(logits))
        if sigma is not None:
            s = torch.tensor(sigma)
            model.uncertainty_head.classifier.weight.zero_()
            model.uncertainty_head.classifier.bias.copy_(torch.log(s / (1 - s)))
    return model.eval()


def test_evaluation_numbers_equal_a_hand_computation():
    """Constant-output models on the toy set: every predictor's error rate, mIoU, NLL, ECE,
    Brier, the ensemble's U and the pixel metrics of tied scores follow by hand."""
    torch.manual_seed(0)
    data = ToyDataset(n=4, h=32, w=48)
    members = [_constant(build_model(MODEL, 3), [2.0, 0.0, 0.0]), _constant(build_model(MODEL, 3), [0.0, 0.0, 1.0])]
    student = _constant(to_student(build_model(MODEL, 3), "prediction+uncertainty"), [1.0, 0.5, 0.0], [0.1, 0.2, 0.3])
    models = EvaluatedModels(members[0], Ensemble(members), student, "toy3", ["bg", "square", "bar"])
    acc = SetAccumulator(3, 3, True, 4096, 0, models.methods, models.predictors)
    evaluate_set(models, data, "cpu", acc, batch_size=2, max_images=None, desc="toy", progress=False)
    preds = predictor_table(acc)
    pixel, vs_student, _ = pixel_results(acc, preds)

    labels = np.concatenate([data[i]["label"].numpy().ravel() for i in range(len(data))])
    labels = labels[labels != 255]
    n = labels.size
    counts = np.bincount(labels, minlength=3)

    def softmax(z):
        e = np.exp(np.asarray(z) - np.max(z))
        return e / e.sum()

    p_base, p_m1, p_stu = softmax([2, 0, 0]), softmax([0, 0, 1]), softmax([1, 0.5, 0])
    mean = (p_base + p_m1) / 2
    std = np.abs(p_base - p_m1) / 2  # population std of two members
    for who, p in (("baseline", p_base), ("teacher", mean), ("student", p_stu)):
        k = int(np.argmax(p))
        err = 1 - counts[k] / n
        assert preds[who]["error_rate"] == pytest.approx(err, abs=1e-9)
        # mIoU: only the predicted class has a non-zero IoU (= its pixels / all pixels)
        iou_k = counts[k] / n
        assert preds[who]["miou"] == pytest.approx(iou_k / 3, abs=1e-9)
        assert preds[who]["nll"] == pytest.approx(-(counts * np.log(p)).sum() / n, abs=1e-5)
        assert preds[who]["ece"] == pytest.approx(abs((1 - err) - p[k]), abs=1e-5)
        brier = sum(counts[c] * ((p**2).sum() - 2 * p[c] + 1) for c in range(3)) / n
        assert preds[who]["brier"] == pytest.approx(brier, abs=1e-5)
    # the ensemble's U is the mean over classes of Σ, the same at every pixel
    assert np.mean(acc.scores["ensemble_std"]["mean"]) == pytest.approx(std.mean(), abs=1e-6)
    assert np.mean(acc.scores["student_sigma"]["mean"]) == pytest.approx(0.2, abs=1e-6)
    # a constant score ties every pixel: AUROC 1/2, AURC = the error rate, E-AURC = AURC - optimum
    for m in ("ensemble_std", "student_sigma", "baseline_msp"):
        assert pixel[m]["auroc"] == pytest.approx(0.5, abs=1e-12)
        assert vs_student[m]["aurc"] == pytest.approx(preds["student"]["error_rate"], abs=1e-9)
    r = preds["student"]["error_rate"]
    optimum = r + (1 - r) * math.log(1 - r)
    assert vs_student["student_sigma"]["eaurc"] == pytest.approx(r - optimum, abs=2e-4)


def test_bold_marks_the_best_only_among_comparable_rows():
    pixel = {
        "baseline_msp": {"predictor": "baseline", "auroc": 0.90, "eaurc": 0.05},
        "baseline_entropy": {"predictor": "baseline", "auroc": 0.85, "eaurc": 0.06},
        "ensemble_std": {"predictor": "teacher", "auroc": 0.70, "eaurc": 0.04},
        "ensemble_entropy": {"predictor": "teacher", "auroc": 0.80, "eaurc": 0.03},
    }
    own = pixel_table(pixel, "own errors")
    col = own.columns.index("AUROC ↑")
    bold_rows = {own.rows[i][0] for i, j in own.best if j == col}
    assert bold_rows == {"baseline_msp", "ensemble_entropy"}  # one best per predictor
    same = pixel_table(pixel, "student errors", comparable="all")
    assert {same.rows[i][0] for i, j in same.best if j == col} == {"baseline_msp"}


def _cfg(*overrides):
    return load_config(ExperimentConfig, None, ["data.size=[32,48]", "data.test_options={length: 4}", *overrides])


def test_calibration_set_sharing_an_image_with_a_test_set_is_refused():
    from udistill.data.sets import calibration_dataset, check_disjoint, test_sets
    from udistill.errors import ConfigError

    ok = _cfg("data.shifts=[fog]")
    check_disjoint(calibration_dataset(ok), test_sets(ok))  # val and test: different images
    same = _cfg("data.shifts=[fog]", "evaluate.calibration_split=test")
    with pytest.raises(ConfigError, match="shares 4 image"):
        check_disjoint(calibration_dataset(same), test_sets(same))
    # a shift of the val split (the old CamVid config: test = val) is caught too
    shifted = _cfg("data.shifts=[{name: fog-val, shift: fog, split: val}]")
    with pytest.raises(ConfigError, match="fog-val"):
        check_disjoint(calibration_dataset(shifted), test_sets(shifted))
    # half of val by a documented rule
    odd = _cfg("evaluate.calibration_subset=odd", "data.test_options={length: 6}")
    names = [odd_item["name"] for odd_item in calibration_dataset(odd)]
    assert names == ["synthetic-val-000001", "synthetic-val-000003", "synthetic-val-000005"]


def test_mc_dropout_is_seeded_and_samples_only_the_head_dropout():
    torch.manual_seed(0)
    model = build_model(MODEL, 3).eval()
    x = torch.rand(2, 3, 32, 48)
    a = MCDropout(model, 0.3, samples=4, seed=7)(x)
    b = MCDropout(model, 0.3, samples=4, seed=7)(x)
    c = MCDropout(model, 0.3, samples=4, seed=8)(x)
    assert torch.equal(a.probs, b.probs) and torch.equal(a.spread, b.spread)
    assert not torch.equal(a.spread, c.spread) and float(a.spread.max()) > 0
    # the encoder/decoder ran in eval mode: the feature map is the deterministic one
    assert not model.training
    feats, _ = model.padded_features(x)
    assert torch.equal(feats, model.padded_features(x)[0])


def test_evaluated_teacher_uses_t1_and_removed_key_is_reported(tmp_path, capsys):
    import yaml

    from udistill.evaluation.evaluate import load_models
    from udistill.models import save_model

    run = tmp_path / "run"
    meta = {"classes": ["c"] * 3, "label_scheme": "camvid11"}
    for k in range(2):
        save_model(build_model(MODEL, 3), run / "members" / f"member-{k}" / "model.safetensors", **meta)
    save_model(
        to_student(build_model(MODEL, 3), "prediction+uncertainty"), run / "student" / "model.safetensors", **meta
    )
    model = yaml.safe_dump(
        {k: getattr(MODEL, k) for k in ("encoder", "decoder_channels", "head_channels", "dropout")},
        default_flow_style=True,
    ).strip()
    cfg = load_config(
        ExperimentConfig,
        None,
        [
            f"out_dir={run}",
            f"model={model}",
            "teacher.members=2",
            "teacher.temperature=3.0",
            "distill.temperature=2.0",
            "evaluate.mc_dropout=0.3",
        ],
    )
    assert "teacher.temperature" in capsys.readouterr().err
    assert cfg.distill.temperature == 2.0 and not hasattr(cfg.teacher, "temperature")
    models = load_models(cfg, torch.device("cpu"))
    assert models.ensemble.temperature == 1.0  # distill.temperature only shapes the targets
    assert models.mc.rate == 0.1 and models.mc.samples == cfg.evaluate.mc_samples  # the model's own dropout wins


def test_registry_names_every_method_once_and_keeps_the_old_keys():
    from udistill.evaluation.methods import METHODS, PREDICTORS

    keys = [m.key for m in METHODS]
    assert len(keys) == len(set(keys))
    old = {
        "baseline_msp",
        "baseline_entropy",
        "mc_dropout",
        "ensemble_std",
        "ensemble_mi",
        "student_sigma",
        "student_msp",
    }
    assert old <= set(keys) and {"ensemble_entropy", "ensemble_msp", "student_entropy", "student_light_entropy"} <= set(
        keys
    )
    assert all(m.predictor in PREDICTORS for m in METHODS)
    assert {m.key for m in methods_for(("baseline",))} == {"baseline_msp", "baseline_entropy"}


def test_predict_defaults_to_the_alarm_score_chosen_on_validation_shifts():
    from udistill.deploy.predict import Predictor
    from udistill.metrics import IMAGE_SCORES

    student = to_student(build_model(MODEL, 3), "prediction+uncertainty").eval()
    meta = {
        "classes": ["a", "b", "c"],
        "ood": {"score": "mean", "thresholds": {s: 0.1 * (i + 1) for i, s in enumerate(IMAGE_SCORES)}},
    }
    p = Predictor.from_model(student, meta, native=True)
    assert p.score == "mean" and p.threshold == pytest.approx(0.2)
    old = Predictor.from_model(
        student, {"classes": ["a", "b", "c"], "ood": {"thresholds": {"median_plus_min_over_max": 0.7}}}, native=True
    )
    assert old.score == "median_plus_min_over_max" and old.threshold == pytest.approx(
        0.7
    )  # checkpoints calibrated before


@pytest.mark.skipif(not __import__("os").environ.get("UDISTILL_CAMVID"), reason="needs UDISTILL_CAMVID")
def test_camvid_protocol_tests_on_a_sequence_of_its_own():
    """configs/camvid-cpu.yaml: train without 0001TP, calibrate on val, test on Seq05VD (171),
    dusk = test 0001TP (62); validation shifts come from train 0001TP and val, never test."""
    from pathlib import Path

    from udistill.data.from_config import dataset_for, parse_val_shifts
    from udistill.data.sets import calibration_dataset, check_disjoint, item_names, test_sets

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(ExperimentConfig, root / "configs" / "camvid-cpu.yaml")
    sets = test_sets(cfg)
    check_disjoint(calibration_dataset(cfg), sets)
    assert len(sets["in-distribution"]) == 171 and {n[:6] for n in item_names(sets["in-distribution"])} == {"Seq05V"}
    assert len(sets["dusk-0001TP"]) == 62
    train = set(item_names(dataset_for(cfg.data, "train")))
    assert not any(n.startswith("0001TP") for n in train)
    test_names = set().union(*(item_names(ds) for ds in sets.values()))
    for spec in parse_val_shifts(cfg.data):
        assert not test_names & set(item_names(dataset_for(cfg.data, "val", shift=spec)))
