"""The one selection rule, with known answers: choices made on validation, applied to test,
the headline leading with them, the oracle kept apart; disjointness by content."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from udistill.data.registry import build_dataset
from udistill.data.sets import check_disjoint
from udistill.deploy.alarm_calibration import choose_score
from udistill.errors import ConfigError
from udistill.evaluation.evaluate import operating_points
from udistill.evaluation.report.headline import headline_rows, oracle_rows
from udistill.evaluation.selection import (
    UNDETERMINED_MARGIN,
    apply_image_choice,
    choose_image_score,
    choose_pixel_method,
    select_on_validation,
)
from udistill.metrics import IMAGE_SCORES, binomial_upper_bound


def _scores(values):
    return {s: list(values) for s in IMAGE_SCORES}


def test_the_candidate_that_separates_the_validation_shifts_is_chosen():
    in_scores = {"a": {"mean": [0.1, 0.2, 0.3], "max": [0.5, 0.6, 0.7]}}
    shifts = {
        "fog": {"a": {"mean": [0.8, 0.9, 0.7], "max": [0.55, 0.65, 0.4]}},
        "rain": {"a": {"mean": [0.25, 0.9, 0.95], "max": [0.6, 0.5, 0.45]}},
    }
    got = choose_image_score([("a", "max"), ("a", "mean")], in_scores, shifts)
    assert (got["method"], got["score"]) == ("a", "mean")
    assert got["validation_auroc"]["fog"] == 1.0 and got["validation_auroc"]["rain"] == pytest.approx(8 / 9)
    assert got["mean_validation_auroc"] == pytest.approx((1 + 8 / 9) / 2)
    assert got["runner_up"] == "a / max" and got["determined"] is True
    assert got["margin"] > UNDETERMINED_MARGIN


def test_a_tie_at_one_is_undetermined_and_broken_by_the_worst_shift_then_order():
    in_scores = {"a": {"mean": [0.1, 0.2]}, "b": {"mean": [0.1, 0.2]}}
    perfect = {"a": {"mean": [0.8, 0.9]}, "b": {"mean": [0.8, 0.9]}}
    got = choose_image_score([("b", "mean"), ("a", "mean")], in_scores, {"fog": perfect})
    assert got["method"] == "b" and got["determined"] is False and got["margin"] == 0.0  # registry order
    # same mean AUROC (0.75), but b's worst shift is better: b wins whatever the order
    in_scores = {"a": {"mean": [0.0, 0.5]}, "b": {"mean": [0.0, 0.5]}}
    shifts = {
        "s1": {"a": {"mean": [1.0, 1.0]}, "b": {"mean": [1.0, 0.25]}},  # a: 1.0, b: 0.75
        "s2": {"a": {"mean": [0.25, 0.25]}, "b": {"mean": [1.0, 0.25]}},  # a: 0.5, b: 0.75
    }
    got = choose_image_score([("a", "mean"), ("b", "mean")], in_scores, shifts)
    assert got["method"] == "b" and got["mean_validation_auroc"] == pytest.approx(0.75)


def test_calibration_and_evaluation_share_the_rule():
    in_scores = _scores([0.1, 0.2, 0.3])
    in_scores["median"] = [0.9, 0.8, 0.7]  # the median ranks the shift lower: never chosen
    shift = _scores([0.6, 0.7, 0.8])
    best, table = choose_score(in_scores, {"fog": shift})
    assert best == "min" and table["fog"]["median"] == pytest.approx(2 / 9)  # ties at 1.0: registry order
    assert choose_score(in_scores, {})[0] == "median_plus_min_over_max"


def test_pixel_method_is_chosen_by_validation_auroc():
    got = choose_pixel_method(["x", "y", "z"], {"x": {"auroc": 0.8}, "y": {"auroc": 0.9}, "z": {"auroc": float("nan")}})
    assert got["method"] == "y" and got["margin"] == pytest.approx(0.1) and got["determined"]


def test_the_headline_shows_the_validation_choice_when_the_test_best_is_another():
    class M:
        def __init__(self, key, predictor):
            self.key, self.predictor = key, predictor

    methods = [M("student_sigma", "student"), M("student_msp", "student"), M("ensemble_std", "teacher")]
    val_in = {m.key: _scores([0.1, 0.2, 0.3, 0.4]) for m in methods}
    val_shift = {m.key: _scores([0.15, 0.25, 0.35, 0.45]) for m in methods}
    val_shift["student_sigma"]["mean"] = [0.9, 0.8, 0.7, 0.6]  # the student's best on validation
    val_shift["ensemble_std"]["max"] = [0.9, 0.8, 0.7, 0.6]
    chosen_on = {"validation": {"set": "val", "images": 4}, "shifts": {"fog": {"set": "val fog", "images": 4}}}
    sel = select_on_validation(methods, val_in, {"fog": val_shift}, {}, chosen_on)
    assert (sel["student"]["method"], sel["student"]["score"]) == ("student_sigma", "mean")
    ood = {m.key: {s: {"auroc": 0.6, "fpr95": 0.5, "aupr": 0.6} for s in IMAGE_SCORES} for m in methods}
    ood["student_sigma"]["mean"]["auroc"] = 0.7  # what the user gets
    ood["student_msp"]["min"]["auroc"] = 0.95  # the best on this test set: an oracle
    ood["ensemble_std"]["max"]["auroc"] = 0.9
    results = {"selection": sel, "shifts": {"fog": {"ood": ood, "selected": apply_image_choice(ood, sel)}}, "miou": {}}
    row = next(r for r in headline_rows(results) if r["what"].startswith("OOD fog"))
    assert row["student"] == 0.7 and row["student_by"] == "student_sigma / mean"
    assert row["ensemble"] == 0.9 and "chosen on val" in row["chosen_on"]
    oracle = next(r for r in oracle_rows(results) if r["what"].startswith("OOD fog"))
    assert oracle["student"] == 0.95 and "oracle" in oracle["what"]


def test_operating_points_with_known_answers():
    alarms = {
        "student": {"score": "mean", "thresholds": {"mean": 0.5}, "false_alarm_rate": 0.05, "method": "conformal"}
    }
    ins = {"student_sigma": {"mean": [0.1, 0.6, 0.7, 0.2]}}
    shifted = {"student_sigma": {"mean": [0.9, 0.4]}}
    op = operating_points(alarms, ins, shifted)["student"]
    assert op["false_alarm_rate"] == 0.5 and op["false_alarms"] == 2 and op["in_distribution_images"] == 4
    assert op["detection_rate"] == 0.5 and op["threshold_method"] == "conformal"
    assert op["false_alarm_rate_upper_95"] == pytest.approx(binomial_upper_bound(2, 4))


def test_a_renamed_copy_of_a_test_image_is_refused_as_calibration_data(tmp_path):
    rng = np.random.default_rng(0)
    test, cal = tmp_path / "test", tmp_path / "cal"
    test.mkdir()
    cal.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(test / f"t{i}.png")
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(cal / f"c{i}.png")
    check_disjoint(build_dataset("images", "test", root=cal), {"test": build_dataset("images", "test", root=test)})
    (cal / "holiday.png").write_bytes((test / "t1.png").read_bytes())  # same bytes, another name
    with pytest.raises(ConfigError, match=r"shares 1 image.*holiday.*t1"):
        check_disjoint(build_dataset("images", "test", root=cal), {"test": build_dataset("images", "test", root=test)})
