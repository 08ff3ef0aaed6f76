"""Every value of an experiment config checked before any stage runs.

One function, :func:`validate_config`, serves ``experiment --dry-run``, the real run
(``experiment``, ``demo``) and the single-stage commands (``train-teacher``, ``distill``,
``evaluate``, ``calibrate --config``), so a config that passes the dry run does not fail
hours later on a value that could have been checked at the start: names (dataset, shifts,
encoder, optimiser, recipes, image score), numbers (rates in (0, 1), learning rates > 0,
finite weights of the right length), the device, and the data (each on-disk set present
with images). Every problem is a :class:`~udistill.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ExperimentConfig
from ..data.auxiliary import auxiliary_count, parse_auxiliary
from ..data.from_config import dataset_for, parse_shifts, parse_val_shifts
from ..data.labels import SCHEMES
from ..data.registry import available_datasets
from ..data.sets import SUBSETS, calibration_dataset
from ..data.synthetic import KNOWN_SHIFTS as SYNTHETIC
from ..data.transforms import RECIPES
from ..data.weather import KNOWN_SHIFTS
from ..device import resolve_device
from ..errors import ConfigError, UdistillError
from ..metrics.image import IMAGE_SCORES, conformal_min_frames
from ..train.recipes import OPTIMIZERS

DATA_MODES = ("check", "plan", "skip")


def validate_config(cfg: ExperimentConfig, data: str = "check", device: str | None = None, alarm: bool = False) -> None:
    """Check every value of ``cfg``; ConfigError (one line, naming the key) on the first problem.

    ``data``: "check" (a run: every set it reads must be present with images), "plan" (a dry
    run: the same, except that a set whose root is given nowhere, neither in the config nor in
    its environment variable, is allowed: the plan uses the published counts), or "skip" (no
    data touched). ``device``: a device that overrides ``cfg.device`` (checked as well).
    ``alarm``: the run will calibrate the alarm (experiment, demo, calibrate): the calibration set
    must be large enough for ``evaluate.false_alarm_rate``.
    """
    if data not in DATA_MODES:
        raise ValueError(f"data must be one of {DATA_MODES}, got {data!r}")
    check_names(cfg)
    check_shift_names(cfg)
    check_numbers(cfg)
    check_device(cfg.device, "device")
    if device:
        check_device(device, "--device")
    num_classes = None if data == "skip" else check_data(cfg, require_roots=data == "check")
    check_class_weights(cfg, num_classes)
    if alarm and data != "skip":
        check_calibration_size(cfg)


def check_calibration_size(cfg: ExperimentConfig) -> None:
    """The calibration set must hold enough images for a conformal threshold at
    ``evaluate.false_alarm_rate`` (n + 1 >= 1/rate): found out before training, not after."""
    try:
        n = len(calibration_dataset(cfg))
    except UdistillError:
        return  # not on this machine (a dry run): check_data has said what it needed to
    rate = cfg.evaluate.false_alarm_rate
    need = conformal_min_frames(rate)
    if n < need:
        raise ConfigError(
            f"config key 'evaluate.false_alarm_rate': the calibration set has {n} image(s); a {rate:.1%} "
            f"false-alarm guarantee needs at least {need} (a larger rate or a larger calibration split)"
        )


def check_device(name: str, key: str = "device") -> None:
    """The device exists and is on this machine (see :func:`udistill.device.resolve_device`)."""
    try:
        resolve_device(name)
    except ConfigError as exc:
        raise ConfigError(f"config key '{key}': {exc}" if key == "device" else f"{key}: {exc}") from None


def check_names(cfg: ExperimentConfig) -> None:
    """Names the registries know: dataset, encoder, head, optimiser, augmentation, targets, image score."""
    known = available_datasets()
    if cfg.data.dataset not in known:
        raise ConfigError(
            f"config key 'data.dataset': unknown dataset '{cfg.data.dataset}' (known: {', '.join(known)})"
        )
    for key, specs in (("shifts", parse_shifts(cfg.data)), ("val_shifts", parse_val_shifts(cfg.data))):
        for i, spec in enumerate(specs):
            if spec.dataset and spec.dataset not in known:
                raise ConfigError(
                    f"config key 'data.{key}[{i}].dataset': unknown dataset '{spec.dataset}' in shift '{spec.name}' "
                    f"(known: {', '.join(known)})"
                )
    if cfg.data.size is not None and (len(cfg.data.size) != 2 or min(cfg.data.size) < 16):
        raise ConfigError("config key 'data.size': expected [H, W] with sides >= 16")
    check_encoder(cfg.model.encoder)
    if cfg.model.uncertainty_head not in ("paper", "light"):
        raise ConfigError("config key 'model.uncertainty_head': expected 'paper' or 'light'")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"config key 'train.optimizer': expected one of {', '.join(OPTIMIZERS)}")
    if cfg.train.augment not in RECIPES:
        raise ConfigError(f"config key 'train.augment': expected one of {', '.join(RECIPES)}")
    if cfg.distill.targets not in ("cached", "online"):
        raise ConfigError("config key 'distill.targets': expected 'cached' or 'online'")

    parse_auxiliary(cfg.distill.auxiliary, cfg.data.dataset)  # known sources, existing folders
    auxiliary_count(1, cfg.distill.auxiliary_ratio)  # the ratio in [0, 1)
    if cfg.evaluate.ood_score != "auto" and cfg.evaluate.ood_score not in IMAGE_SCORES:
        raise ConfigError(
            f"config key 'evaluate.ood_score': expected auto or one of {', '.join(IMAGE_SCORES)}, "
            f"got {cfg.evaluate.ood_score!r}"
        )
    subsets = SUBSETS
    if cfg.evaluate.calibration_subset not in subsets:
        raise ConfigError(
            f"config key 'evaluate.calibration_subset': expected one of {', '.join(subsets)}, "
            f"got {cfg.evaluate.calibration_subset!r}"
        )


def check_encoder(name: str) -> None:
    import segmentation_models_pytorch as smp

    if name.startswith("tu-"):
        import timm

        if not timm.list_models(name[3:]):
            raise ConfigError(f"config key 'model.encoder': timm has no model '{name[3:]}'")
        return
    if name not in smp.encoders.get_encoder_names():
        raise ConfigError(f"config key 'model.encoder': unknown encoder '{name}'")


# data sets whose shift= is a synthetic weather shift of real images (udistill.data.files.check_shift)
_REAL_IMAGE_SETS = ("a2d2", "camvid", "cityscapes", "foggy-cityscapes", "rain-cityscapes", "images")


def known_shifts(dataset: str) -> tuple[str, ...] | None:
    """The ``shift=`` names ``dataset`` accepts (None: a data set registered elsewhere, not checked)."""
    if dataset == "synthetic":
        return tuple(SYNTHETIC)
    if dataset in _REAL_IMAGE_SETS:
        return (*KNOWN_SHIFTS, "none", "clean")
    return None


def check_shift_names(cfg: ExperimentConfig) -> None:
    """Every shift of ``data.shifts`` and ``data.val_shifts`` names a shift its data set knows."""
    for key in ("shifts", "val_shifts"):
        for i, spec in enumerate(parse_shifts(cfg.data, key)):
            if spec.shift is None:
                continue
            where = f"data.{key}[{i}]" + ("" if isinstance(getattr(cfg.data, key)[i], str) else ".shift")
            dataset = spec.dataset or cfg.data.dataset
            if not isinstance(spec.shift, str):
                raise ConfigError(f"config key '{where}': expected a shift name, got {spec.shift!r}")
            known = known_shifts(dataset)
            name = spec.shift if dataset == "synthetic" else spec.shift.lower()
            if known is not None and name not in known:
                shown = [s for s in known if s not in ("none", "clean")]
                raise ConfigError(
                    f"config key '{where}': unknown shift '{spec.shift}' for {dataset} (known: {', '.join(shown)})"
                )


def _number(cfg: ExperimentConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def check_numbers(cfg: ExperimentConfig) -> None:
    """Rates, learning rates, sizes and counts in their ranges."""
    if not 0.0 < cfg.evaluate.false_alarm_rate < 1.0:
        raise ConfigError(
            f"config key 'evaluate.false_alarm_rate': expected a rate in (0, 1), got {cfg.evaluate.false_alarm_rate!r}"
        )
    for key in ("train.lr", "distill.lr"):
        value = _number(cfg, key)
        if value is not None and not value > 0:
            raise ConfigError(f"config key '{key}': expected a learning rate > 0, got {value!r}")
    for key in ("model.dropout", "evaluate.mc_dropout"):
        value = _number(cfg, key)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"config key '{key}': expected a dropout rate in [0, 1), got {value!r}")
    for key in ("train.momentum", "train.weight_decay", "train.grad_clip"):
        value = _number(cfg, key)
        if value < 0:
            raise ConfigError(f"config key '{key}': expected a number >= 0, got {value!r}")
    if not cfg.distill.temperature > 0:
        raise ConfigError(f"config key 'distill.temperature': expected a number > 0, got {cfg.distill.temperature!r}")
    if not isinstance(cfg.distill.cache_reduction, int) or cfg.distill.cache_reduction < 1:
        raise ConfigError("config key 'distill.cache_reduction': expected an integer >= 1 (4 = the heads' resolution)")
    if cfg.distill.epochs is not None and cfg.distill.epochs < 1:
        raise ConfigError(f"config key 'distill.epochs': at least 1, got {cfg.distill.epochs}")
    if cfg.teacher.members < 1:
        raise ConfigError("config key 'teacher.members': at least 1")
    if cfg.teacher.parallel_jobs < 0:
        raise ConfigError(
            f"config key 'teacher.parallel_jobs': 0 (one per core) or more, got {cfg.teacher.parallel_jobs}"
        )
    if cfg.train.epochs < 1 or cfg.train.batch_size < 2:
        raise ConfigError("config keys 'train.epochs' >= 1 and 'train.batch_size' >= 2 (BatchNorm needs two samples)")


def expected_classes(cfg: ExperimentConfig) -> int | None:
    """Classes of the training set without building it: its label scheme, else the data set's own."""
    d = cfg.data
    options = {**d.options, **d.train_options, **(d.role_options.get("train") or {})}
    scheme = options.get("label_scheme")
    if isinstance(scheme, str) and scheme.lower() in SCHEMES:
        return SCHEMES[scheme.lower()].num_classes
    if d.dataset in ("camvid", "synthetic", "images"):
        return 11
    if d.dataset in ("cityscapes", "foggy-cityscapes", "rain-cityscapes", "a2d2"):
        return 19
    return None


def check_class_weights(cfg: ExperimentConfig, num_classes: int | None = None) -> None:
    """``train.class_weights``: one finite weight >= 0 per class, not all zero."""
    weights = cfg.train.class_weights
    if weights is None:
        return
    n = num_classes if num_classes is not None else expected_classes(cfg)
    if n is not None and len(weights) != n:
        raise ConfigError(f"config key 'train.class_weights': expected {n} weights (one per class), got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError("config key 'train.class_weights': expected finite weights >= 0, not all zero")


def root_not_given(exc: Exception) -> bool:
    """The loader's message when neither the config nor the environment names a root
    (:func:`udistill.data.files.resolve_root`)."""
    return "no root folder given" in str(exc)


def data_sets(cfg: ExperimentConfig) -> list[tuple[str, Any, str, Any, str | None]]:
    """(config key, data config, role, shift spec or None, root) of every set a run reads."""
    import dataclasses

    d = cfg.data
    sets: list[tuple[str, Any, str, Any, str | None]] = [
        ("data", d, role, None, d.root) for role in ("train", "val", "test")
    ]
    cal = cfg.evaluate.calibration_split
    if cal and cal != d.val_split:  # as udistill.data.sets.calibration_dataset builds it
        sets.append(("evaluate.calibration_split", dataclasses.replace(d, val_split=cal), "val", None, d.root))
    for key, role in (("shifts", "test"), ("val_shifts", "val")):
        for i, spec in enumerate(parse_shifts(d, key)):
            sets.append((f"data.{key}[{i}]", d, role, spec, spec.root or d.root))
    return sets


def check_data(cfg: ExperimentConfig, require_roots: bool = True) -> int | None:
    """Build every set a run reads and count its images (none may be empty); returns the
    number of classes of the training set (None when it is not here, in a dry run)."""
    from pathlib import Path

    num_classes = None
    for key, data, role, spec, root in data_sets(cfg):
        what = f"the {role} set" if spec is None else f"shift '{spec.name}'"
        if key == "evaluate.calibration_split":
            what = "the calibration set"
        root_key = "data.root" if spec is None or not spec.root else f"{key}.root"
        if root is not None and not Path(str(root)).expanduser().is_dir():
            raise ConfigError(f"config key '{root_key}': {root}: folder not found ({what})")
        try:
            ds = dataset_for(data, role, shift=spec)
            count = len(ds)
        except TypeError as exc:  # the builder does not take an option the config gives it
            if "unexpected keyword argument" not in str(exc):
                raise
            raise ConfigError(f"config key '{key}': {what}: an option its data set does not take ({exc})") from None
        except UdistillError as exc:
            if not require_roots and root is None and root_not_given(exc):
                continue  # a dry run away from the data: the plan says "published"
            named = root_key if "root" in str(exc) else key
            raise ConfigError(f"config key '{named}': {what}: {exc}") from None
        if count == 0:
            raise ConfigError(f"config key '{key}': {what} has no images")
        if spec is None and role == "train":
            scheme = getattr(ds, "scheme", None)
            num_classes = getattr(scheme, "num_classes", None)
    return num_classes
