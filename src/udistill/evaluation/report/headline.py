"""The answer first: what the student keeps of the ensemble's uncertainty, at what cost.

:func:`headline_rows` reduces a results dict to a few rows, student beside ensemble, each
pair measured on the same images and the same error set, each side by the score a user gets:
the one chosen on validation data (``results["selection"]``, see :mod:`udistill.evaluation.selection`):

- pixel errors: the *student's* wrong pixels ranked by each side's chosen pixel method;
- σ fidelity: Pearson of student U against ensemble U, and the scale;
- per shift: image-level OOD AUROC of each side's chosen (method, image score), the
  baseline's beside it, and the operating point of the student's stored alarm;
- segmentation (mIoU) and cost (batch-1 latency);
- when the run evaluated the single-pass methods (:mod:`udistill.single_pass`), each pixel
  and shift row notes their validation-chosen values beside the student's, and a calibration
  row gives ECE with the temperature-scaled baseline beside it.

:func:`oracle_rows` gives the per-test-set best of each side: an upper bound chosen on the
test data, reported only in a table titled as an oracle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..methods import BY_KEY

SIDES = {"student": ("student",), "ensemble": ("teacher",)}
SINGLE_PASS_SIDES = ("temperature_scaled", "feature_density", "multi_head")


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


def _chosen_text(sel: Mapping | None) -> str:
    """Where a choice was made, read from the stored record (never typed)."""
    if not sel:
        return "no choice stored"
    on = sel.get("chosen_on") or {}
    val = on.get("validation") or {}
    shifts = ", ".join(on.get("shifts") or {}) or "none"
    text = f"chosen on {val.get('set', 'validation')} and its shifts ({shifts})"
    if sel.get("determined") is False:
        text += "; undetermined there (tie within 0.0005 AUROC, broken by the stated rule)"
    return text


def _selected_name(entry: Mapping | None, with_score: bool = True) -> str | None:
    if not entry or not entry.get("method"):
        return None
    name = f"{entry['method']} / {entry['score']}" if with_score and entry.get("score") else entry["method"]
    return name if entry.get("determined", True) is not False else name + " (undetermined)"


def _alarm_note(op: Mapping, alarm: Mapping | None) -> str:
    """The stored alarm at work on this shift (its provenance is in the selection table)."""
    if not op:
        return ""
    upper = _num(op.get("false_alarm_rate_upper_95"))
    bound = f", ≤ {upper:.0%} at 95 %" if upper is not None else ""
    return (
        f"alarm ({op.get('score')}): detects {op['detection_rate']:.0%}, false alarms "
        f"{op['false_alarm_rate']:.0%}{bound} (target {op.get('calibration_false_alarm_rate', 0):.0%})"
    )


def _single_pass_note(chosen: Mapping, metric: str) -> str:
    """The single-pass sides' values of ``metric`` in one note ("" when none was evaluated)."""
    parts = [
        f"{side} {_num((chosen.get(side) or {}).get(metric)):.3f}"
        for side in SINGLE_PASS_SIDES
        if _num((chosen.get(side) or {}).get(metric)) is not None
    ]
    return "single-pass: " + ", ".join(parts) if parts else ""


def _joined(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _calibration_row(results: Mapping) -> dict | None:
    """ECE of the student and the ensemble, the baseline's and the temperature-scaled one's in
    the note (only for runs with the single-pass methods)."""
    preds = results.get("predictors") or {}
    if "temperature_scaled" not in preds:
        return None
    ece = {p: _num((preds.get(p) or {}).get("ece")) for p in preds}
    t = _num(((results.get("single_pass") or {}).get("temperature_scaled") or {}).get("temperature"))
    parts = [f"{p} {ece[p]:.3f}" for p in ("baseline", "temperature_scaled", "multi_head") if ece.get(p) is not None]
    note = ", ".join(parts) + (f" (T = {t:.3g}, fitted on validation)" if t is not None else "")
    return _row("calibration: ECE (15 bins) ↓", ece.get("student"), ece.get("teacher"), note=note)


def headline_rows(results: Mapping) -> list[dict]:
    """Rows ``{what, student, ensemble, student_by, ensemble_by, note}`` (numbers or None).

    Every number is the score chosen on validation (``results["selection"]``), applied to the
    test set; results without a stored selection (older runs) fall back to the per-test-set
    best and say so in the row (an oracle)."""
    if not results.get("selection"):
        return oracle_rows(results, legacy=True)
    rows = []
    sel = results["selection"]
    vs = results.get("pixel_student_errors_selected") or {}
    for metric, label in (
        ("auroc", "pixel errors of the student: AUROC ↑"),
        ("eaurc", "pixel errors of the student: E-AURC ↓"),
    ):
        s, e, b = (vs.get(side) or {} for side in ("student", "ensemble", "baseline"))
        note = f"baseline ({b['method']}) {_num(b.get(metric)):.3f}" if _num(b.get(metric)) is not None else ""
        note = _joined(note, _single_pass_note(vs, metric))
        rows.append(
            _row(
                label,
                _num(s.get(metric)),
                _num(e.get(metric)),
                _selected_name(s, False),
                _selected_name(e, False),
                note,
            )
        )
    rows.append(_fidelity_row(results.get("agreement") or {}))
    for name, sh in (results.get("shifts") or {}).items():
        chosen = sh.get("selected") or {}
        s, e, b = (chosen.get(side) or {} for side in ("student", "ensemble", "baseline"))
        parts = [f"baseline {_num(b.get('auroc')):.3f}"] if _num(b.get("auroc")) is not None else []
        alarm_note = _alarm_note(sh.get("operating_point") or {}, (results.get("alarm") or {}).get("student"))
        if alarm_note:
            parts.append(alarm_note)
        if _single_pass_note(chosen, "auroc"):
            parts.append(_single_pass_note(chosen, "auroc"))
        rows.append(
            _row(
                f"OOD {name}: image AUROC ↑",
                _num(s.get("auroc")),
                _num(e.get("auroc")),
                _selected_name(s),
                _selected_name(e),
                "; ".join(parts),
            )
        )
    calibration = _calibration_row(results)
    if calibration:
        rows.append(calibration)
    rows += _miou_and_cost_rows(results)
    for r in rows:
        r["chosen_on"] = _chosen_text(sel.get("student"))
    return rows


def oracle_rows(results: Mapping, legacy: bool = False) -> list[dict]:
    """The per-test-set best (method, score) of each side: an oracle, chosen on the test data
    it reports, shown only in a table titled as such (``legacy``: the headline of a results
    file written before selections were stored)."""
    rows = []
    tag = " [oracle: best on this test set]"
    vs = results.get("pixel_student_errors") or {}
    for metric, higher, label in (
        ("auroc", True, "pixel errors of the student: AUROC ↑"),
        ("eaurc", False, "pixel errors of the student: E-AURC ↓"),
    ):
        b = _num((vs.get("baseline_msp") or {}).get(metric))
        note = f"baseline softmax {b:.3f}" if b is not None else ""
        (s, sw), (e, ew) = _best(vs, SIDES["student"], metric, higher), _best(vs, SIDES["ensemble"], metric, higher)
        rows.append(_row(label + tag, s, e, sw, ew, note))
    if legacy:
        rows.append(_fidelity_row(results.get("agreement") or {}))
    for name, s in (results.get("shifts") or {}).items():
        (st, sw), (en, ew) = _best_ood(s.get("ood"), SIDES["student"]), _best_ood(s.get("ood"), SIDES["ensemble"])
        rows.append(_row(f"OOD {name}: image AUROC ↑" + tag, st, en, sw, ew))
    if legacy:
        rows += _miou_and_cost_rows(results)
    return rows


def _miou_and_cost_rows(results: Mapping) -> list[dict]:
    rows = []
    miou = results.get("miou") or {}
    extra = ", ".join(f"{k} {miou[k]:.3f}" for k in ("baseline", "control") if _num(miou.get(k)) is not None)
    rows.append(_row("mIoU (in distribution) ↑", _num(miou.get("student")), _num(miou.get("teacher")), note=extra))
    lat = results.get("latency_ms") or {}
    if lat:
        ratio = _num(lat.get("ensemble_over_student"))
        note = f"ensemble / student {ratio:.2f}×" if ratio else ""
        single = [
            f"{p} {_num(lat.get(p + '_over_baseline')):.2f}×"
            for p in SINGLE_PASS_SIDES
            if _num(lat.get(p + "_over_baseline")) is not None
        ]
        if single:
            note = _joined(note, "over the baseline: " + ", ".join(single))
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
