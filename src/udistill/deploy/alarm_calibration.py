"""The out-of-distribution alarm: an image score of a student's uncertainty map U and a
threshold at a chosen false-alarm rate, fitted by ``udistill calibrate`` and stored in the
student checkpoint (evaluation only reads it).

Protocol, so that the alarm is never tested on the images it was fitted on:

- the calibration set is ``evaluate.calibration_split`` (default: the val split), all of it
  or its even / odd indices (``evaluate.calibration_subset``); :func:`check_disjoint`
  refuses it when it shares an image (by item name) with the test set or any test shift;
- the image score is chosen on the *validation* shifts (``data.val_shifts``): the score with
  the best mean AUROC of calibration images against each validation shift
  (``evaluate.ood_score: auto``); the test shifts are never looked at;
- the stored record (checkpoint metadata ``ood``)::

      {score, method: "conformal", false_alarm_rate, n, guarantee, thresholds: {score: t},
       images, calibration_set, input_size, display_range, selection: {shift: {score: auroc}}}

  the threshold is split-conformal (:func:`udistill.metrics.conformal_threshold`): with n
  calibration frames and rate α it sits just above the ⌈(n+1)(1−α)⌉-th smallest score, so a
  new exchangeable frame is flagged with probability ≤ α; fewer than 1/α − 1 frames are refused;

  ``display_range`` = [0, mean over calibration images of the 99th percentile of U]: the
  range heat maps are drawn with.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import ExperimentConfig, load_config
from ..core.pixel_scores import PredictorOutput, score_map
from ..data.from_config import dataset_for, parse_val_shifts
from ..data.registry import build_dataset
from ..data.sets import Selection, calibration_dataset, check_disjoint, describe_set, test_sets
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..evaluation.selection import rank_image_scores
from ..layout import RunLayout
from ..metrics import IMAGE_SCORES, conformal_min_frames, conformal_threshold, image_scores
from ..models.checkpoint import load_model, read_metadata, resolve_checkpoint, save_model
from .predict.alarm import calibration_inputs

PAPER_SCORE = "median_plus_min_over_max"
UncertaintyFn = Callable[[torch.Tensor], torch.Tensor]


def student_uncertainty(model) -> UncertaintyFn:
    """images (N, 3, H, W) -> U (N, H, W): the student's mean σ over classes."""

    @torch.no_grad()
    def run(images: torch.Tensor) -> torch.Tensor:
        out = model(images)
        return score_map("u", PredictorOutput(torch.softmax(out.logits.float(), 1), out.sigma))

    return run


def collect_image_scores(
    uncertainty: UncertaintyFn, dataset, device, batch_size: int = 4, num_workers: int = 0
) -> tuple[dict, list[float]]:
    """Image scores of every image of ``dataset`` and each image's 99th percentile of U."""
    scores: dict[str, list[float]] = {s: [] for s in IMAGE_SCORES}
    p99: list[float] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        u = uncertainty(batch["image"].to(device)).float().cpu()
        for i in range(u.shape[0]):
            for s, v in image_scores(u[i]).items():
                scores[s].append(v)
            p99.append(float(torch.quantile(u[i].flatten()[:: max(1, u[i].numel() // 200_000)], 0.99)))
    return scores, p99


def choose_score(in_scores: dict, shift_scores: dict[str, dict]) -> tuple[str, dict]:
    """The image score of U best on the validation shifts, by the one selection rule of
    :mod:`udistill.evaluation.selection` (ties: :data:`~udistill.evaluation.selection.TIE_RULE`); the paper's score
    when there are no validation shifts. Returns (score, {shift: {score: auroc}})."""
    if not shift_scores:
        return PAPER_SCORE, {}
    ranked = rank_image_scores(list(IMAGE_SCORES), in_scores, shift_scores)
    table = {name: {r["candidate"]: r["validation_auroc"][name] for r in ranked} for name in shift_scores}
    return ranked[0]["candidate"], {name: {s: table[name][s] for s in IMAGE_SCORES} for name in table}


def check_alarm_size(n: int, rate: float, where: str = "the calibration set") -> None:
    """Refuse a calibration set too small for a conformal threshold at ``rate`` (n + 1 < 1/rate)."""
    if not (isinstance(rate, (int, float)) and np.isfinite(rate) and 0.0 < rate < 1.0):
        raise ConfigError(f"the false-alarm rate must be a number in (0, 1), got {rate!r}")
    need = conformal_min_frames(rate)
    if n < need:
        raise ConfigError(
            f"{where} has {n} image(s); a {rate:.1%} false-alarm guarantee needs at least {need} "
            "(calibrate on more frames or choose a larger rate)"
        )


def guarantee_text(rate: float, n: int) -> str:
    """The alarm's promise in words, stored next to its threshold."""
    return (
        f"a new frame exchangeable with the {n} calibration frames (same camera, scene type and "
        f"conditions, drawn the same way) is flagged with probability at most {rate:.1%} "
        "(split-conformal threshold); correlated frames (video) weaken it"
    )


def fit_alarm(
    in_scores: dict, p99: list[float], rate: float, score: str, input_size, description: str, selection: dict
) -> dict:
    """The alarm record stored in a student checkpoint (see the module docstring): a
    split-conformal threshold per image score."""
    if score not in IMAGE_SCORES:
        raise ConfigError(f"unknown image score '{score}' (known: {', '.join(IMAGE_SCORES)}, auto)")
    n = len(in_scores[score])
    check_alarm_size(n, rate)
    return {
        "score": score,
        "method": "conformal",
        "false_alarm_rate": float(rate),
        "n": n,
        "guarantee": guarantee_text(float(rate), n),
        "thresholds": {s: conformal_threshold(v, rate) for s, v in in_scores.items()},
        "images": n,
        "calibration_set": description,
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "display_range": [0.0, float(np.mean(p99))],
        "selection": selection,
    }


def store_alarm(path: str | Path, record: dict) -> None:
    """Write ``record`` into the checkpoint's metadata (weights unchanged, file rewritten atomically)."""
    model, meta = load_model(path)
    keep = {k: v for k, v in meta.items() if k not in ("format", "model", "heads", "num_classes", "normalisation")}

    keep["ood"] = {**record, "built_from": calibration_inputs(path)}
    save_model(model, path, **keep)


def calibrate_checkpoint(
    path: str | Path,
    calibration,
    device="cpu",
    rate: float = 0.05,
    score: str = "auto",
    val_shifts: dict[str, object] | None = None,
    batch_size: int = 4,
    description: str | None = None,
) -> dict:
    """Fit the alarm of the student at ``path`` on ``calibration`` (in-distribution images) and
    store it. ``score="auto"`` chooses on ``val_shifts``; without them it keeps the score the
    checkpoint already has (chosen earlier on validation shifts), else the paper's."""
    model, meta = load_model(path, map_location=device)
    if not model.has_uncertainty:
        raise ConfigError(f"{path}: not a student (no uncertainty head); calibrate a student checkpoint")
    model.eval()
    check_alarm_size(len(calibration), rate)  # before any image is scored
    unc = student_uncertainty(model)
    in_scores, p99 = collect_image_scores(unc, calibration, device, batch_size)
    if not in_scores["mean"]:
        raise ConfigError(f"{path}: the calibration set is empty")
    selection: dict = {}
    if score == "auto":
        if val_shifts:
            shifted = {n: collect_image_scores(unc, ds, device, batch_size)[0] for n, ds in val_shifts.items()}
            score, selection = choose_score(in_scores, shifted)
        else:
            score = (meta.get("ood") or {}).get("score", PAPER_SCORE)
            selection = (meta.get("ood") or {}).get("selection", {})
    first = calibration[0]["image"]
    record = fit_alarm(
        in_scores, p99, rate, score, tuple(first.shape[-2:]), description or describe_set(calibration), selection
    )
    store_alarm(path, record)
    return record


def run_calibration(cfg: ExperimentConfig, device=None, paths: list[Path] | None = None) -> dict[str, dict]:
    """Calibrate every student of the run in ``cfg.out_dir`` (or ``paths``) on the config's
    calibration set, after checking it is disjoint from every test set."""
    dev = resolve_device(device or cfg.device)
    cal = calibration_dataset(cfg)
    tests = test_sets(cfg)
    check_disjoint(cal, tests)
    val_shifts = {spec.name: dataset_for(cfg.data, "val", shift=spec) for spec in parse_val_shifts(cfg.data)}
    for name, ds in val_shifts.items():  # the score is chosen on these: they must not be test images either
        check_disjoint(ds, tests, what=f"the validation shift '{name}'")
    if paths is None:
        layout = RunLayout.of(cfg)
        paths = [
            p for p in (layout.model_in(layout.student("paper")), layout.model_in(layout.student_light)) if p.exists()
        ]
    if not paths:
        raise ConfigError(f"{cfg.out_dir}: no student to calibrate; run udistill distill first")
    out = {}
    for p in paths:
        out[str(p)] = calibrate_checkpoint(
            p,
            cal,
            dev,
            cfg.evaluate.false_alarm_rate,
            cfg.evaluate.ood_score,
            val_shifts,
            cfg.evaluate.batch_size,
            describe_set(cal),
        )
    return out


@dataclass(frozen=True)
class CalibrateOptions:
    """What ``udistill calibrate`` was asked (one field per flag; ``cli.py`` builds it)."""

    checkpoint: str | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    device: str | None = None
    images: str | None = None
    stride: int = 1
    false_alarm: float | None = None
    score: str | None = None


def run_calibrate_cli(opts: CalibrateOptions) -> dict[str, dict]:
    """``udistill calibrate``: with ``--images`` on the user's own frames, otherwise on the
    config's calibration set (every student of the run, or the one named).

    With ``--images``, frames are decoded as ``predict`` decodes them; a corrupt, unreadable
    or too small one is reported (``udistill: skipped: <file>: <problem>``) and left out,
    and the rest calibrate the alarm (too few left: refused)."""
    rate_arg = opts.false_alarm
    if rate_arg is not None and not (
        isinstance(rate_arg, (int, float)) and math.isfinite(rate_arg) and 0.0 < rate_arg < 1.0
    ):  # checked before any checkpoint is loaded or image scored
        raise ConfigError(f"--false-alarm: the false-alarm rate must be a number in (0, 1), got {rate_arg!r}")
    overrides = list(opts.overrides) + ([f"device={opts.device}"] if opts.device else [])
    if opts.images:
        if not opts.checkpoint:
            raise ConfigError("calibrate --images needs the student CHECKPOINT to calibrate")
        path = resolve_checkpoint(opts.checkpoint)
        meta = read_metadata(path)
        size = meta.get("input_size")
        ds = build_dataset("images", "test", root=opts.images, size=size)
        for line in ds.drop_unreadable():
            print(f"udistill: skipped: {line}", file=sys.stderr)
        if len(ds) == 0:
            raise DataError(f"{opts.images}: no readable image (every file was skipped)")
        stride = opts.stride
        if stride < 1:
            raise ConfigError(f"--stride: a positive whole number, got {stride}")
        if stride > 1:  # consecutive video frames are near-duplicates, not independent draws
            ds = Selection(ds, list(range(0, len(ds), stride)), f"every {stride}th")
        rate = 0.05 if opts.false_alarm is None else opts.false_alarm
        rec = calibrate_checkpoint(
            path,
            ds,
            resolve_device(opts.device or "auto"),
            rate,
            opts.score or "auto",
            None,
            4,
            f"images in {opts.images} ({len(ds)}{f', every {stride}th' if stride > 1 else ''})",
        )
        return {str(path): rec}
    if not opts.config:
        raise ConfigError("calibrate needs --config (the run's calibration set) or --images DIR (your own frames)")
    if opts.false_alarm is not None:
        overrides.append(f"evaluate.false_alarm_rate={opts.false_alarm}")
    if opts.score:
        overrides.append(f"evaluate.ood_score={opts.score}")
    cfg = load_config(ExperimentConfig, opts.config, overrides)
    paths = [resolve_checkpoint(opts.checkpoint)] if opts.checkpoint else None
    return run_calibration(cfg, opts.device, paths)
