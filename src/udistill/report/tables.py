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
    latency: {...}   # any (nested) dict of numbers/strings
    config: {...}
    in_distribution_name: str   # optional label of the test set, default "in-distribution"
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

SEG_METHODS = ("baseline", "teacher", "student")
PIXEL_METHODS = (
    "baseline_msp", "baseline_entropy", "mc_dropout", "ensemble_std", "ensemble_mi",
    "student_sigma", "student_msp",
)
PIXEL_METRICS = (  # key, header, higher is better
    ("auroc", "AUROC ↑", True),
    ("aupr", "AUPR ↑", True),
    ("fpr95", "FPR95 ↓", False),
    ("ece", "ECE ↓", False),
    ("brier", "Brier ↓", False),
    ("aurc", "AURC ↓", False),
    ("eaurc", "E-AURC ↓", False),
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


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


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


def _mark_best(table: Table, col_better: Mapping[int, bool]) -> None:
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
    iou = {k: v for k, v in (results.get("per_class_iou") or {}).items() if v}
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
    for m in _ordered(unc, ("teacher", "student")):
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
    methods = _ordered({k for _, m in sets for k in m}, SEG_METHODS)
    rows = [[name, *[_num(m.get(k)) for k in methods]] for name, m in sets]
    return Table(key="miou", title="Table 2 — mean IoU per data set", columns=["Data set", *methods], rows=rows)


def pixel_table(pixel: Mapping, title: str, key: str = "pixel") -> Table | None:
    """Pixel-level misclassification detection and calibration per method."""
    if not pixel:
        return None
    methods = _ordered(pixel, PIXEL_METHODS)
    metrics = [m for m in PIXEL_METRICS if any(_get(pixel, meth, m[0]) is not None for meth in methods)]
    if not metrics:
        metrics = list(PIXEL_METRICS[:6])
    rows = [[meth, *[_num(_get(pixel, meth, k)) for k, _, _ in metrics]] for meth in methods]
    t = Table(
        key=key,
        title=title,
        columns=["Method", *[h for _, h, _ in metrics]],
        rows=rows,
        note="Positives = misclassified pixels; global over all pixels of the split. Best in bold.",
    )
    _mark_best(t, {j + 1: hib for j, (_, _, hib) in enumerate(metrics)})
    return t


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
    """One table per shift: image-level OOD AUROC / FPR95 per method and image score."""
    out = []
    for shift, s in (results.get("shifts") or {}).items():
        ood = s.get("ood") if isinstance(s, Mapping) else None
        if not ood:
            continue
        methods = _ordered(ood, PIXEL_METHODS)
        scores = _ordered({sc for m in methods for sc in (ood[m] or {})}, IMAGE_SCORES)
        cols, better = ["Method"], {}
        for sc in scores:
            lab = SCORE_LABELS.get(sc, sc)
            better[len(cols)] = True
            cols.append(f"{lab} AUROC")
            better[len(cols)] = False
            cols.append(f"{lab} FPR95")
        rows = []
        for m in methods:
            row = [m]
            for sc in scores:
                row += [_num(_get(ood, m, sc, "auroc")), _num(_get(ood, m, sc, "fpr95"))]
            rows.append(row)
        t = Table(
            key=f"ood_{shift}",
            title=f"OOD detection — {shift} (positives) vs in-distribution images",
            columns=cols,
            rows=rows,
            note="Image score from the per-pixel uncertainty map; AUROC < 0.5 means the score ranks OOD images lower.",
        )
        _mark_best(t, better)
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
    lat = results.get("latency")
    if not lat:
        return None
    rows = [[k, v] for k, v in _flatten(lat)]
    return Table(key="latency", title="Latency", columns=["Measurement", "Value"], rows=rows)


def build_tables(results: Mapping) -> list[Table]:
    """All tables the results allow, in report order (missing parts are skipped)."""
    tables: list[Table | None] = [
        per_class_table(results),
        miou_table(results),
        pixel_table(results.get("pixel") or {}, "Pixel-level uncertainty: misclassification detection and calibration"),
        agreement_table(results),
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
            cells.append(f"<{tag}{style}>{text}</{tag}>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if t.note:
        parts.append(f'<p class="note">{html.escape(t.note)}</p>')
    return "\n".join(parts) + "\n"
