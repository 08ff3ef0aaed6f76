import math

import numpy as np

from udistill.evaluation.report import plot_risk_coverage, write_report
from udistill.evaluation.report.tables import IMAGE_SCORES, PIXEL_METHODS

CLASSES = ["road", "sidewalk", "building", "traffic light"]
SHIFTS = ["cs_foggy", "cs_rain", "a2d2"]


def _results(with_shifts=True):
    rng = np.random.default_rng(0)
    seg = {m: rng.random(4).tolist() for m in ("baseline", "teacher", "student")}
    seg["student"][3] = math.nan
    res = {
        "classes": CLASSES,
        "miou": {m: float(np.nanmean(v)) for m, v in seg.items()},
        "per_class_iou": seg,
        "per_class_uncertainty": {"teacher": rng.random(4).tolist(), "student": rng.random(4).tolist()},
        "pixel": {
            m: {k: float(rng.random()) for k in ("auroc", "aupr", "fpr95", "ece", "brier", "aurc")}
            for m in PIXEL_METHODS
        },
        "agreement": {
            "pearson": 0.8,
            "spearman": 0.75,
            "per_class": {"0": {"pearson": 0.9, "spearman": 0.8}, "3": {"pearson": 0.5, "spearman": 0.4}},
        },
        "latency": {"student_ms": 12.5, "teacher_ms": {"per_image": 300.0, "members": 25}},
        "config": {"dataset": "synthetic", "seed": 0},
    }
    if with_shifts:
        res["shifts"] = {
            s: {
                "miou": {m: float(rng.random()) for m in ("baseline", "teacher", "student")},
                "ood": {
                    m: {sc: {"auroc": float(rng.random()), "fpr95": float(rng.random())} for sc in IMAGE_SCORES}
                    for m in ("student_sigma", "ensemble_std", "baseline_msp")
                },
            }
            for s in SHIFTS
        }
    return res


def test_full_report(tmp_path):
    fig = plot_risk_coverage(
        {"student_sigma": {"coverage": [0.1, 1.0], "risk": [0.01, 0.1], "aurc": 0.03}},
        tmp_path / "figs" / "risk_coverage.png",
    )
    paths = write_report(_results(), {"risk_coverage": fig, "sigma_hexbin": tmp_path / "nope.png"}, tmp_path / "rep")
    md = paths["markdown"].read_text()
    page = paths["html"].read_text()
    for text in (md, page):
        for m in PIXEL_METHODS:
            assert m in text
        for s in SHIFTS:
            assert s in text
        for c in CLASSES:
            assert c in text
        assert "figure missing" in text
    assert "](../figs/risk_coverage.png)" in md
    assert "data:image/png;base64," in page
    assert page.rstrip().endswith("</html>")
    assert "nan" not in md.lower().replace("nanmean", "")


def test_report_without_optional_parts(tmp_path):
    res = _results(with_shifts=False)
    for k in ("latency", "config", "agreement", "per_class_uncertainty"):
        res.pop(k)
    paths = write_report(res, {}, tmp_path)
    assert paths["markdown"].is_file() and paths["html"].is_file()
    assert "student_sigma" in paths["html"].read_text()
    minimal = write_report({}, None, tmp_path / "empty")
    assert minimal["html"].read_text().startswith("<!DOCTYPE html>")
