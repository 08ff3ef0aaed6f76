"""The answer first: what the student keeps of the ensemble's uncertainty, at what cost.

:func:`headline_rows` reduces a results dict to a few rows, student beside ensemble, each
pair measured on the same images and the same error set:

- pixel errors: the *student's* wrong pixels ranked by the best student score and by the
  best ensemble score (``pixel_student_errors``: one error set for both);
- σ fidelity: Pearson of student U against ensemble U, and the scale (median ratio per
  decile of ensemble U, smallest and largest);
- per shift: image-level OOD AUROC of the best (method, image score) of each, and the
  operating point of the student's stored alarm (score chosen on validation shifts);
- segmentation (mIoU) and cost (batch-1 latency).

"Best" is the maximum over each model's own methods and image scores on this test set, the
same rule for both sides: an upper bound for each, not a choice made for deployment (the
alarm's score is that choice, made on validation data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..methods import BY_KEY

SIDES = {"student": ("student",), "ensemble": ("teacher",)}


def _num(v: Any) -> float | None:
    """A finite float, or None (missing, nan, not a number): the tables' reading of a cell."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _best(
    table: Mapping, predictors: tuple[str, ...], metric: str, higher: bool = True
) -> tuple[float | None, str | None]:
    best, which = None, None
    for key, vals in (table or {}).items():
        if key not in BY_KEY or BY_KEY[key].predictor not in predictors:
            continue
        v = _num((vals or {}).get(metric))
        if v is not None and (best is None or (v > best if higher else v < best)):
            best, which = v, key
    return best, which


def _best_ood(ood: Mapping, predictors: tuple[str, ...]) -> tuple[float | None, str | None]:
    best, which = None, None
    for key, by_score in (ood or {}).items():
        if key not in BY_KEY or BY_KEY[key].predictor not in predictors:
            continue
        for sc, vals in (by_score or {}).items():
            v = _num((vals or {}).get("auroc"))
            if v is not None and (best is None or v > best):
                best, which = v, f"{key} / {sc}"
    return best, which


def headline_rows(results: Mapping) -> list[dict]:
    """Rows ``{what, student, ensemble, student_by, ensemble_by, note}`` (numbers or None)."""
    rows = []
    vs = results.get("pixel_student_errors") or {}
    for metric, higher, label in (
        ("auroc", True, "pixel errors of the student: AUROC ↑"),
        ("eaurc", False, "pixel errors of the student: E-AURC ↓"),
    ):
        s, sw = _best(vs, SIDES["student"], metric, higher)
        e, ew = _best(vs, SIDES["ensemble"], metric, higher)
        b = _num((vs.get("baseline_msp") or {}).get(metric))
        rows.append(
            {
                "what": label,
                "student": s,
                "ensemble": e,
                "student_by": sw,
                "ensemble_by": ew,
                "note": f"baseline softmax {b:.3f}" if b is not None else "",
            }
        )
    ag = results.get("agreement") or {}
    ratios = [_num(d.get("median_ratio")) for d in ag.get("scale_ratio_by_decile") or []]
    ratios = [r for r in ratios if r is not None]
    ceiling = _num(ag.get("pearson_ceiling"))
    note = f"scale ratio per decile {min(ratios):.2f}–{max(ratios):.2f} (1 = same scale)" if ratios else ""
    if ceiling is not None:
        note += f"; the teacher's own noise caps it at ≈ {ceiling:.3f} (half-vs-half {ag['teacher_half_pearson']:.3f})"
    rows.append(
        {
            "what": "σ fidelity: Pearson of student U with ensemble U",
            "student": _num(ag.get("pearson")),
            "ensemble": None,
            "student_by": "student_sigma",
            "ensemble_by": "ensemble_std",
            "note": note,
        }
    )
    for name, s in (results.get("shifts") or {}).items():
        st, sw = _best_ood(s.get("ood"), SIDES["student"])
        en, ew = _best_ood(s.get("ood"), SIDES["ensemble"])
        op = s.get("operating_point") or {}
        note = ""
        if op:
            note = (
                f"alarm ({op.get('score')}, chosen on val): detects {op['detection_rate']:.0%}, "
                f"false alarms {op['false_alarm_rate']:.0%} (calibrated at {op.get('calibration_false_alarm_rate', 0):.0%})"
            )
        rows.append(
            {
                "what": f"OOD {name}: image AUROC ↑",
                "student": st,
                "ensemble": en,
                "student_by": sw,
                "ensemble_by": ew,
                "note": note,
            }
        )
    miou = results.get("miou") or {}
    extra = ", ".join(f"{k} {miou[k]:.3f}" for k in ("baseline", "control") if _num(miou.get(k)) is not None)
    rows.append(
        {
            "what": "mIoU (in distribution) ↑",
            "student": _num(miou.get("student")),
            "ensemble": _num(miou.get("teacher")),
            "student_by": None,
            "ensemble_by": None,
            "note": extra,
        }
    )
    lat = results.get("latency_ms") or {}
    if lat:
        rows.append(
            {
                "what": "latency, batch 1, ms ↓",
                "student": _num(lat.get("student")),
                "ensemble": _num(lat.get("ensemble")),
                "student_by": None,
                "ensemble_by": None,
                "note": f"ensemble / student {lat['ensemble_over_student']:.2f}×"
                if _num(lat.get("ensemble_over_student"))
                else "",
            }
        )
    return rows


def headline_text(rows: list[dict]) -> str:
    """The headline as aligned text (what ``udistill demo`` prints)."""

    def f(v):
        return "  -  " if v is None else f"{v:.3f}"

    width = max([len(r["what"]) for r in rows] + [10])
    lines = [f"{'':<{width}}  student  ensemble"]
    for r in rows:
        by = ""
        if r.get("student_by") and r.get("ensemble_by") and r["student_by"] != "student_sigma":
            by = f"  [{r['student_by']} | {r['ensemble_by']}]"
        note = f"  {r['note']}" if r.get("note") else ""
        lines.append(f"{r['what']:<{width}}  {f(r['student']):>7}  {f(r['ensemble']):>8}{by}{note}")
    return "\n".join(lines)
