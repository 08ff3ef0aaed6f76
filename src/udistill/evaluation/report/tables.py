"""Result tables built from the evaluation results dict, rendered to Markdown or HTML.

Results schema (every part optional except where noted)::

    classes: [name, ...]
    miou: {baseline, teacher, student}
    per_class_iou: {baseline, teacher, student}: [float per class]
    per_class_uncertainty: {teacher, student}: [float per class]
    pixel: {<method>: {auroc, aupr, fpr95, ece, brier, aurc[, eaurc]}}
    agreement: {pearson, spearman, per_class: {<class id>: {pearson, spearman[, n]}}}
    shifts: {<shift>: {miou: {baseline, teacher, student},
                       ood: {<method>: {<score>: {auroc, fpr95}}},
                       pixel: {<method>: {...}}   # optional, same as top-level pixel}}
    selection: {<side>: {...}}; pixel_student_errors_selected: {<side>: {auroc, eaurc}}
    single_pass: {temperature_scaled: {temperature, ...}, feature_density: {...}, multi_head: {...}}
    latency: {...}   # any (nested) dict of numbers/strings
    config: {...}
    in_distribution_name: str   # optional label of the test set, default "in-distribution"
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..methods import BY_KEY, METHODS, PREDICTORS
from .headline import _chosen_text, _num, headline_rows, oracle_rows

SEG_METHODS = tuple(p for p in PREDICTORS if p != "mc_dropout") + ("mc_dropout",)
# predictors whose class map is the baseline's (same argmax): left out of the segmentation tables
BASELINE_ARGMAX = ("temperature_scaled", "feature_density")
# the sides of the single-pass comparison, student first (selection.SIDES names)
COMPARED_SIDES = (
    "student",
    "temperature_scaled",
    "feature_density",
    "multi_head",
    "baseline",
    "mc_dropout",
    "ensemble",
)
PIXEL_METHODS = tuple(m.key for m in METHODS)
PIXEL_METRICS = (  # key, header, higher is better
    ("auroc", "AUROC ↑", True),
    ("aupr", "AUPR ↑", True),
    ("aupr_over_error_rate", "AUPR / error rate ↑", True),
    ("fpr95", "FPR95 ↓", False),
    ("aurc", "AURC ↓", False),
    ("eaurc", "E-AURC ↓", False),
)
PREDICTOR_METRICS = (  # key, header, higher is better
    ("miou", "mIoU ↑", True),
    ("error_rate", "error rate ↓", False),
    ("ece", "ECE (15 bins) ↓", False),
    ("ece_adaptive", "adaptive ECE ↓", False),
    ("brier", "Brier ↓", False),
    ("nll", "NLL ↓", False),
)
IMAGE_SCORES = ("min", "mean", "median", "max", "median_plus_min_over_max")
SCORE_LABELS = {"median_plus_min_over_max": "(med+min)/max"}


@dataclass
class Table:
    """A titled table; ``rows[i][0]`` is the row label. ``shade`` optionally gives, per cell,
    a red intensity in [0, 1] (HTML only), ``best`` cells to print in bold."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    shade: list[list[float | None]] | None = None
    best: set[tuple[int, int]] = field(default_factory=set)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 10 ** (-digits) or abs(v) >= 1e6):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _ordered(keys, preferred) -> list[str]:
    keys = list(keys)
    return [k for k in preferred if k in keys] + [k for k in keys if k not in preferred]


def _nanmean(values) -> float | None:
    v = [x for x in (_num(a) for a in values) if x is not None]
    return sum(v) / len(v) if v else None


def _class_names(results: Mapping, n: int) -> list[str]:
    classes = list(results.get("classes") or [])
    return [str(classes[i]) if i < len(classes) else str(i) for i in range(n)]


def _shade_row(values, higher_is_bad: bool, lo: float, hi: float) -> list[float | None]:
    out = []
    for v in values:
        f = _num(v)
        if f is None or hi <= lo:
            out.append(None)
        else:
            t = (f - lo) / (hi - lo)
            out.append(t if higher_is_bad else 1.0 - t)
    return out


def _mark_best(table: Table, col_better: Mapping[int, bool], groups: list | None = None) -> None:
    """Bold the best value of each column, among rows of the same group only (``groups[i]``
    for row i; None = all rows are comparable)."""
    if groups is not None:
        for g in dict.fromkeys(groups):
            sub = Table(
                table.key,
                "",
                table.columns,
                [r if gi == g else [r[0]] + [None] * (len(r) - 1) for r, gi in zip(table.rows, groups)],
            )
            _mark_best(sub, col_better)
            table.best |= sub.best
        return
    for j, higher in col_better.items():
        vals = [(_num(r[j]), i) for i, r in enumerate(table.rows)]
        vals = [(v, i) for v, i in vals if v is not None]
        if len(vals) < 2:
            continue
        best = max(v for v, _ in vals) if higher else min(v for v, _ in vals)
        table.best |= {(i, j) for v, i in vals if v == best}


# --------------------------------------------------------------------------- builders


def per_class_table(results: Mapping) -> Table | None:
    """Table 1: per-class IoU (baseline / teacher / student) and mean uncertainty."""
    iou = {k: v for k, v in (results.get("per_class_iou") or {}).items() if v and k not in BASELINE_ARGMAX}
    unc = {k: v for k, v in (results.get("per_class_uncertainty") or {}).items() if v}
    n = max([len(v) for v in list(iou.values()) + list(unc.values())] or [0])
    if n == 0:
        return None
    names = _class_names(results, n)
    rows, kinds = [], []
    for m in _ordered(iou, SEG_METHODS):
        vals = list(iou[m]) + [None] * (n - len(iou[m]))
        mean = _num(_get(results, "miou", m))
        rows.append([f"{m.capitalize()} IoU", *vals, mean if mean is not None else _nanmean(vals)])
        kinds.append("iou")
    for m in _ordered(unc, ("teacher", "student", "student_light")):
        vals = list(unc[m]) + [None] * (n - len(unc[m]))
        rows.append([f"{m.capitalize()} uncertainty", *vals, _nanmean(vals)])
        kinds.append("unc")
    ranges = {}
    for kind in ("iou", "unc"):
        cells = [_num(v) for r, k in zip(rows, kinds) if k == kind for v in r[1:]]
        cells = [c for c in cells if c is not None]
        ranges[kind] = (min(cells), max(cells)) if cells else (0.0, 0.0)
    shade_rows = [[None] + _shade_row(r[1:], k == "unc", *ranges[k]) for r, k in zip(rows, kinds)]
    return Table(
        key="per_class",
        title="Table 1 — per-class IoU and mean predicted uncertainty",
        columns=["", *names, "Mean"],
        rows=rows,
        note="Red: lower IoU / higher uncertainty. Uncertainty = mean σ of the pixels predicted as the class.",
        shade=shade_rows,
    )


def miou_table(results: Mapping) -> Table | None:
    """Table 2: mIoU per data set (in-distribution test set, then every shift)."""
    shifts = results.get("shifts") or {}
    sets = []
    if results.get("miou"):
        sets.append((str(results.get("in_distribution_name") or "in-distribution"), results["miou"]))
    for name, s in shifts.items():
        if isinstance(s, Mapping) and s.get("miou"):
            sets.append((str(name), s["miou"]))
    if not sets:
        return None
    methods = _ordered({k for _, m in sets for k in m if k not in BASELINE_ARGMAX}, SEG_METHODS)
    rows = [[name, *[_num(m.get(k)) for k in methods]] for name, m in sets]
    return Table(key="miou", title="Table 2 — mean IoU per data set", columns=["Data set", *methods], rows=rows)


def pixel_table(pixel: Mapping, title: str, key: str = "pixel", comparable: str = "predictor") -> Table | None:
    """Pixel-level misclassification detection per method.

    ``comparable="predictor"``: each method ranks its own predictor's errors, so only rows of
    one predictor are compared (best in bold within each predictor). ``"all"``: every method
    ranks the same error set (``pixel_student_errors``), every row is comparable."""
    if not pixel:
        return None
    methods = _ordered(pixel, PIXEL_METHODS)
    metrics = [m for m in PIXEL_METRICS if any(_get(pixel, meth, m[0]) is not None for meth in methods)]
    if not metrics:
        metrics = list(PIXEL_METRICS[:5])
    preds = [
        str(_get(pixel, meth, "predictor") or (BY_KEY[meth].predictor if meth in BY_KEY else meth)) for meth in methods
    ]
    rows = [[meth, pred, *[_num(_get(pixel, meth, k)) for k, _, _ in metrics]] for meth, pred in zip(methods, preds)]
    if comparable == "predictor":
        note = (
            "Positives = each predictor's own misclassified pixels, so rows of different predictors rank different "
            "error sets (AUPR's chance level is the error rate): best in bold within each predictor only; "
            "compare across predictors with E-AURC or the table against the student's errors."
        )
    else:
        note = "Positives = the student's misclassified pixels, the same error set for every row: best in bold over all rows."
    t = Table(key=key, title=title, columns=["Method", "Predictor", *[h for _, h, _ in metrics]], rows=rows, note=note)
    _mark_best(
        t, {j + 2: hib for j, (_, _, hib) in enumerate(metrics)}, groups=preds if comparable == "predictor" else None
    )
    return t


def predictor_table(
    results: Mapping,
    title: str = "Predictors: segmentation and calibration of the probabilities",
    key: str = "predictors",
) -> Table | None:
    """Per predictor: mIoU, error rate, ECE (15 bins), adaptive ECE, Brier, NLL."""
    preds = results.get("predictors") or {}
    if not preds:
        return None
    names = _ordered(preds, PREDICTORS)
    rows = [[p, *[_num(_get(preds, p, k)) for k, _, _ in PREDICTOR_METRICS]] for p in names]
    t = Table(
        key=key,
        title=title,
        columns=["Predictor", *[h for _, h, _ in PREDICTOR_METRICS]],
        rows=rows,
        note="Calibration belongs to a predictor's probabilities, not to a score. Same images for every row.",
    )
    _mark_best(t, {j + 1: hib for j, (_, _, hib) in enumerate(PREDICTOR_METRICS)})
    return t


def headline_table(results: Mapping) -> Table | None:
    """What the student keeps of the ensemble's uncertainty (the report's first table)."""
    rows = results.get("headline") or headline_rows(results)
    if not rows:
        return None
    sel = results.get("selection")
    note = "Each pair is measured on the same images and error set. " + (
        f"Each side's score was {_chosen_text(sel.get('student'))}; the test set chose nothing."
        if sel
        else "This results file stores no validation choice: rows marked [oracle] are the best on this test set."
    )
    return Table(
        key="headline",
        title="What the student keeps of the ensemble's uncertainty",
        columns=["", "Student", "Ensemble", "score used (student | ensemble)", "note"],
        rows=_rows_of(rows),
        note=note,
    )


def single_pass_table(results: Mapping) -> Table | None:
    """The student beside the single-pass methods (and the baseline, MC dropout, ensemble):
    each side by its validation-chosen scores, on the same images and the same error set."""
    sel = results.get("selection") or {}
    if not any(side in sel for side in ("temperature_scaled", "feature_density", "multi_head")):
        return None
    sides = [s for s in COMPARED_SIDES if s in sel]
    shifts = list(results.get("shifts") or {})
    vs = results.get("pixel_student_errors_selected") or {}
    preds = results.get("predictors") or {}
    lat = results.get("latency_ms") or {}
    base_ms = _num(lat.get("baseline"))
    rows = []
    for side in sides:
        predictor = sel[side].get("predictor", side)
        ms = _num(lat.get("ensemble" if side == "ensemble" else side))
        rows.append(
            [
                side,
                _num(_get(vs, side, "auroc")),
                _num(_get(vs, side, "eaurc")),
                *[_num(_get(results, "shifts", s, "selected", side, "auroc")) for s in shifts],
                _num(_get(preds, predictor, "ece")),
                ms / base_ms if ms is not None and base_ms else None,
            ]
        )
    t = Table(
        key="single_pass",
        title="The student beside the single-pass methods (scores chosen on validation)",
        columns=[
            "Side",
            "student's pixel errors: AUROC ↑",
            "E-AURC ↓",
            *[f"OOD {s}: image AUROC ↑" for s in shifts],
            "ECE ↓",
            "latency / baseline ↓",
        ],
        rows=rows,
        note="Every row is measured on the same images: pixel columns rank the student's wrong pixels by each "
        "side's pixel method chosen on validation, OOD columns use each side's (method, image score) chosen on "
        "the validation shifts (the selection table). ECE: each side's probabilities (temperature scaling "
        "changes only these). Latency: batch 1, eager PyTorch, each predictor on its own.",
    )
    n = len(t.columns)
    _mark_best(t, {1: True, 2: False, **{3 + j: True for j in range(len(shifts))}, n - 2: False, n - 1: False})
    return t


def _rows_of(rows: list[dict]) -> list[list]:
    body = []
    for r in rows:
        by = f"{r.get('student_by') or ''} | {r.get('ensemble_by') or ''}" if r.get("student_by") else ""
        body.append([r["what"], _num(r.get("student")), _num(r.get("ensemble")), by, r.get("note", "")])
    return body


def oracle_table(results: Mapping) -> Table | None:
    """The per-test-set best of each side: an oracle, never the headline."""
    if not results.get("selection"):
        return None  # the headline itself is the oracle then, and says so
    rows = oracle_rows(results)
    if not rows:
        return None
    return Table(
        key="oracle",
        title="Oracle (chosen on the test shift): the best score of each side on each test set",
        columns=["", "Student", "Ensemble", "best on this test set (student | ensemble)", "note"],
        rows=_rows_of(rows),
        note="An upper bound, not a result: each cell picks the best (method, image score) on the very test data it reports. "
        "A user gets the headline's validation-chosen scores.",
    )


def selection_table(results: Mapping) -> Table | None:
    """What each side chose on validation, with its validation AUROC and margin."""
    sel = results.get("selection") or {}
    rows = []
    for side, r in sel.items():
        pix = r.get("pixel") or {}
        rows.append(
            [
                side,
                f"{r.get('method')} / {r.get('score')}" if r.get("method") else "–",
                _num(r.get("mean_validation_auroc")),
                _num(r.get("margin")),
                "yes" if r.get("determined") else "no",
                pix.get("method") or "–",
                _num(pix.get("validation_auroc")),
            ]
        )
    if not rows:
        return None
    return Table(
        key="selection",
        title="Scores chosen on validation",
        columns=[
            "Side",
            "image score (method / reduction)",
            "mean val AUROC",
            "margin over runner-up",
            "determined",
            "pixel method",
            "val pixel AUROC",
        ],
        rows=rows,
        note=_chosen_text(next(iter(sel.values()))).capitalize()
        + ". Undetermined: the runner-up is within 0.0005 AUROC; the tie is broken by the stated rule.",
    )


def scale_table(results: Mapping) -> Table | None:
    """σ scale: median student U / ensemble U per decile of ensemble U."""
    dec = _get(results, "agreement", "scale_ratio_by_decile") or []
    if not dec:
        return None
    rows = [
        [
            str(d["decile"]),
            _num(d.get("y_low")),
            _num(d.get("y_high")),
            _num(d.get("median_y")),
            _num(d.get("median_x")),
            _num(d.get("median_ratio")),
        ]
        for d in dec
    ]
    return Table(
        key="scale",
        title="Scale of the student's U per decile of the ensemble's U",
        columns=["Decile", "ensemble U from", "to", "median ensemble U", "median student U", "median ratio"],
        rows=rows,
        note="Median of student U / ensemble U over the pixels of each decile: 1 = the right scale.",
    )


def operating_point_table(results: Mapping) -> Table | None:
    """The stored alarm at work: false alarms on in-distribution test images, detections per shift."""
    rows = []
    for name, s in (results.get("shifts") or {}).items():
        for who, op in ((s or {}).get("operating_points") or {}).items():
            rows.append(
                [
                    f"{name}",
                    who,
                    SCORE_LABELS.get(op.get("score"), op.get("score")),
                    _num(op.get("threshold")),
                    _num(op.get("calibration_false_alarm_rate")),
                    _num(op.get("false_alarm_rate")),
                    _num(op.get("false_alarm_rate_upper_95")),
                    _num(op.get("detection_rate")),
                ]
            )
    if not rows:
        return None
    cal = results.get("alarm_calibration_set") or "the calibration set"
    alarm = (results.get("alarm") or {}).get("student") or {}
    chosen = ", ".join(alarm.get("selection") or {}) or "no validation shift (the stored or the paper's score)"
    return Table(
        key="operating_point",
        title="OOD alarm at the stored threshold",
        rows=rows,
        columns=[
            "Shift",
            "Student",
            "Image score",
            "Threshold",
            "target false-alarm rate",
            "false alarms (test)",
            "95 % upper bound",
            "detection rate",
        ],
        note=f"Threshold fitted by `udistill calibrate` on {cal}; image score chosen on: {chosen}; measured here on test images.",
    )


def agreement_table(results: Mapping) -> Table | None:
    """Student σ vs teacher σ agreement, overall and per class."""
    ag = results.get("agreement")
    if not ag:
        return None
    rows = [["all pixels", _num(ag.get("pearson")), _num(ag.get("spearman")), ag.get("n")]]
    per = ag.get("per_class") or {}

    def _id(k):
        try:
            return int(k)
        except (TypeError, ValueError):
            return None

    names = list(results.get("classes") or [])
    for k in sorted(per, key=lambda k: (_id(k) is None, _id(k) if _id(k) is not None else str(k))):
        i = _id(k)
        label = names[i] if i is not None and 0 <= i < len(names) else str(k)
        v = per[k] or {}
        rows.append([label, _num(v.get("pearson")), _num(v.get("spearman")), v.get("n")])
    has_n = any(r[3] is not None for r in rows)
    cols = ["Pixels", "Pearson", "Spearman"] + (["n"] if has_n else [])
    rows = [r if has_n else r[:3] for r in rows]
    return Table(key="agreement", title="Agreement of student σ with teacher σ", columns=cols, rows=rows)


def ood_tables(results: Mapping) -> list[Table]:
    """Per shift two tables, AUROC and FPR95, per method (rows) and image score (columns):
    every row ranks the same images, so the best is bolded over all of them."""
    out = []
    for shift, s in (results.get("shifts") or {}).items():
        ood = s.get("ood") if isinstance(s, Mapping) else None
        if not ood:
            continue
        methods = _ordered(ood, PIXEL_METHODS)
        scores = _ordered({sc for m in methods for sc in (ood[m] or {})}, IMAGE_SCORES)
        for metric, label, higher in (("auroc", "AUROC ↑", True), ("fpr95", "FPR95 ↓", False)):
            rows = [[m, *[_num(_get(ood, m, sc, metric)) for sc in scores]] for m in methods]
            t = Table(
                key=f"ood_{shift}" if metric == "auroc" else f"ood_{metric}_{shift}",
                title=f"OOD detection — {shift} (positives) vs in-distribution images: image {label}",
                columns=["Method", *[SCORE_LABELS.get(sc, sc) for sc in scores]],
                rows=rows,
                note="Columns: the image score reducing the method's per-pixel map. AUROC < 0.5: the score ranks OOD images lower.",
            )
            _mark_best(t, {j + 1: higher for j in range(len(scores))})
            out.append(t)
    return out


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, Mapping):
        items = []
        for k, v in d.items():
            items += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return items
    if isinstance(d, (list, tuple)) and not all(isinstance(x, (int, float)) for x in d):
        return [(prefix, json.dumps(d, default=str))]
    if isinstance(d, (list, tuple)):
        return [(prefix, ", ".join(fmt(x) for x in d))]
    return [(prefix, d)]


def latency_table(results: Mapping) -> Table | None:
    lat = results.get("latency") or results.get("latency_ms")
    if not lat:
        return None
    rows = [[k, v] for k, v in _flatten(lat)]
    return Table(key="latency", title="Latency", columns=["Measurement", "Value"], rows=rows)


def build_tables(results: Mapping) -> list[Table]:
    """All tables the results allow, in report order (missing parts are skipped)."""
    tables: list[Table | None] = [
        headline_table(results),
        single_pass_table(results),
        selection_table(results),
        oracle_table(results),
        predictor_table(results),
        pixel_table(
            results.get("pixel_student_errors") or {},
            "Pixel errors of the student, ranked by every score",
            key="pixel_student_errors",
            comparable="all",
        ),
        pixel_table(results.get("pixel") or {}, "Pixel errors of each predictor, ranked by its own scores"),
        per_class_table(results),
        miou_table(results),
        agreement_table(results),
        scale_table(results),
        operating_point_table(results),
    ]
    for shift, s in (results.get("shifts") or {}).items():
        if isinstance(s, Mapping) and s.get("pixel"):
            tables.append(pixel_table(s["pixel"], f"Pixel-level uncertainty — {shift}", key=f"pixel_{shift}"))
    tables += ood_tables(results)
    tables.append(latency_table(results))
    return [t for t in tables if t is not None]


# --------------------------------------------------------------------------- renderers


def to_markdown(t: Table) -> str:
    def cell(v: Any, i: int, j: int) -> str:
        s = fmt(v).replace("|", "\\|")
        return f"**{s}**" if (i, j) in t.best and s != "–" else s

    lines = [f"### {t.title}", ""]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in t.columns) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(t.columns) - 1)) + "|")
    for i, r in enumerate(t.rows):
        lines.append("| " + " | ".join(cell(v, i, j) for j, v in enumerate(r)) + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    parts = [f'<h3 id="{html.escape(t.key)}">{html.escape(t.title)}</h3>', '<div class="scroll"><table>']
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for i, r in enumerate(t.rows):
        cells = []
        for j, v in enumerate(r):
            text = html.escape(fmt(v))
            if (i, j) in t.best and text != "–":
                text = f"<b>{text}</b>"
            style = ""
            if t.shade and i < len(t.shade) and j < len(t.shade[i]) and t.shade[i][j] is not None:
                a = 0.08 + 0.6 * float(t.shade[i][j])
                style = f' style="background: rgba(220, 40, 40, {a:.2f})"'
            tag = "th" if j == 0 else "td"
            if isinstance(v, str) and len(v) > 30:
                style += ' class="wrap"'
            cells.append(f"<{tag}{style}>{text}</{tag}>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if t.note:
        parts.append(f'<p class="note">{html.escape(t.note)}</p>')
    return "\n".join(parts) + "\n"
