"""Training the teacher ensemble: member K is an independent job (``udistill train-teacher
--member K``), so a cluster can train all F at once. Members share one initialisation
(``teacher.init_seed``) unless ``teacher.diverse_init``; their learning rate, optimiser and
augmentation come from :func:`~udistill.train.recipes.member_recipe`. Member 0 is the baseline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import ExperimentConfig, save_config
from ..data.from_config import dataset_for
from ..device import resolve_device
from ..layout import RunLayout
from ..models.build import build_model
from ..sharding import is_main
from ..train import provenance
from ..train.loop import STATE_FILE, fit
from ..train.recipes import member_recipe
from ..train.stage import Stage, run_stage


def parse_members(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5-6"`` -> [0, 2, 5, 6]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def data_meta(dataset) -> dict:
    """Classes, scheme and data fingerprint, and the input size the model was trained at
    (``input_size`` [H, W], None = native; ``resize``: how frames were brought to it, so the
    predictor can do the same; datasets stretch to ``size``, the synthetic renderer draws
    at its ``render_size``)."""
    scheme = dataset.scheme
    size = getattr(dataset, "size", None) or getattr(dataset, "render_size", None)
    return {
        "classes": list(scheme.classes),
        "label_scheme": scheme.name,
        "data_fingerprint": dataset.fingerprint() if hasattr(dataset, "fingerprint") else None,
        "input_size": [int(size[0]), int(size[1])] if size else None,
        "resize": "stretch" if size else None,
    }


def member_stage(cfg: ExperimentConfig, k: int) -> Stage:
    """Member ``k`` as a stage of the run: its own stage lock (members are independent jobs)."""
    layout = RunLayout.of(cfg)
    return Stage(f"member {k}", layout.out_dir, layout.member_model(k), lock=f"member-{k}", resumes=True)


def train_member(cfg: ExperimentConfig, k: int, device: str | None = None) -> Path:
    """Train member ``k`` into ``out_dir/members/member-k`` (skipped when already finished).

    The lock is the member's stage, not the whole run: members are independent jobs (a
    cluster trains them at once); two writers of the *same* member are refused, and so is a
    member job while ``experiment``/``distill``/``evaluate`` hold the run (see runlock)."""
    stage = member_stage(cfg, k)
    out = stage.folder
    tcfg = member_recipe(cfg.train, k, cfg.teacher.diversify)

    def load():
        dev = resolve_device(device or cfg.device)
        return dev, dataset_for(cfg.data, "train"), dataset_for(cfg.data, "val")

    def prepare(loaded):
        dev, train_set, val_set = loaded
        torch.manual_seed(cfg.teacher.init_seed + (k if cfg.teacher.diverse_init else 0))
        # resuming: the weights come from the training state, so no ImageNet download (offline)
        model = build_model(
            cfg.model, train_set.scheme.num_classes, "prediction", pretrained=not (out / STATE_FILE).exists()
        )
        return dev, train_set, val_set, model

    def build(prepared, built_from):
        dev, train_set, val_set, model = prepared
        meta = {"role": "member", "member": k, "built_from": built_from}
        fit_on_labels(cfg, tcfg, model, (train_set, val_set), out, dev, meta, desc=f"member {k}")

    return run_stage(
        stage,
        lambda: provenance.member_inputs(cfg, k),
        build,
        load=load,
        prepare=prepare,
        config=dataclasses.replace(cfg, train=tcfg),
    )


def train_on_labels(cfg: ExperimentConfig, tcfg, model, sets, out: Path, dev, meta: dict, desc: str, **fit_options):
    """Train ``model`` with cross-entropy on ``sets`` = (train, val) into ``out``: the stage's
    config is saved beside it and the checkpoint records ``meta``. (The members and the control
    run as stages of :func:`~udistill.train.stage.run_stage`, which saves their config, and call
    :func:`fit_on_labels`.)"""
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        save_config(dataclasses.replace(cfg, train=tcfg), RunLayout.config_in(out))
    return fit_on_labels(cfg, tcfg, model, sets, out, dev, meta, desc, **fit_options)


def fit_on_labels(cfg: ExperimentConfig, tcfg, model, sets, out: Path, dev, meta: dict, desc: str, **fit_options):
    """Train ``model`` with cross-entropy on ``sets`` = (train, val) into ``out`` (a member, or
    the control); the checkpoint records ``meta``."""
    train_set, val_set = sets
    fit(
        model,
        train_set,
        val_set,
        tcfg,
        out,
        train_set.scheme.num_classes,
        device=dev,
        num_workers=cfg.data.num_workers,
        model_meta={**data_meta(train_set), **meta},
        desc=desc,
        **fit_options,
    )
    return RunLayout.model_in(out)


def train_members(cfg: ExperimentConfig, members: list[int], device: str | None = None) -> list[Path]:
    return [train_member(cfg, k, device) for k in members]
