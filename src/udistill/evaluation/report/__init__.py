"""Figures (PNG) and the Markdown/HTML report, built from plain arrays and result dicts."""

from .figures import (
    plot_examples,
    plot_image_score_distributions,
    plot_image_score_roc,
    plot_reliability,
    plot_risk_coverage,
    plot_sigma_hexbin,
    plot_uncertainty_histograms,
)
from .html import FIGURE_CAPTIONS, write_report
from .tables import Table, build_tables, to_html, to_markdown

__all__ = [
    "FIGURE_CAPTIONS",
    "Table",
    "build_tables",
    "plot_examples",
    "plot_image_score_distributions",
    "plot_image_score_roc",
    "plot_reliability",
    "plot_risk_coverage",
    "plot_sigma_hexbin",
    "plot_uncertainty_histograms",
    "to_html",
    "to_markdown",
    "write_report",
]
