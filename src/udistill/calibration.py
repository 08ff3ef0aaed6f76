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

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import ExperimentConfig
from .data.from_config import dataset_for, parse_shifts, parse_val_shifts
from .errors import ConfigError
from .methods import PredictorOutput, score_map
from .metrics import IMAGE_SCORES, conformal_min_frames, conformal_threshold, image_scores
from .selection import rank_image_scores

PAPER_SCORE = "median_plus_min_over_max"
SUBSETS = ("all", "even", "odd")


class Selection(Dataset):
    """Some items of a dataset (by index), keeping its scheme, fingerprint and names."""

    def __init__(self, dataset, indices: list[int], rule: str):
        self.dataset, self.indices, self.rule = dataset, list(indices), rule

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name):
        if name in ("dataset", "indices", "rule"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def item_names(ds) -> list[str]:
    """The item names of a dataset without decoding images (the identity used by
    :func:`check_disjoint`: CamVid frame stems, synthetic ``synthetic-<split>-<index>``)."""
    if isinstance(ds, Selection):
        names = item_names(ds.dataset)
        return [names[i] for i in ds.indices]
    base = getattr(ds, "dataset", ds)  # InMemory
    if callable(getattr(base, "name", None)):
        return [base.name(i) for i in range(len(base))]
    if hasattr(base, "samples"):
        return [s.name for s in base.samples]
    return [str(base[i]["name"]) for i in range(len(base))]


def calibration_dataset(cfg: ExperimentConfig):
    """The calibration set the config names (``evaluate.calibration_split`` / ``_subset``)."""
    ec = cfg.evaluate
    if ec.calibration_subset not in SUBSETS:
        raise ConfigError(
            f"config key 'evaluate.calibration_subset': expected one of {', '.join(SUBSETS)}, got {ec.calibration_subset!r}"
        )
    data = cfg.data
    if ec.calibration_split and ec.calibration_split != data.val_split:
        data = dataclasses.replace(data, val_split=ec.calibration_split)
    ds = dataset_for(data, "val")
    if ec.calibration_subset == "all":
        return ds
    start = 0 if ec.calibration_subset == "even" else 1
    return Selection(ds, list(range(start, len(ds), 2)), ec.calibration_subset)


def describe_set(ds) -> str:
    rule = f", {ds.rule} indices" if isinstance(ds, Selection) else ""
    split = getattr(ds, "split", "?")
    return f"{getattr(ds, 'dataset_name', type(getattr(ds, 'dataset', ds)).__name__)} split '{split}'{rule}, {len(ds)} images"


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]


def item_identities(ds) -> list[str]:
    """What identifies each image across data sets, by content: the digest of its file's
    bytes for on-disk data (a renamed copy is the same image), the item name for rendered
    data (synthetic scenes are a function of seed, split and index)."""
    if isinstance(ds, Selection):
        ids = item_identities(ds.dataset)
        return [ids[i] for i in ds.indices]
    base = getattr(ds, "dataset", ds)  # InMemory
    paths = [s.image for s in base.samples] if hasattr(base, "samples") else getattr(base, "files", None)
    if paths is None:
        return item_names(ds)
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append(_file_digest(str(p), st.st_size, st.st_mtime_ns))
    return out


def check_disjoint(
    calibration,
    tests: dict[str, object],
    what: str = "the calibration set",
    hint: str = "choose disjoint splits (evaluate.calibration_split / calibration_subset, data.val_split, the test split)",
) -> None:
    """Refuse ``calibration`` (or any set that makes a choice) when it shares an image with
    any test set, by content (:func:`item_identities`); the message names the files."""
    ids = item_identities(calibration)
    mine = dict(zip(ids, item_names(calibration)))
    for name, ds in tests.items():
        theirs = dict(zip(item_identities(ds), item_names(ds)))
        common = sorted(set(mine).intersection(theirs))
        if common:
            d = common[0]
            raise ConfigError(
                f"{what} shares {len(common)} image(s) with the test set '{name}' "
                f"(e.g. {mine[d]} is the same image as {theirs[d]}); {hint}"
            )


def test_sets(cfg: ExperimentConfig) -> dict[str, object]:
    """The in-distribution test set and every test shift, by name."""
    sets = {"in-distribution": dataset_for(cfg.data, "test")}
    for spec in parse_shifts(cfg.data):
        sets[spec.name] = dataset_for(cfg.data, "test", shift=spec)
    return sets


def evaluation_sets(cfg: ExperimentConfig) -> dict[str, object]:
    """Every set a choice or a result is made on: the test sets, the val split and the
    validation shifts, by name (what auxiliary distillation data must not share an image with)."""
    sets = {f"test {name}": ds for name, ds in test_sets(cfg).items()}
    sets["val"] = dataset_for(cfg.data, "val")
    for spec in parse_val_shifts(cfg.data):
        sets[f"val {spec.name}"] = dataset_for(cfg.data, "val", shift=spec)
    return sets


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
    :mod:`udistill.selection` (ties: :data:`~udistill.selection.TIE_RULE`); the paper's score
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
    from .models.checkpoint import load_model, save_model

    model, meta = load_model(path)
    keep = {k: v for k, v in meta.items() if k not in ("format", "model", "heads", "num_classes", "normalisation")}
    from .provenance import calibration_inputs

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
    from .models.checkpoint import load_model

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
    from .device import resolve_device
    from .distill import student_dir
    from .train.loop import MODEL_FILE

    dev = resolve_device(device or cfg.device)
    cal = calibration_dataset(cfg)
    tests = test_sets(cfg)
    check_disjoint(cal, tests)
    val_shifts = {spec.name: dataset_for(cfg.data, "val", shift=spec) for spec in parse_val_shifts(cfg.data)}
    for name, ds in val_shifts.items():  # the score is chosen on these: they must not be test images either
        check_disjoint(ds, tests, what=f"the validation shift '{name}'")
    if paths is None:
        paths = [
            p for p in (student_dir(cfg, "paper") / MODEL_FILE, student_dir(cfg, "light") / MODEL_FILE) if p.exists()
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


def run_calibrate_cli(args) -> dict[str, dict]:
    """``udistill calibrate``: with ``--images`` on the user's own frames, otherwise on the
    config's calibration set (every student of the run, or the one named).

    With ``--images``, frames are decoded as ``predict`` decodes them; a corrupt, unreadable
    or too small one is reported (``udistill: skipped: <file>: <problem>``) and left out,
    and the rest calibrate the alarm (too few left: refused)."""
    import math
    import sys

    from .config import ExperimentConfig, load_config
    from .data.registry import build_dataset
    from .device import resolve_device
    from .errors import DataError
    from .models.checkpoint import read_metadata, resolve_checkpoint

    rate_arg = args.false_alarm
    if rate_arg is not None and not (
        isinstance(rate_arg, (int, float)) and math.isfinite(rate_arg) and 0.0 < rate_arg < 1.0
    ):  # checked before any checkpoint is loaded or image scored
        raise ConfigError(f"--false-alarm: the false-alarm rate must be a number in (0, 1), got {rate_arg!r}")
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    if args.images:
        if not args.checkpoint:
            raise ConfigError("calibrate --images needs the student CHECKPOINT to calibrate")
        path = resolve_checkpoint(args.checkpoint)
        meta = read_metadata(path)
        size = meta.get("input_size")
        ds = build_dataset("images", "test", root=args.images, size=size)
        for line in ds.drop_unreadable():
            print(f"udistill: skipped: {line}", file=sys.stderr)
        if len(ds) == 0:
            raise DataError(f"{args.images}: no readable image (every file was skipped)")
        stride = getattr(args, "stride", 1)
        if stride < 1:
            raise ConfigError(f"--stride: a positive whole number, got {stride}")
        if stride > 1:  # consecutive video frames are near-duplicates, not independent draws
            ds = Selection(ds, list(range(0, len(ds), stride)), f"every {stride}th")
        rate = 0.05 if args.false_alarm is None else args.false_alarm
        rec = calibrate_checkpoint(
            path,
            ds,
            resolve_device(args.device or "auto"),
            rate,
            args.score or "auto",
            None,
            4,
            f"images in {args.images} ({len(ds)}{f', every {stride}th' if stride > 1 else ''})",
        )
        return {str(path): rec}
    if not args.config:
        raise ConfigError("calibrate needs --config (the run's calibration set) or --images DIR (your own frames)")
    if args.false_alarm is not None:
        overrides.append(f"evaluate.false_alarm_rate={args.false_alarm}")
    if args.score:
        overrides.append(f"evaluate.ood_score={args.score}")
    cfg = load_config(ExperimentConfig, args.config, overrides)
    paths = [resolve_checkpoint(args.checkpoint)] if args.checkpoint else None
    return run_calibration(cfg, args.device, paths)
