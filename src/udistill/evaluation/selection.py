"""Choices made on validation data only, and what they give on test.

A user deploys one score, so every headline number is the score chosen *before* the test set
is looked at. For each predictor side (baseline, MC dropout, ensemble, student, light
student, control, and the single-pass temperature_scaled, feature_density and multi_head)
evaluation chooses on the validation split and its shifts:

- the (method, image score) whose image-level AUROC, validation images against each
  validation shift, is best (:func:`choose_image_score`);
- the method whose per-pixel map ranks the side's own wrong pixels best on the validation
  split (:func:`choose_pixel_method`).

Ties are broken by :data:`TIE_RULE`; a choice whose margin over the runner-up is below
:data:`UNDETERMINED_MARGIN` (e.g. every candidate at AUROC 1.000) is stored with
``determined: false``, and the report says so instead of calling it chosen. The stored record
(``results.json`` ``selection.<side>``) names the validation sets and their image counts;
:func:`apply_image_choice` and :func:`apply_pixel_choice` read the chosen entry off a test
table. The per-test-set best (an oracle) is computed elsewhere and is titled as such.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ..metrics.image import IMAGE_SCORES, ood_metrics

# side (results.json name) -> predictor (methods.py name)
SIDES: dict[str, str] = {
    "baseline": "baseline",
    "mc_dropout": "mc_dropout",
    "ensemble": "teacher",
    "student": "student",
    "student_light": "student_light",
    "control": "control",
    "temperature_scaled": "temperature_scaled",
    "feature_density": "feature_density",
    "multi_head": "multi_head",
}
UNDETERMINED_MARGIN = 5e-4  # AUROC: below this the validation data cannot tell candidates apart
TIE_RULE = "highest mean validation AUROC; ties: highest worst-shift AUROC, then lowest mean FPR95, then registry order"


def rank_image_scores(
    candidates: Sequence[Hashable],
    in_scores: Mapping[Hashable, Sequence[float]],
    shift_scores: Mapping[str, Mapping[Hashable, Sequence[float]]],
) -> list[dict]:
    """Every candidate with its validation AUROC per shift, best first (:data:`TIE_RULE`).

    ``in_scores[c]``: the image scores of candidate ``c`` on the validation images;
    ``shift_scores[shift][c]``: on that validation shift.
    """
    rows = []
    for order, c in enumerate(candidates):
        per = {name: ood_metrics(in_scores[c], sc[c]) for name, sc in shift_scores.items()}
        aurocs = {n: v["auroc"] for n, v in per.items()}
        finite = [a for a in aurocs.values() if a == a]
        rows.append(
            {
                "candidate": c,
                "validation_auroc": aurocs,
                "mean": float(np.mean(finite)) if finite else math.nan,
                "worst": float(min(finite)) if finite else math.nan,
                "mean_fpr95": float(np.mean([v["fpr95"] for v in per.values()])) if per else math.nan,
                "order": order,
            }
        )

    def key(r):
        nan_low = [-math.inf if v != v else v for v in (r["mean"], r["worst"])]
        return (-nan_low[0], -nan_low[1], r["mean_fpr95"] if r["mean_fpr95"] == r["mean_fpr95"] else 1.0, r["order"])

    return sorted(rows, key=key)


def _verdict(best: float, runner_up: float | None) -> tuple[float | None, bool]:
    if runner_up is None or runner_up != runner_up:
        return None, True
    margin = float(best - runner_up)
    return margin, margin >= UNDETERMINED_MARGIN


def choose_image_score(
    candidates: Sequence[tuple[str, str]],
    in_scores: Mapping[str, Mapping[str, Sequence[float]]],
    shift_scores: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
) -> dict | None:
    """The (method, image score) best on the validation shifts, or None without shifts.

    ``in_scores[method][score]``: validation images; ``shift_scores[shift][method][score]``.
    """
    if not candidates or not shift_scores:
        return None
    flat_in = {(m, s): in_scores[m][s] for m, s in candidates}
    flat_sh = {n: {(m, s): d[m][s] for m, s in candidates} for n, d in shift_scores.items()}
    ranked = rank_image_scores(list(candidates), flat_in, flat_sh)
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    margin, determined = _verdict(best["mean"], runner["mean"] if runner else None)
    method, score = best["candidate"]
    return {
        "method": method,
        "score": score,
        "validation_auroc": best["validation_auroc"],
        "mean_validation_auroc": best["mean"],
        "runner_up": f"{runner['candidate'][0]} / {runner['candidate'][1]}" if runner else None,
        "margin": margin,
        "determined": determined,
        "rule": TIE_RULE,
    }


def choose_pixel_method(candidates: Sequence[str], val_pixel: Mapping[str, Mapping]) -> dict | None:
    """The method whose map ranks the side's own wrong pixels best (AUROC) on the validation split."""
    rows = [
        (float(val_pixel[m]["auroc"]), -i, m)
        for i, m in enumerate(candidates)
        if m in val_pixel and val_pixel[m].get("auroc") is not None and val_pixel[m]["auroc"] == val_pixel[m]["auroc"]
    ]
    if not rows:
        return None
    rows.sort(reverse=True)
    margin, determined = _verdict(rows[0][0], rows[1][0] if len(rows) > 1 else None)
    return {
        "method": rows[0][2],
        "validation_auroc": rows[0][0],
        "runner_up": rows[1][2] if len(rows) > 1 else None,
        "margin": margin,
        "determined": determined,
        "rule": "highest validation pixel-error AUROC; ties: registry order",
    }


def select_on_validation(
    methods: Sequence,
    in_scores: Mapping[str, Mapping[str, Sequence[float]]],
    shift_scores: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    val_pixel: Mapping[str, Mapping],
    chosen_on: Mapping,
) -> dict[str, dict]:
    """``selection.<side>`` for every side that has methods: the image-score choice (flat
    keys ``method``, ``score``, ...), the pixel choice under ``pixel``, and ``chosen_on``."""
    out = {}
    for side, predictor in SIDES.items():
        keys = [m.key for m in methods if m.predictor == predictor]
        if not keys:
            continue
        image = choose_image_score([(k, s) for k in keys for s in IMAGE_SCORES], in_scores, shift_scores)
        out[side] = {
            "predictor": predictor,
            **(image or {"method": None, "score": None, "determined": False}),
            "pixel": choose_pixel_method(keys, val_pixel),
            "chosen_on": dict(chosen_on),
        }
    return out


def apply_image_choice(ood: Mapping[str, Mapping[str, Mapping]], selection: Mapping[str, Mapping]) -> dict:
    """``shifts.<s>.selected``: per side the chosen (method, score) and its test AUROC, FPR95, AUPR."""
    out = {}
    for side, sel in selection.items():
        m, sc = sel.get("method"), sel.get("score")
        vals = ((ood.get(m) or {}).get(sc) or {}) if m else {}
        if not vals:
            continue
        out[side] = {
            "method": m,
            "score": sc,
            "auroc": vals.get("auroc"),
            "fpr95": vals.get("fpr95"),
            "aupr": vals.get("aupr"),
            "determined": sel.get("determined", False),
        }
    return out


def apply_pixel_choice(pixel: Mapping[str, Mapping], selection: Mapping[str, Mapping], keys=("auroc", "eaurc")) -> dict:
    """Per side the pixel method chosen on validation and its values in ``pixel`` (a test table)."""
    out = {}
    for side, sel in selection.items():
        choice = sel.get("pixel") or {}
        m = choice.get("method")
        if m and m in pixel:
            out[side] = {"method": m, **{k: pixel[m].get(k) for k in keys}, "determined": choice.get("determined")}
    return out
