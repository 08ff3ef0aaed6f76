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


def _row(what: str, student, ensemble, student_by=None, ensemble_by=None, note: str = "") -> dict:
    return {
        "what": what,
        "student": student,
        "ensemble": ensemble,
        "student_by": student_by,
        "ensemble_by": ensemble_by,
        "note": note,
    }


def headline_rows(results: Mapping) -> list[dict]:
    """Rows ``{what, student, ensemble, student_by, ensemble_by, note}`` (numbers or None)."""
    rows = []
    vs = results.get("pixel_student_errors") or {}
    for metric, higher, label in (
        ("auroc", True, "pixel errors of the student: AUROC ↑"),
        ("eaurc", False, "pixel errors of the student: E-AURC ↓"),
    ):
        b = _num((vs.get("baseline_msp") or {}).get(metric))
        note = f"baseline softmax {b:.3f}" if b is not None else ""
        (s, sw), (e, ew) = _best(vs, SIDES["student"], metric, higher), _best(vs, SIDES["ensemble"], metric, higher)
        rows.append(_row(label, s, e, sw, ew, note))
    rows.append(_fidelity_row(results.get("agreement") or {}))
    for name, s in (results.get("shifts") or {}).items():
        (st, sw), (en, ew) = _best_ood(s.get("ood"), SIDES["student"]), _best_ood(s.get("ood"), SIDES["ensemble"])
        op = s.get("operating_point") or {}
        note = ""
        if op:
            note = (
                f"alarm ({op.get('score')}, chosen on val): detects {op['detection_rate']:.0%}, "
                f"false alarms {op['false_alarm_rate']:.0%} (calibrated at {op.get('calibration_false_alarm_rate', 0):.0%})"
            )
        rows.append(_row(f"OOD {name}: image AUROC ↑", st, en, sw, ew, note))
    miou = results.get("miou") or {}
    extra = ", ".join(f"{k} {miou[k]:.3f}" for k in ("baseline", "control") if _num(miou.get(k)) is not None)
    rows.append(_row("mIoU (in distribution) ↑", _num(miou.get("student")), _num(miou.get("teacher")), note=extra))
    lat = results.get("latency_ms") or {}
    if lat:
        ratio = _num(lat.get("ensemble_over_student"))
        note = f"ensemble / student {ratio:.2f}×" if ratio else ""
        rows.append(_row("latency, batch 1, ms ↓", _num(lat.get("student")), _num(lat.get("ensemble")), note=note))
    return rows


def _fidelity_row(ag: Mapping) -> dict:
    """Pearson of the student's U with the ensemble's, with the scale and the teacher's own ceiling."""
    ratios = [_num(d.get("median_ratio")) for d in ag.get("scale_ratio_by_decile") or []]
    ratios = [r for r in ratios if r is not None]
    ceiling = _num(ag.get("pearson_ceiling"))
    note = f"scale ratio per decile {min(ratios):.2f}–{max(ratios):.2f} (1 = same scale)" if ratios else ""
    if ceiling is not None:
        note += f"; the teacher's own noise caps it at ≈ {ceiling:.3f} (half-vs-half {ag['teacher_half_pearson']:.3f})"
    what = "σ fidelity: Pearson of student U with ensemble U"
    return _row(what, _num(ag.get("pearson")), None, "student_sigma", "ensemble_std", note)


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
