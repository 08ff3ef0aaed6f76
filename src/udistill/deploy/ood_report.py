"""``udistill ood-report``: how well the alarm separates your in-distribution frames from
folders of out-of-distribution ones, with no labels needed.

Why: the alarm is calibrated on one set of frames (``udistill calibrate``); before trusting
it on a fleet one wants to see, on folders one knows to be normal and abnormal (night,
rain, another city), how well the image score separates them and what the *stored*
threshold does: its false-alarm rate on the normal folder and its detection rate on each
abnormal one.

Per OOD folder: AUROC and FPR95 of the image score (in-distribution images negative, OOD
positive; :func:`udistill.metrics.ood_metrics`), and the operating point at the stored
threshold. Scores are computed exactly as ``udistill predict`` does (same predictor: frames
resized to the training size, score at that size). The score is the calibrated one
(``meta["ood"]["score"]``; ``median_plus_min_over_max`` for checkpoints calibrated before
it was recorded) unless ``--score`` names another; AUROCs of all five scores are listed too.
Unreadable images are reported and skipped, like ``predict``.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.imageio import read_frame
from ..data.images import list_images
from ..errors import DataError, UdistillError
from ..io import atomic_write_json
from ..metrics import IMAGE_SCORES, ood_metrics
from .predict import Predictor
from .predict.alarm import alarm_score


def folder_scores(
    predictor: Predictor, folder: str | Path, skipped: list[str]
) -> tuple[list[str], dict[str, list[float]]]:
    """(image paths, {score name: values}) for every readable image of ``folder``."""
    _, files = list_images(folder)
    names, scores = [], {s: [] for s in IMAGE_SCORES}
    for path in files:
        try:
            rgb = read_frame(path)  # the one reader: bit depth, EXIF, minimum size
        except DataError as exc:
            skipped.append(str(exc))
            print(f"udistill: skipped: {exc}", file=sys.stderr)
            continue
        pred = predictor(rgb)
        names.append(str(path))
        for s in IMAGE_SCORES:
            scores[s].append(pred.scores[s])
    if not names:
        raise DataError(f"{folder}: no readable image")
    return names, scores


def operating_point(values: Sequence[float], threshold: float | None) -> float | None:
    """Fraction of images flagged (score > threshold); None without a threshold."""
    if threshold is None:
        return None
    return float(np.mean(np.asarray(values, np.float64) > threshold))


def check_disjoint(in_folder, ood_folders: Sequence) -> None:
    """Refuse an OOD folder that shares images with the in-distribution one: identical
    scores on both sides give AUROC 0.5, which reads as "the alarm cannot tell" when the
    command line was the mistake."""
    _, in_files = list_images(in_folder)
    seen = {p.resolve(): p for p in in_files}
    for folder in ood_folders:
        _, files = list_images(folder)
        shared = [p for p in files if p.resolve() in seen]
        if shared:
            what = "is the --in folder" if len(shared) == len(files) == len(seen) else "shares images with --in"
            raise UdistillError(
                f"{folder}: {what} {in_folder} ({len(shared)} image(s), e.g. {shared[0]}); "
                "OOD frames must differ from the in-distribution ones"
            )


def ood_report(
    checkpoint,
    in_folder,
    ood_folders: Sequence,
    score: str | None = None,
    device=None,
    native: bool = False,
    threshold: float | None = None,
) -> dict:
    """The report as a dict (see the module docstring)."""
    check_disjoint(in_folder, ood_folders)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no calibrated threshold" is reported in the result instead
        probe = Predictor.from_checkpoint(checkpoint, device=device, native=native, threshold=threshold)
    name = score or alarm_score(probe.meta)
    if name not in IMAGE_SCORES:
        raise UdistillError(f"unknown image score '{name}' (known: {', '.join(IMAGE_SCORES)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = Predictor.from_checkpoint(checkpoint, device=device, native=native, score=name, threshold=threshold)
    skipped: list[str] = []
    _, in_scores = folder_scores(predictor, in_folder, skipped)
    t = predictor.threshold
    report = {
        "checkpoint": str(checkpoint),
        "score": name,
        "threshold": t,
        "threshold_source": predictor.threshold_source,
        "model_input": predictor.geometry.describe(),
        "in": {
            "folder": str(in_folder),
            "images": len(in_scores[name]),
            "false_alarm_rate": operating_point(in_scores[name], t),
        },
        "ood": [],
        "skipped": skipped,
    }
    for folder in ood_folders:
        _, scores = folder_scores(predictor, folder, skipped)
        m = ood_metrics(in_scores[name], scores[name])
        report["ood"].append(
            {
                "folder": str(folder),
                "images": len(scores[name]),
                "auroc": m["auroc"],
                "fpr95": m["fpr95"],
                "detection_rate": operating_point(scores[name], t),
                "auroc_by_score": {s: ood_metrics(in_scores[s], scores[s])["auroc"] for s in IMAGE_SCORES},
            }
        )
    return report


def _pct(x: float | None) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def format_report(r: dict) -> str:
    thr = (
        f"{r['threshold']:.4g} ({r['threshold_source']})"
        if r["threshold"] is not None
        else "none (run udistill calibrate)"
    )
    lines = [
        f"ood-report: score {r['score']}, threshold {thr}, model input {r['model_input']}",
        f"in-distribution {r['in']['folder']}: {r['in']['images']} images, false alarms at the threshold {_pct(r['in']['false_alarm_rate'])}",
        f"{'OOD folder':<40} {'images':>6} {'AUROC':>6} {'FPR95':>6} {'detected':>9}",
    ]
    for o in r["ood"]:
        lines.append(
            f"{o['folder'][-40:]:<40} {o['images']:>6} {o['auroc']:6.3f} {o['fpr95']:6.3f} {_pct(o['detection_rate']):>9}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class OodReportOptions:
    """What ``udistill ood-report`` was asked (one field per flag; ``cli.py`` builds it)."""

    checkpoint: str
    in_folder: str
    ood: list[str] = field(default_factory=list)
    json: str | None = None
    score: str | None = None
    threshold: float | None = None
    native: bool = False
    device: str | None = None


def run_ood_report(opts: OodReportOptions) -> int:
    """The command: print the table, write ``--json``; exit 3 when images were skipped."""
    if not opts.ood:
        raise UdistillError("ood-report needs at least one --ood DIR")
    r = ood_report(
        opts.checkpoint,
        opts.in_folder,
        opts.ood,
        score=opts.score,
        device=opts.device,
        native=opts.native,
        threshold=opts.threshold,
    )
    print(format_report(r))
    if opts.json:
        atomic_write_json(opts.json, r)
        print(f"wrote {opts.json}")
    return 3 if r["skipped"] else 0
