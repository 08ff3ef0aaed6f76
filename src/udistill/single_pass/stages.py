"""The single-pass methods as pipeline stages of a run, each reused while its inputs are
unchanged (the same rule as members and students, :mod:`udistill.train.provenance`):

==================  ===============================  ========================================
stage               file                             built from
==================  ===============================  ========================================
temperature         ``<run>/temperature.json``       member 0's weights, the validation set
feature density     ``<run>/feature-density/``       member 0's weights, the training set,
                    ``density.safetensors``          ``single_pass.density_*``
multi-head          ``<run>/multi-head/``            member 0's weights, the training set,
                    ``model.safetensors``            ``single_pass.multi_head_*``, class weights
==================  ===============================  ========================================

The temperature is fitted on the validation split, the density and the heads on the
training split only (never an image a result is reported on). :func:`load_predictors` gives
evaluation the three predictors, refusing missing or stale stages.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import ExperimentConfig
from ..data.from_config import dataset_for
from ..data.sets import describe_set
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError
from ..layout import DENSITY_FILE, MULTI_HEAD_FILE, TEMPERATURE_FILE, RunLayout  # noqa: F401 - the files' names: importable here
from ..models.checkpoint import load_model
from ..train.provenance import StaleStageError, digest, weights_digest  # noqa: F401 - StaleStageError: importable here
from ..train.stage import Stage, run_stage
from .feature_density import (
    COVARIANCES,
    SCORES,
    FeatureDensityPredictor,
    accumulate_features,
    fit_density,
    load_density,
    save_density,
)
from .multi_head import MultiHeadPredictor, build_multi_head, load_multi_head, save_multi_head, train_heads
from .temperature import T_MAX, T_MIN, TemperatureScaled, collect_logits, fit_temperature

STATE_FILE = "last.state.safetensors"
MULTI_HEAD_RECIPE = "labels: per-head seeded initialisation and Poisson(1) bootstrap of the images (bagging)"


def check_config(cfg: ExperimentConfig) -> None:
    """The ``single_pass`` values, refused with one line naming the key."""
    sp = cfg.single_pass
    checks = (
        ("density_covariance", sp.density_covariance in COVARIANCES, f"one of {', '.join(COVARIANCES)}"),
        ("density_score", sp.density_score in SCORES, f"one of {', '.join(SCORES)}"),
        ("density_jitter", sp.density_jitter >= 0, "a number >= 0"),
        ("density_reservoir", sp.density_reservoir >= 100, "an integer >= 100"),
        ("temperature_max_pixels", sp.temperature_max_pixels >= 1, "an integer >= 1"),
        ("multi_head_heads", sp.multi_head_heads is None or sp.multi_head_heads >= 1, "an integer >= 1 or null"),
        (
            "multi_head_channels",
            sp.multi_head_channels is None or sp.multi_head_channels >= 0,
            "an integer >= 0 or null",
        ),
        ("multi_head_epochs", sp.multi_head_epochs >= 1, "an integer >= 1"),
        ("multi_head_lr", sp.multi_head_lr > 0, "a number > 0"),
        (
            "multi_head_batch_size",
            sp.multi_head_batch_size is None or sp.multi_head_batch_size >= 1,
            "an integer >= 1 or null",
        ),
        ("multi_head_cache_mb", sp.multi_head_cache_mb >= 0, "an integer >= 0"),
    )
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"config key 'single_pass.{key}': expected {what}, got {getattr(sp, key)!r}")


def heads_of(cfg: ExperimentConfig) -> int:
    return int(cfg.single_pass.multi_head_heads or cfg.teacher.members)


def _member0(cfg: ExperimentConfig) -> Path:
    return RunLayout.of(cfg).member_model(0)


def _data(cfg: ExperimentConfig, role: str) -> dict:
    """What defines ``role``'s images (not the data root: a moved folder is the same data)."""
    d = dataclasses.asdict(cfg.data)
    split = {"train": "train_split", "val": "val_split"}[role]
    options = "train_options" if role == "train" else "test_options"
    return {k: d[k] for k in ("dataset", "size", split, "options", options, "seed")} | {
        "role_options": d["role_options"].get(role)
    }


def temperature_inputs(cfg: ExperimentConfig) -> dict:
    sp = cfg.single_pass
    config = {"data": _data(cfg, "val"), "max_pixels": sp.temperature_max_pixels, "seed": sp.seed}
    return {"member0": weights_digest(_member0(cfg)), "config": digest(config)}


def density_inputs(cfg: ExperimentConfig) -> dict:
    sp = cfg.single_pass
    keys = ("density_covariance", "density_jitter", "density_score", "density_reservoir", "seed")
    config = {"data": _data(cfg, "train"), **{k: getattr(sp, k) for k in keys}}
    return {"member0": weights_digest(_member0(cfg)), "config": digest(config)}


def multi_head_inputs(cfg: ExperimentConfig) -> dict:
    sp = cfg.single_pass
    keys = ("multi_head_channels", "multi_head_epochs", "multi_head_lr", "multi_head_batch_size", "seed")
    config = {
        "data": _data(cfg, "train"),
        "heads": heads_of(cfg),
        "class_weights": cfg.train.class_weights,
        "batch_size": sp.multi_head_batch_size or cfg.train.batch_size,
        **{k: getattr(sp, k) for k in keys},
    }
    return {"member0": weights_digest(_member0(cfg)), "config": digest(config)}


def _baseline(cfg: ExperimentConfig, dev):
    path = _member0(cfg)
    if not path.exists():
        raise CheckpointError(f"{path}: the baseline (member 0) is not trained; run the members first")
    model, meta = load_model(path, expect=cfg.model, heads="prediction", map_location=dev)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), meta


def temperature_stage(cfg: ExperimentConfig) -> Stage:
    """The temperature as a stage: one JSON record at the run's top, refitted when stale."""
    layout = RunLayout.of(cfg)
    return Stage("temperature", layout.out_dir, layout.temperature, lock="temperature", record="json", refit_stale=True)


def density_stage(cfg: ExperimentConfig) -> Stage:
    layout = RunLayout.of(cfg)
    return Stage("feature density", layout.out_dir, layout.density_file, lock="feature-density")


def multi_head_stage(cfg: ExperimentConfig) -> Stage:
    """The multi-head ensemble as a stage: it resumes its training state, like a member."""
    layout = RunLayout.of(cfg)
    return Stage("multi-head", layout.out_dir, layout.multi_head_model, lock="multi-head", resumes=True)


def fit_temperature_stage(cfg: ExperimentConfig, device=None, log: Callable[[str], None] = print) -> dict:
    """Fit T on the validation split (or reuse the stored fit); returns the record."""

    def load():
        dev = resolve_device(device or cfg.device)
        model, meta = _baseline(cfg, dev)
        return dev, model, meta, dataset_for(cfg.data, "val")

    def build(loaded, _inputs) -> dict:
        dev, model, meta, ds = loaded
        sp = cfg.single_pass
        z, y = collect_logits(
            model, ds, dev, cfg.evaluate.batch_size, sp.temperature_max_pixels, sp.seed, cfg.data.num_workers
        )
        fit = fit_temperature(z, y, model_scheme=meta.get("label_scheme"), data_scheme=ds.scheme.name)
        return {
            "temperature": fit["temperature"],
            "nll_validation": fit["nll"],
            "nll_validation_at_t1": fit["nll_at_1"],
            "pixels": fit["pixels"],
            "images": len(ds),
            "fitted_on": describe_set(ds),
            "method": f"golden-section search over 1/T, T in [{T_MIN}, {T_MAX}], on cached validation logits",
        }  # the runner adds built_from and writes it

    return run_stage(temperature_stage(cfg), lambda: temperature_inputs(cfg), build, load=load, log=log)


def _on_training_split(cfg: ExperimentConfig, device):
    """What a stage fitted on the training split loads: (device, member 0 and its metadata, the training set)."""
    dev = resolve_device(device or cfg.device)
    model, meta = _baseline(cfg, dev)
    return dev, model, meta, dataset_for(cfg.data, "train")


def fit_density_stage(cfg: ExperimentConfig, device=None, log: Callable[[str], None] = print) -> Path:
    """Fit the feature density on the training split (or reuse it); returns its file."""
    stage = density_stage(cfg)

    def load():
        dev, model, meta, ds = _on_training_split(cfg, device)
        if ds.scheme.num_classes != model.num_classes:
            raise ConfigError(
                f"the training set has {ds.scheme.num_classes} classes, the baseline {model.num_classes}: "
                "the feature density needs the baseline's own training labels"
            )
        return dev, model, ds

    def build(loaded, inputs):
        dev, model, ds = loaded
        sp = cfg.single_pass
        acc = accumulate_features(
            model, ds, dev, model.num_classes, cfg.train.batch_size, sp.density_reservoir, sp.seed, cfg.data.num_workers
        )
        density, info = fit_density(acc, sp.density_covariance, sp.density_jitter, sp.density_score)
        save_density(
            stage.output,
            density,
            {**info, "fitted_on": {"set": describe_set(ds), "images": len(ds)}, "built_from": inputs},
        )

    return run_stage(stage, lambda: density_inputs(cfg), build, load=load, log=log)


def train_multi_head_stage(cfg: ExperimentConfig, device=None, log: Callable[[str], None] = print) -> Path:
    """Train the F heads on the training split (or reuse / resume them); returns the file."""
    stage = multi_head_stage(cfg)

    def build(loaded, inputs):
        dev, model, meta, ds = loaded
        sp = cfg.single_pass
        heads = build_multi_head(model, heads_of(cfg), sp.multi_head_channels, sp.seed)
        state = stage.folder / STATE_FILE
        history = train_heads(
            model,
            heads,
            ds,
            dev,
            sp.multi_head_epochs,
            sp.multi_head_lr,
            sp.multi_head_batch_size or cfg.train.batch_size,
            cfg.train.class_weights,
            sp.seed,
            sp.multi_head_cache_mb,
            state_path=state,
            log=log,
        )
        save_multi_head(
            stage.output,
            heads,
            {
                "recipe": MULTI_HEAD_RECIPE,
                "epochs": sp.multi_head_epochs,
                "history": history,
                "fitted_on": {"set": describe_set(ds), "images": len(ds)},
                "classes": meta.get("classes"),
                "label_scheme": meta.get("label_scheme"),
                "built_from": inputs,
            },
        )
        state.unlink(missing_ok=True)

    return run_stage(
        stage, lambda: multi_head_inputs(cfg), build, load=lambda: _on_training_split(cfg, device), log=log
    )


def run_single_pass(cfg: ExperimentConfig, device=None, log: Callable[[str], None] = print) -> dict:
    """All three stages (finished ones reused); returns where each result lies."""
    check_config(cfg)
    t = fit_temperature_stage(cfg, device, log)
    return {
        "temperature": t["temperature"],
        "feature_density": fit_density_stage(cfg, device, log),
        "multi_head": train_multi_head_stage(cfg, device, log),
    }


def load_predictors(cfg: ExperimentConfig, baseline, device) -> tuple[dict[str, torch.nn.Module], dict]:
    """The three single-pass predictors on ``baseline`` (member 0, loaded by the caller) and
    their records for results.json; missing or stale stages are refused."""
    t_stage, d_stage, m_stage = temperature_stage(cfg), density_stage(cfg), multi_head_stage(cfg)
    t_path, d_path, m_path = t_stage.output, d_stage.output, m_stage.output
    for p in (t_path, d_path, m_path):
        if not p.exists():
            raise CheckpointError(
                f"{p}: single_pass.enabled is set but this single-pass stage is missing; run `udistill experiment`"
            )
    t_stage.check(temperature_inputs(cfg))
    d_stage.check(density_inputs(cfg))
    m_stage.check(multi_head_inputs(cfg))
    t = json.loads(t_path.read_text("utf-8"))
    density, dmeta = load_density(d_path)
    heads, mmeta = load_multi_head(m_path)
    if heads.num_classes != baseline.num_classes or heads.in_channels != baseline.cfg.decoder_channels:
        raise CheckpointError(f"{m_path}: the heads do not fit the baseline's features and classes")
    predictors = {
        "temperature_scaled": TemperatureScaled(baseline, t["temperature"]),
        "feature_density": FeatureDensityPredictor(baseline, density.to(device)),
        "multi_head": MultiHeadPredictor(baseline, heads.to(device)),
    }
    records = {
        "temperature_scaled": {k: v for k, v in t.items() if k != "built_from"},
        "feature_density": {k: v for k, v in dmeta.items() if k not in ("built_from", "format")},
        "multi_head": {k: v for k, v in mmeta.items() if k not in ("built_from", "format")},
    }
    return predictors, records
