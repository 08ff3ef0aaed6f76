import numpy as np
import pytest

from udistill.data.labels import CITYSCAPES19
from udistill.evaluation.report import (
    plot_examples,
    plot_image_score_distributions,
    plot_image_score_roc,
    plot_reliability,
    plot_risk_coverage,
    plot_sigma_hexbin,
    plot_uncertainty_histograms,
)
from udistill.metrics import BinnedPixelMetrics, SigmaHistogram2D, image_scores, mirror_histogram, ood_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def _ok(path):
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 2000
    assert not list(path.parent.glob(".*.tmp"))


def _row(rng, h=24, w=48, title=None):
    label = rng.integers(0, 19, (h, w))
    label[:3] = 255
    pred = np.where(rng.random((h, w)) < 0.8, label, rng.integers(0, 19, (h, w))) % 19
    return {
        "image": rng.random((h, w, 3)),
        "label": label,
        "pred": pred,
        "uncertainty": rng.random((h, w)) * 0.3,
        "title": title,
    }


def test_examples(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row(rng, title="Cityscapes"), _row(rng, title="CS Rain")]
    rows[1]["image"] = (rows[1]["image"] * 255).astype(np.uint8)
    _ok(plot_examples(rows, tmp_path / "fig2.png", CITYSCAPES19))
    _ok(
        plot_examples(rows[:1], tmp_path / "fig2b.png", list(CITYSCAPES19.colors), show_label=True, uncertainty_max=0.5)
    )
    with pytest.raises(ValueError):
        plot_examples([], tmp_path / "none.png", CITYSCAPES19)


def _pixel_metrics(rng, shift=0.0):
    wrong = rng.random(5000) < 0.2
    s = np.clip(rng.normal(0.2 + 0.3 * wrong + shift, 0.12), 0, 1)
    m = BinnedPixelMetrics()
    m.update(s, wrong, confidence=1 - s)
    return m.compute()


def test_pixel_figures(tmp_path):
    rng = np.random.default_rng(1)
    r = {name: _pixel_metrics(rng, k * 0.05) for k, name in enumerate(["baseline_msp", "teacher", "student"])}
    hists = {
        "baseline softmax": {**mirror_histogram(r["baseline_msp"]["histogram"]), "xlabel": "max softmax probability"},
        "teacher": r["teacher"]["histogram"],
        "student": r["student"]["histogram"],
    }
    _ok(plot_uncertainty_histograms(hists, tmp_path / "fig4.png"))
    _ok(plot_risk_coverage({k: {**v["risk_coverage"], "aurc": v["aurc"]} for k, v in r.items()}, tmp_path / "rc.png"))
    _ok(plot_reliability({k: {**v["reliability"], "ece": v["ece"]} for k, v in r.items()}, tmp_path / "rel.png"))
    h = SigmaHistogram2D(bins=64, high=0.4)
    t = rng.gamma(2, 0.04, 20000)
    h.update(t, np.clip(t + rng.normal(0, 0.02, t.size), 0, None), rng.random(t.size) < 4 * t)
    _ok(plot_sigma_hexbin(h.compute(), tmp_path / "fig3.png", title="Student vs teacher"))


def test_image_figures(tmp_path):
    rng = np.random.default_rng(2)
    sets = {"Cityscapes": 0.0, "CS Foggy": 0.03, "CS Rain": 0.1, "A2D2": 0.12}
    per_set = {}
    for name, shift in sets.items():
        per_set[name] = [image_scores(rng.random((8, 8)) * 0.2 + shift) for _ in range(40)]
    curves = {}
    for score in per_set["Cityscapes"][0]:
        r = ood_metrics([s[score] for s in per_set["Cityscapes"]], [s[score] for s in per_set["CS Rain"]])
        curves[score] = {**r["roc"], "auroc": r["auroc"]}
    _ok(plot_image_score_roc(curves, tmp_path / "fig6.png", title="CS Rain"))
    dist = {k: [s["median_plus_min_over_max"] for s in v] for k, v in per_set.items()}
    dist["empty"] = []
    _ok(plot_image_score_distributions(dist, tmp_path / "fig7.png", threshold=0.5))
