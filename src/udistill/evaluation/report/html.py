"""Write the evaluation report: ``report.md`` (figures linked by relative path) and a
self-contained ``report.html`` (figures embedded as base64 PNG, inline CSS), both atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...io import atomic_write_text
from .tables import Table, build_tables, fmt, to_html, to_markdown

FIGURE_CAPTIONS = {  # by figure name (exact, or prefix before "_<shift>")
    "examples": "Fig 2 — test images: segmentation, error map (white = wrong, grey = ignore), student uncertainty.",
    "examples_shifts": "Fig 5 — examples from the shifted data sets.",
    "sigma_hexbin": "Fig 3 — student σ against teacher σ per pixel; blue correct, red wrong.",
    "uncertainty_histograms": "Fig 4 — normalised uncertainty histograms of correctly (blue) and wrongly (red) labelled pixels.",
    "image_score_roc": "Fig 6 — image-level OOD ROC curves for the five image scores; (median + min) / max in blue.",
    "image_score_distributions": "Fig 7 — image uncertainty per data set; only the first is in-distribution.",
    "risk_coverage": "Risk-coverage curves: pixel error rate among the most confident pixels.",
    "reliability": "Reliability diagram (confidence vs accuracy) per predictor.",
    "sigma_scale": "Fig 3b — mean student U against mean teacher U per bin of teacher U (log-log); the dotted line is the same scale.",
}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #1f5fbf; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
thead th { background: #eef2f8; text-align: center; }
tbody th { text-align: left; background: #fafafa; }
.scroll { overflow-x: auto; }
td.wrap, th.wrap { white-space: normal; text-align: left; min-width: 14em; max-width: 30em; }
.note { color: #666; font-size: 0.85em; margin-top: 0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; }
.summary td, .summary th { font-size: 1.05em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 0.8em; }
"""


def _caption(name: str, spec: Any) -> str:
    if isinstance(spec, Mapping) and spec.get("caption"):
        return str(spec["caption"])
    if name in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[name]
    for key in sorted(FIGURE_CAPTIONS, key=len, reverse=True):
        if name.startswith(key + "_"):
            return f"{FIGURE_CAPTIONS[key]} ({name[len(key) + 1 :]})"
    return name


def _fig_path(spec: Any) -> Path:
    return Path(spec["path"] if isinstance(spec, Mapping) else spec)


def _summary_rows(results: Mapping) -> list[tuple[str, str]]:
    """The report's opening lines: test set, images, where the alarm was calibrated."""
    rows = []
    if results.get("images"):
        rows.append(("in-distribution test images", fmt(results["images"])))
    shifts = results.get("shifts") or {}
    if shifts:
        rows.append(
            ("shifts (positives for OOD)", ", ".join(f"{s} ({v.get('images', '?')})" for s, v in shifts.items()))
        )
    if results.get("alarm_calibration_set"):
        rows.append(("alarm calibrated on", str(results["alarm_calibration_set"])))
    return rows


def render_markdown(
    results: Mapping, tables: list[Table], figures: Mapping[str, Any], out_dir: Path, title: str
) -> str:
    lines = [f"# {title}", "", f"_Generated {_dt.datetime.now().isoformat(timespec='seconds')}_", ""]
    summary = _summary_rows(results)
    if summary:
        lines += ["## Summary", "", "| | |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in summary] + [""]
    if tables:
        lines += ["## Tables", ""]
        for t in tables:
            lines += [to_markdown(t)]
    if figures:
        lines += ["## Figures", ""]
        for name, spec in figures.items():
            p = _fig_path(spec)
            cap = _caption(name, spec)
            if p.is_file():
                rel = os.path.relpath(p.resolve(), out_dir.resolve()).replace(os.sep, "/")
                lines += [f"**{name}** — {cap}", "", f"![{name}]({rel})", ""]
            else:
                lines += [f"**{name}** — {cap} _(figure missing: {p})_", ""]
    if results.get("config"):
        lines += ["## Configuration", "", "```json", json.dumps(results["config"], indent=2, default=str), "```", ""]
    return "\n".join(lines)


def render_html(results: Mapping, tables: list[Table], figures: Mapping[str, Any], title: str) -> str:
    e = html.escape
    body = [
        f"<h1>{e(title)}</h1>",
        f'<p class="note">Generated {e(_dt.datetime.now().isoformat(timespec="seconds"))}</p>',
    ]
    summary = _summary_rows(results)
    if summary:
        body.append('<h2>Summary</h2><table class="summary"><tbody>')
        body += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary]
        body.append("</tbody></table>")
    if tables:
        body.append("<h2>Tables</h2>")
        body += [to_html(t) for t in tables]
    if figures:
        body.append("<h2>Figures</h2>")
        for name, spec in figures.items():
            p = _fig_path(spec)
            cap = e(_caption(name, spec))
            if p.is_file():
                data = base64.b64encode(p.read_bytes()).decode("ascii")
                body.append(
                    f'<figure id="fig-{e(name)}"><img alt="{e(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption><b>{e(name)}</b> — {cap}</figcaption></figure>"
                )
            else:
                body.append(f"<p><b>{e(name)}</b> — {cap} <i>(figure missing: {e(str(p))})</i></p>")
    if results.get("config"):
        body.append(
            "<h2>Configuration</h2><details open><summary>config</summary><pre>"
            + e(json.dumps(results["config"], indent=2, default=str))
            + "</pre></details>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    results: Mapping[str, Any],
    figures: Mapping[str, Any] | None,
    out_dir: str | os.PathLike,
    title: str = "udistill evaluation report",
) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns ``{"markdown", "html"}`` paths.

    results: the evaluation results dict (schema in :mod:`udistill.evaluation.report.tables`); every part
        is optional, missing parts are left out.
    figures: figure name -> PNG path (or ``{"path", "caption"}``), in display order; known names
        (``examples``, ``examples_shifts``, ``sigma_hexbin``, ``uncertainty_histograms``,
        ``image_score_roc_<shift>``, ``image_score_distributions``, ``risk_coverage``,
        ``reliability``) get the paper's captions. Missing files are noted, not fatal.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = dict(figures or {})
    tables = build_tables(results)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(results, tables, figures, out, title))
    atomic_write_text(html_path, render_html(results, tables, figures, title))
    return {"markdown": md_path, "html": html_path}
