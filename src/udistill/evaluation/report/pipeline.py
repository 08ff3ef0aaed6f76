"""From an evaluation's results (and a few example images) to PNG figures and the report."""

from __future__ import annotations

from pathlib import Path

from ...metrics.pixel import mirror_histogram
from ..methods import PRIMARY
from .figures import (
    plot_examples,
    plot_image_score_distributions,
    plot_image_score_roc,
    plot_reliability,
    plot_risk_coverage,
    plot_sigma_hexbin,
    plot_sigma_scale,
    plot_uncertainty_histograms,
)
from .html import write_report

PAPER_SCORE = "median_plus_min_over_max"


def write_figures_and_report(results: dict, examples: dict, out_dir: str | Path, class_colors) -> dict:
    """Write every figure as PNG (150 dpi) into ``out_dir/figures`` and the report next to them."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    figs: dict[str, Path] = {}
    figs["examples"] = plot_examples(examples["in-distribution"], fig_dir / "fig2_examples.png", class_colors)
    shifted_rows = []
    for name, rows in examples.items():
        if name != "in-distribution":
            shifted_rows += [dict(r, title=f"{name}: {r.get('title', '')}") for r in rows[:2]]
    if shifted_rows:
        figs["examples_shifts"] = plot_examples(shifted_rows, fig_dir / "fig5_examples_shifts.png", class_colors)
    if results.get("sigma_hist2d"):
        figs["sigma_hexbin"] = plot_sigma_hexbin(results["sigma_hist2d"], fig_dir / "fig3_sigma_student_vs_teacher.png")
    curves = results.get("curves", {})
    if curves:
        hists = {}
        for key, label in (
            ("baseline_msp", "baseline: 1 − max softmax"),
            ("ensemble_std", "teacher: ensemble U"),
            ("student_sigma", "student: predicted U"),
        ):
            if key in curves:
                h = curves[key]["histogram"]
                hists[label] = (
                    mirror_histogram(h) if key == "baseline_msp" and h.get("scale", "linear") == "linear" else h
                )
        figs["uncertainty_histograms"] = plot_uncertainty_histograms(hists, fig_dir / "fig4_uncertainty_histograms.png")
        shown = [m for m in curves if m in PRIMARY.values() or m in ("ensemble_entropy", "student_entropy")]
        rc = {m: dict(curves[m]["risk_coverage"], aurc=results["pixel"][m]["aurc"]) for m in shown}
        figs["risk_coverage"] = plot_risk_coverage(rc, fig_dir / "risk_coverage.png")
        preds = results.get("predictors") or {}
        rel = {
            p: dict(curves[PRIMARY[p]]["reliability"], ece=preds[p]["ece"])
            for p in preds
            if PRIMARY.get(p) in curves and curves[PRIMARY[p]].get("reliability")
        }
        if rel:
            figs["reliability"] = plot_reliability(rel, fig_dir / "reliability.png")
    means = (results.get("agreement") or {}).get("binned_means")
    if means and means.get("y_edges"):
        figs["sigma_scale"] = plot_sigma_scale(means, fig_dir / "fig3b_sigma_scale.png")
    for name, shift in results.get("shifts", {}).items():
        roc = {sc: dict(c, auroc=shift["ood"]["student_sigma"][sc]["auroc"]) for sc, c in shift.get("roc", {}).items()}
        if roc:
            figs[f"image_score_roc_{name}"] = plot_image_score_roc(
                roc, fig_dir / f"fig6_roc_{name}.png", title=f"in-distribution vs {name} (student U)"
            )
    dists = {
        name: d["student_sigma"][PAPER_SCORE]
        for name, d in results.get("image_scores", {}).items()
        if "student_sigma" in d
    }
    if dists:
        thr = (results.get("ood_threshold") or {}).get("thresholds", {}).get(PAPER_SCORE)
        figs["image_score_distributions"] = plot_image_score_distributions(
            dists, fig_dir / "fig7_image_score_distributions.png", in_distribution="in-distribution", threshold=thr
        )
    write_report(results, figs, out)
    return figs
