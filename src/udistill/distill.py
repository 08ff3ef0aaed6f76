"""Uncertainty distillation (paper, section 3 and Figure 1): the student starts from a
model trained on labels (member 0 by default), gets a prediction head and an uncertainty
head, and learns M and Sigma of the teacher ensemble with :func:`distillation_loss`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .config import DistillConfig, ExperimentConfig, save_config
from .data.from_config import dataset_for
from .data.transforms import get_recipe
from .ensemble import Ensemble, member_dir
from .errors import CheckpointError
from .losses import distillation_loss
from . import provenance
from .models.build import student_heads, to_student
from .models.checkpoint import load_model
from .runlock import locks_run
from .targets import build_cache
from .teacher import data_meta
from .train.loop import MODEL_FILE, fit, is_main_process, resolve_device


def distillation_objective(dcfg: DistillConfig, ensemble: Ensemble | None = None):
    """Objective for :func:`~udistill.train.loop.fit`: cached targets come with the batch,
    online ones are computed by ``ensemble`` on the (augmented) batch."""

    def objective(model, batch):
        out = model(batch["image"])
        if "teacher_mean" in batch:
            mean, std = batch["teacher_mean"], batch["teacher_std"]
        else:
            if ensemble is None:
                raise RuntimeError("online distillation needs the ensemble")
            t = ensemble(batch["image"])
            mean, std = t.mean, t.std
        loss = distillation_loss(out.logits, out.sigma, mean, std, batch["label"], dcfg.temperature, dcfg.alpha, dcfg.beta)
        return loss.total, {"kl": float(loss.distill.detach()), "ce": float(loss.cls.detach()), "mse": float(loss.unc.detach())}

    return objective


def student_dir(cfg: ExperimentConfig, heads: str | None = None) -> Path:
    kind = heads or cfg.model.uncertainty_head
    return Path(cfg.out_dir) / ("student" if kind == "paper" else f"student-{kind}")


@locks_run
def run_distill(cfg: ExperimentConfig, device: str | None = None, heads: str | None = None) -> Path:
    """Train the student into ``out_dir/student`` (``student-light`` for the light head)."""
    model_cfg = dataclasses.replace(cfg.model, uncertainty_head=heads or cfg.model.uncertainty_head)
    out = student_dir(cfg, model_cfg.uncertainty_head)
    built_from = provenance.student_inputs(cfg, model_cfg, provenance.init_path_of(cfg))
    if provenance.reusable(out / MODEL_FILE, built_from, "student"):
        return out / MODEL_FILE
    dev = resolve_device(device or cfg.device)
    dc = cfg.distill
    init = member_dir(cfg.out_dir, 0) / MODEL_FILE if dc.init_from == "member0" else Path(dc.init_from)
    train_set = dataset_for(cfg.data, "train")
    val_set = dataset_for(cfg.data, "val")
    num_classes = train_set.scheme.num_classes
    if not init.exists():
        raise CheckpointError(f"{init}: the student starts from a model trained on labels; train member 0 first (udistill train-teacher --member 0)")
    base, _ = load_model(init, expect=model_cfg, num_classes=num_classes, heads="prediction")
    torch.manual_seed(cfg.train.seed)  # the new uncertainty head: same init on every (re)run
    student = to_student(base, student_heads(model_cfg))
    ensemble = Ensemble.from_run(cfg.out_dir, temperature=dc.temperature, members=cfg.teacher.members).to(dev)
    tcfg = dataclasses.replace(cfg.train, epochs=dc.epochs or cfg.train.epochs, lr=dc.lr or cfg.train.lr)
    targets = None
    augment = get_recipe(tcfg.augment)
    if dc.targets == "cached":
        # one cache for every student of the run (it depends on the ensemble and data only)
        targets = build_cache(ensemble, train_set, student_dir(cfg, "paper") / "teacher-cache", device=dev, progress=tcfg.progress)
        if augment.photometric != "none":
            # cached maps describe the clean image: keep only the geometric part
            augment = dataclasses.replace(augment, photometric="none")
        ensemble = None
    elif dc.targets != "online":
        raise ValueError(f"distill.targets must be 'cached' or 'online', got '{dc.targets}'")
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        save_config(dataclasses.replace(cfg, model=model_cfg, train=tcfg), out / "config.yaml")
    fit(
        student, train_set, val_set, tcfg, out, num_classes,
        objective=distillation_objective(dc, ensemble),
        device=dev,
        augment=augment,
        targets=targets,
        num_workers=cfg.data.num_workers,
        model_meta={**data_meta(train_set), "role": "student", "distill": dataclasses.asdict(dc), "teacher_members": cfg.teacher.members,
                    "built_from": built_from},
        desc="student",
    )
    return out / MODEL_FILE
