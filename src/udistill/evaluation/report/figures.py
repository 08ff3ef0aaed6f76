"""The paper's figures (and two extra diagnostics) from plain arrays and dicts.

Every function takes already-computed numbers (never a model), writes one PNG at 150 dpi
atomically (a crash never leaves half an image) and returns the output path. Figures are
built with the object-oriented :class:`matplotlib.figure.Figure` API on the Agg canvas, so
no pyplot global state or GUI backend is touched and nothing has to be closed.

==============================  ======================================================
function                        figure
==============================  ======================================================
:func:`plot_examples`           Fig 2 / Fig 5: image, segmentation, error map, uncertainty
:func:`plot_sigma_hexbin`       Fig 3: student σ vs teacher σ, correct vs wrong pixels
:func:`plot_uncertainty_histograms`  Fig 4: normalised histograms, correct blue / wrong red
:func:`plot_image_score_roc`    Fig 6: ROC of the five image scores for one shift
:func:`plot_image_score_distributions`  Fig 7: image uncertainty per data set
:func:`plot_risk_coverage`      risk-coverage curves per method (AURC)
:func:`plot_reliability`        reliability diagram per method (ECE)
==============================  ======================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ...colours import HEATMAP
from ...data.labels import IGNORE_INDEX
from ...io import atomic_path

DPI = 150
CORRECT_COLOR = "#1f5fbf"  # blue
WRONG_COLOR = "#d62728"  # red
SCORE_LABELS = {
    "min": "min",
    "mean": "mean",
    "median": "median",
    "max": "max",
    "median_plus_min_over_max": "(median + min) / max",
}
_OTHER_COLORS = ["#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#e377c2", "#bcbd22", "#17becf"]


def _new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: str | os.PathLike) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return out


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _palette(class_colors: Any) -> np.ndarray:
    """(256, 3) uint8 LUT from a LabelScheme, a (C, 3) array/list of RGB, or a (256, 3) LUT."""
    if hasattr(class_colors, "palette"):
        return np.asarray(class_colors.palette(), np.uint8)
    cols = np.asarray(class_colors)
    if cols.ndim != 2 or cols.shape[1] != 3:
        raise ValueError("class_colors must be (C, 3) RGB values")
    if cols.dtype.kind == "f" and cols.max() <= 1.0:
        cols = cols * 255.0
    lut = np.zeros((256, 3), np.uint8)
    lut[: min(len(cols), 256)] = np.clip(cols[:256], 0, 255).astype(np.uint8)
    return lut


def _display_image(img: Any) -> np.ndarray:
    """HxWx3 (or 3xHxW) uint8/float -> float RGB in [0, 1]. Floats outside [0, 1]
    (e.g. mean/std-normalised) are min-max rescaled for display."""
    a = _np(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo < 0.0 or hi > 1.0 + 1e-6:
        if hi > 1.0 + 1e-6 and lo >= 0.0 and hi <= 255.0 and a.mean() > 1.0:
            return np.clip(a / 255.0, 0.0, 1.0)
        return (a - lo) / max(hi - lo, 1e-12)
    return np.clip(a, 0.0, 1.0)


def error_map(label: Any, pred: Any, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """HxWx3 float RGB: white = wrong, black = correct, grey = ignore."""
    lab, pr = _np(label).astype(np.int64), _np(pred).astype(np.int64)
    out = np.zeros(lab.shape + (3,), np.float32)
    out[(pr != lab)] = 1.0
    out[lab == ignore_index] = 0.5
    return out


# --------------------------------------------------------------------------- Fig 2 / 5


def plot_examples(
    rows: Sequence[Mapping[str, Any]],
    out: str | os.PathLike,
    class_colors: Any,
    ignore_index: int = IGNORE_INDEX,
    uncertainty_max: float | None = None,
    show_label: bool = False,
    cmap: str = HEATMAP,
) -> Path:
    """Fig 2 / Fig 5: one row per example, columns image / segmentation / error map /
    uncertainty map (with a colour bar).

    rows: dicts with ``image`` (HxWx3 uint8 or float), ``label`` (HxW ids, ``ignore_index`` =
        ignore), ``pred`` (HxW ids), ``uncertainty`` (HxW floats) and optional ``title``
        (written left of the row, e.g. the data set name).
    class_colors: a LabelScheme, (C, 3) RGB list/array (uint8 or floats in [0, 1]) or (256, 3) LUT.
    uncertainty_max: colour-scale maximum shared by all rows (default: the largest value over
        all rows, so rows from different data sets are comparable; minimum is 0).
    show_label: add a ground-truth column after the image.
    """
    if not rows:
        raise ValueError("plot_examples needs at least one row")
    lut = _palette(class_colors)
    vmax = uncertainty_max
    if vmax is None:
        vmax = max(float(np.nanmax(_np(r["uncertainty"]))) for r in rows)
        vmax = vmax if vmax > 0 else 1.0
    cols = ["Image"] + (["Ground truth"] if show_label else []) + ["Segmentation", "Error map", "Uncertainty"]
    h, w = _np(rows[0]["pred"]).shape[:2]
    cell_w = 3.2
    cell_h = cell_w * h / w
    fig = _new_figure(cell_w * len(cols) + 0.8, cell_h * len(rows) + 0.5)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, row in enumerate(rows):
        label = _np(row["label"]).astype(np.int64)
        pred = _np(row["pred"]).astype(np.int64)
        panels = [_display_image(row["image"])]
        if show_label:
            panels.append(lut[np.clip(label, 0, 255)])
        panels += [lut[np.clip(pred, 0, 255)], error_map(label, pred, ignore_index)]
        for j, img in enumerate(panels):
            axes[i, j].imshow(img, interpolation="nearest")
        ax_u = axes[i, len(cols) - 1]
        im = ax_u.imshow(
            _np(row["uncertainty"]).astype(np.float32), cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest"
        )
        fig.colorbar(im, ax=ax_u, shrink=0.9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        if row.get("title"):
            axes[i, 0].set_ylabel(str(row["title"]), fontsize=10)
    for j, name in enumerate(cols):
        axes[0, j].set_title(name, fontsize=10)
    return _save(fig, out)


# --------------------------------------------------------------------------- Fig 3


def plot_sigma_hexbin(
    hist: Mapping[str, Any],
    out: str | os.PathLike,
    title: str | None = None,
    min_count: int = 10,
    xlabel: str = "Teacher σ (ensemble std, mean over classes)",
    ylabel: str = "Student σ (predicted)",
) -> Path:
    """Fig 3: student σ (y) against teacher σ (x) from bounded 2-D histograms.

    hist: ``SigmaHistogram2D.compute()`` — ``x_edges``, ``y_edges``, ``correct`` and ``wrong``
        counts indexed ``[x_bin][y_bin]``.
    Three panels: correctly labelled pixels (blue, log counts), wrongly labelled pixels (red,
    log counts) and the fraction of wrong pixels per cell (cells with < ``min_count`` pixels
    blank), each with the y = x diagonal.
    """
    xe = np.asarray(hist["x_edges"], np.float64)
    ye = np.asarray(hist["y_edges"], np.float64)
    good = np.asarray(hist["correct"], np.float64)
    bad = np.asarray(hist["wrong"], np.float64)
    fig = _new_figure(15, 4.6)
    axes = fig.subplots(1, 3)
    total = good + bad
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total >= max(min_count, 1), bad / total, np.nan)
    vmax = max(total.max(), 1.0)
    specs = [
        (good, "Blues", f"Correctly labelled ({int(good.sum()):,} px)", LogNorm(vmin=1, vmax=vmax)),
        (bad, "Reds", f"Incorrectly labelled ({int(bad.sum()):,} px)", LogNorm(vmin=1, vmax=vmax)),
        (rate, "coolwarm", "Fraction incorrectly labelled", None),
    ]
    lo = min(xe[0], ye[0])
    hi = max(xe[-1], ye[-1])
    for ax, (data, cmap, name, norm) in zip(axes, specs):
        shown = (
            np.ma.masked_invalid(np.where(data > 0, data, np.nan)) if norm is not None else np.ma.masked_invalid(data)
        )
        kw = {"norm": norm} if norm is not None else {"vmin": 0.0, "vmax": 1.0}
        mesh = ax.pcolormesh(xe, ye, shown.T, cmap=cmap, shading="flat", **kw)
        fig.colorbar(mesh, ax=ax, label="pixels" if norm is not None else "fraction wrong")
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, alpha=0.7)
        ax.set(xlim=(xe[0], xe[-1]), ylim=(ye[0], ye[-1]), xlabel=xlabel)
        ax.set_title(name, fontsize=10)
        ax.set_aspect("auto")
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


# --------------------------------------------------------------------------- Fig 4


def plot_uncertainty_histograms(
    hists: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Fig 4: one panel per method, normalised histograms of correctly (blue) and incorrectly
    (red) labelled pixels.

    hists: method name -> ``{edges, pos, neg}`` (``BinnedPixelMetrics.compute()["histogram"]``;
        ``pos`` = wrong, ``neg`` = correct), optional ``xlabel`` and ``title`` per panel. Use
        ``udistill.metrics.mirror_histogram`` to show max softmax probability instead of 1 - MSP.
    """
    if not hists:
        raise ValueError("plot_uncertainty_histograms needs at least one histogram")
    n = len(hists)
    fig = _new_figure(4.6 * n, 3.8)
    axes = np.atleast_1d(fig.subplots(1, n))
    for k, (ax, (name, h)) in enumerate(zip(axes, hists.items())):
        edges = np.asarray(h["edges"], np.float64)
        log = h.get("scale") == "log"
        if log:  # bin 0 starts at 0: draw it from half its upper edge on the log axis
            edges = edges.copy()
            edges[0] = edges[1] / 2
        neg = np.asarray(h["neg"], np.float64)
        pos = np.asarray(h["pos"], np.float64)
        neg = neg / neg.sum() if neg.sum() > 0 else neg
        pos = pos / pos.sum() if pos.sum() > 0 else pos
        ax.stairs(neg, edges, fill=True, color=CORRECT_COLOR, alpha=0.35, label="correct")
        ax.stairs(neg, edges, color=CORRECT_COLOR, lw=1.2)
        ax.stairs(pos, edges, fill=True, color=WRONG_COLOR, alpha=0.35, label="incorrect")
        ax.stairs(pos, edges, color=WRONG_COLOR, lw=1.2)
        xlabel = str(h.get("xlabel", "uncertainty" + (" (log scale, log-spaced bins)" if log else "")))
        ax.set(xscale="log" if log else "linear", xlim=(edges[0], edges[-1]), ylim=(0, None), xlabel=xlabel)
        ax.set_title(f"({chr(ord('a') + k)}) {h.get('title', name)}", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel("normalised frequency")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


# --------------------------------------------------------------------------- Fig 6


def plot_image_score_roc(
    curves: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike,
    title: str | None = None,
    highlight: str = "median_plus_min_over_max",
) -> Path:
    """Fig 6: ROC curves of the image scores for one shift (positives = OOD images).

    curves: score name -> ``{fpr, tpr, auroc}`` (``ood_metrics(...)["roc"]`` plus its auroc).
    The ``highlight`` score (the paper's (median + min) / max) is drawn thick in blue.
    """
    fig = _new_figure(5.2, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="chance")
    others = iter(_OTHER_COLORS * 4)
    for name, c in curves.items():
        special = name == highlight
        auroc = c.get("auroc")
        lab = SCORE_LABELS.get(name, name)
        if auroc is not None and not (isinstance(auroc, float) and math.isnan(auroc)):
            lab += f" (AUROC {auroc:.3f})"
        ax.plot(
            c["fpr"],
            c["tpr"],
            color=CORRECT_COLOR if special else next(others),
            lw=2.4 if special else 1.3,
            zorder=3 if special else 2,
            label=lab,
            drawstyle="default",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (in-distribution flagged as OOD)",
        ylabel="True positive rate (OOD detected)",
        title=title or "Image-level OOD detection",
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out)


# --------------------------------------------------------------------------- Fig 7


def plot_image_score_distributions(
    scores: Mapping[str, Sequence[float]],
    out: str | os.PathLike,
    in_distribution: str | None = None,
    threshold: float | None = None,
    ylabel: str = "image uncertainty  (median + min) / max",
    title: str | None = None,
) -> Path:
    """Fig 7: distribution of the image uncertainty per data set (violin + jittered points).

    scores: data set name -> image scores. ``in_distribution`` (default: the first key) is
    drawn in blue, the shifted sets in red. ``threshold`` (e.g. from
    ``threshold_at_false_alarm``) is drawn as a dashed horizontal line.
    """
    if not scores:
        raise ValueError("plot_image_score_distributions needs at least one data set")
    names = list(scores)
    ind = in_distribution if in_distribution is not None else names[0]
    fig = _new_figure(max(4.5, 1.6 * len(names) + 1.5), 4.6)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        v = np.asarray(list(scores[name]), np.float64)
        v = v[np.isfinite(v)]
        color = CORRECT_COLOR if name == ind else WRONG_COLOR
        if v.size >= 2 and np.ptp(v) > 0:
            parts = ax.violinplot([v], positions=[i], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_edgecolor(color)
                body.set_alpha(0.25)
        if v.size:
            ax.scatter(i + rng.uniform(-0.18, 0.18, v.size), v, s=6, color=color, alpha=0.6, lw=0)
            ax.hlines(np.median(v), i - 0.3, i + 0.3, color="k", lw=1.2)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=0.9, label=f"threshold {threshold:.3g}")
        ax.legend(fontsize=8, loc="best")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n(in-dist.)" if n == ind else n for n in names])
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Image uncertainty per data set")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


# --------------------------------------------------------------------------- extra diagnostics


def plot_risk_coverage(
    curves: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Risk (pixel error rate among the covered) against coverage, pixels admitted from the
    most confident; curves: method -> ``{coverage, risk, aurc}`` (e.g.
    ``{**r["risk_coverage"], "aurc": r["aurc"]}`` of ``BinnedPixelMetrics.compute()``)."""
    fig = _new_figure(5.6, 4.6)
    ax = fig.subplots()
    colors = iter([CORRECT_COLOR, WRONG_COLOR] + _OTHER_COLORS * 4)
    for name, c in curves.items():
        lab = name
        aurc = c.get("aurc")
        if aurc is not None and not (isinstance(aurc, float) and math.isnan(aurc)):
            lab += f" (AURC {aurc:.4f})"
        ax.plot(c["coverage"], c["risk"], lw=1.5, color=next(colors), label=lab)
    ax.set(
        xlim=(0, 1),
        ylim=(0, None),
        xlabel="coverage (fraction of pixels kept, most confident first)",
        ylabel="risk (error rate among kept pixels)",
        title=title or "Risk-coverage",
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_reliability(
    curves: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence bin; curves:
    method -> ``BinnedPixelMetrics.compute()["reliability"]`` (optionally with ``ece``)."""
    fig = _new_figure(5.0, 4.8)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=0.8, label="perfect calibration")
    colors = iter([CORRECT_COLOR, WRONG_COLOR] + _OTHER_COLORS * 4)
    for name, c in curves.items():
        conf = np.asarray(c["confidence"], np.float64)
        acc = np.asarray(c["accuracy"], np.float64)
        ok = np.isfinite(conf) & np.isfinite(acc)
        lab = name
        if c.get("ece") is not None:
            lab += f" (ECE {c['ece']:.3f})"
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, lw=1.3, color=next(colors), label=lab)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (max softmax probability)",
        ylabel="accuracy",
        title=title or "Reliability",
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_sigma_scale(means: Mapping[str, Any], out: str | os.PathLike, title: str | None = None) -> Path:
    """Mean student U against mean teacher U per log-spaced bin of teacher U, with the
    identity line: points on the line = the right scale. ``means``: the ``binned_means`` of
    :meth:`udistill.metrics.CorrelationMeter.binned_means` (x = student, y = teacher)."""
    mx = np.asarray([np.nan if v is None else v for v in means["mean_x"]], np.float64)
    my = np.asarray([np.nan if v is None else v for v in means["mean_y"]], np.float64)
    cnt = np.asarray(means["count"], np.float64)
    ok = np.isfinite(mx) & np.isfinite(my) & (mx > 0) & (my > 0)
    fig = _new_figure(5.0, 4.8)
    ax = fig.subplots()
    if ok.any():
        lo = float(min(mx[ok].min(), my[ok].min())) / 1.5
        hi = float(max(mx[ok].max(), my[ok].max())) * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.5", ls=":", lw=1, label="identity (same scale)")
        sizes = 10 + 60 * cnt[ok] / cnt[ok].max()
        ax.scatter(my[ok], mx[ok], s=sizes, color=WRONG_COLOR, alpha=0.8, label="binned mean (size = pixels)")
        ax.plot(my[ok], mx[ok], color=WRONG_COLOR, lw=1)
        ax.set(xlim=(lo, hi), ylim=(lo, hi))
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="teacher U (ensemble mean Σ)",
        ylabel="student U (mean σ)",
        title=title or "Scale of the student's uncertainty",
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)
