"""Uncertainty distillation (paper, section 3 and Figure 1): the student starts from a
model trained on labels (member 0 by default), gets a prediction head and an uncertainty
head, and learns M and Sigma of the teacher ensemble with :func:`distillation_loss`.

Recipes (``distill.recipe``; ``distill.sigma_loss`` / ``sigma_init`` / ``views`` override
single parts):

=========  ============  ==============================  ===================================
recipe     σ loss        uncertainty head starts at      training images
=========  ============  ==============================  ===================================
paper      mse (eq. 7)   fresh init (σ ≈ 0.5)            clean (the paper)
udistill   see RECIPES   logit of the teacher's mean Σ   perturbed views (udistill.pipeline.perturb)
=========  ============  ==============================  ===================================

The CE-only control (``distill.control``): member 0 fine-tuned on labels alone for the
student's epochs, on the same views, so that "the student beats the baseline" can be told
apart from "more training beats less".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import torch

from ..config import DistillConfig, ExperimentConfig
from ..core.ensemble import Ensemble
from ..core.heads import init_sigma_bias, uncertainty_output_layer  # noqa: F401  (kept importable from here)
from ..core.losses import SIGMA_LOSSES, distillation_loss
from ..core.teachers import teacher_targets
from ..data.auxiliary import DistillationSet, check_folders_disjoint, parse_auxiliary, with_auxiliary
from ..data.from_config import InMemory, dataset_for
from ..data.sets import evaluation_sets
from ..data.transforms import get_recipe
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError
from ..layout import RunLayout
from ..models.build import student_heads, to_student
from ..models.checkpoint import load_model
from ..train import provenance
from ..train.loop import fit
from ..train.stage import RUN, Stage, run_stage
from .perturb import PerturbedViews, ViewDataset
from .targets import build_cache
from .teacher import data_meta, fit_on_labels

RECIPES = {
    "paper": {"sigma_loss": "mse", "sigma_init": "none", "views": "none"},
    "udistill": {"sigma_loss": "mse", "sigma_init": "teacher-mean", "views": "perturb"},
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The resolved distillation recipe: the named recipe with any explicit overrides."""

    sigma_loss: str
    sigma_init: str
    views: str


def resolve_recipe(dc: DistillConfig) -> Recipe:
    if dc.recipe not in RECIPES:
        raise ConfigError(f"config key 'distill.recipe': unknown recipe '{dc.recipe}' (known: {', '.join(RECIPES)})")
    base = RECIPES[dc.recipe]
    r = Recipe(
        dc.sigma_loss or base["sigma_loss"],
        str(dc.sigma_init if dc.sigma_init is not None else base["sigma_init"]),
        dc.views or base["views"],
    )
    if r.sigma_loss not in SIGMA_LOSSES:
        raise ConfigError(
            f"config key 'distill.sigma_loss': expected one of {', '.join(SIGMA_LOSSES)}, got '{r.sigma_loss}'"
        )
    if r.views not in ("none", "perturb"):
        raise ConfigError(f"config key 'distill.views': expected 'none' or 'perturb', got '{r.views}'")
    if r.sigma_init not in ("none", "teacher-mean"):
        try:
            v = float(r.sigma_init)
        except ValueError:
            raise ConfigError(
                f"config key 'distill.sigma_init': expected none, teacher-mean or a number in (0, 1), got '{r.sigma_init}'"
            ) from None
        if not 0 < v < 1:
            raise ConfigError(f"config key 'distill.sigma_init': a number must lie in (0, 1), got {v}")
    return r


def views_for(dc: DistillConfig, seed: int) -> PerturbedViews | None:
    """The perturbed views of a recipe: K fixed views with cached targets, fresh ones online."""
    if resolve_recipe(dc).views != "perturb":
        return None
    return PerturbedViews(count=dc.view_count if dc.targets == "cached" else None, seed=seed)


@torch.no_grad()
def teacher_sigma_mean(ensemble: Ensemble | None, targets, dataset, device, images: int = 32) -> torch.Tensor:
    """Mean Σ per class over the cache (or over the first ``images`` training images)."""
    if targets is not None:
        n = len(targets)
        idx = range(0, n, max(1, n // 256))
        return torch.stack([targets.get(i)[1].float().mean((1, 2)) for i in idx]).mean(0)
    sums = []
    for i in range(min(images, len(dataset))):
        t = ensemble(dataset[i]["image"][None].to(device))
        sums.append(t.std.float().mean((0, 2, 3)).cpu())
    return torch.stack(sums).mean(0)


def distillation_objective(dcfg: DistillConfig, ensemble: Ensemble | None = None):
    """Objective for :func:`~udistill.train.loop.fit`: cached targets come with the batch,
    online ones are computed by ``ensemble`` on the (augmented) batch, outside the training
    autocast (float32, or bfloat16 with ``distill.teacher_precision: bf16``): Σ values of
    1e-4 are of the order of float16 rounding."""
    sigma_loss = resolve_recipe(dcfg).sigma_loss

    def objective(model, batch):
        out = model(batch["image"])
        if "teacher_mean" in batch:
            mean, std = batch["teacher_mean"], batch["teacher_std"]
        else:
            if ensemble is None:
                raise RuntimeError("online distillation needs the ensemble")
            mean, std = teacher_targets(ensemble, batch["image"], dcfg.teacher_precision)
        loss = distillation_loss(
            out.logits, out.sigma, mean, std, batch["label"], dcfg.temperature, dcfg.alpha, dcfg.beta, sigma_loss
        )
        return loss.total, {
            "kl": float(loss.distill.detach()),
            "ce": float(loss.cls.detach()),
            "mse": float(loss.unc.detach()),
        }

    return objective


def student_seed(cfg: ExperimentConfig) -> int:
    """``distill.seed``, else ``train.seed``: the seed of the student and the control."""
    return cfg.train.seed if cfg.distill.seed is None else int(cfg.distill.seed)


def student_train_config(cfg: ExperimentConfig):
    """The training config of the student and of the control (same epochs, lr, seed)."""
    dc = cfg.distill
    return dataclasses.replace(
        cfg.train, epochs=dc.epochs or cfg.train.epochs, lr=dc.lr or cfg.train.lr, seed=student_seed(cfg)
    )


def cache_folder(cfg: ExperimentConfig) -> Path:
    """One teacher cache per run, view set and auxiliary set (every student of the run shares it)."""
    views = views_for(cfg.distill, student_seed(cfg))
    name = "teacher-cache" if views is None else f"teacher-cache-views{views.count}"
    if cfg.distill.auxiliary:
        sources = "+".join(s.spec.replace("/", "_").replace(":", "-") for s in parse_auxiliary(cfg.distill.auxiliary))
        name += f"-aux-{sources[:60]}-{cfg.distill.auxiliary_ratio:g}"
    return RunLayout.of(cfg).teacher_cache(name)


def distillation_set(cfg: ExperimentConfig, train_set):
    """The training images plus ``distill.auxiliary`` (none: the training set itself). An
    auxiliary folder sharing an image with a validation or test set is refused."""
    dc = cfg.distill
    dset = with_auxiliary(
        train_set, dc.auxiliary, dc.auxiliary_ratio, cfg.data.size, seed=cfg.data.seed, train_dataset=cfg.data.dataset
    )
    if isinstance(dset, DistillationSet) and dset.auxiliary.folders:
        check_folders_disjoint(dset.auxiliary, evaluation_sets(cfg))
    if isinstance(dset, DistillationSet) and cfg.data.cache_in_memory:
        dset = DistillationSet(train_set, InMemory(dset.auxiliary))
    return dset


def student_stage(cfg: ExperimentConfig, heads: str | None = None) -> Stage:
    """The student of ``heads`` (``student``, or ``student-light``) as a stage: it holds the whole
    run (it reads every member and writes the run's teacher cache)."""
    layout = RunLayout.of(cfg)
    return Stage(
        "student",
        layout.out_dir,
        layout.model_in(layout.student(heads or cfg.model.uncertainty_head)),
        lock=RUN,
        resumes=True,
    )


def run_distill(cfg: ExperimentConfig, device: str | None = None, heads: str | None = None, on_epoch=None) -> Path:
    """Train the student into ``out_dir/student`` (``student-light`` for the light head).
    ``on_epoch(student, epoch)``: see :func:`~udistill.train.loop.fit` (a study's probe)."""
    model_cfg = dataclasses.replace(cfg.model, uncertainty_head=heads or cfg.model.uncertainty_head)
    stage = student_stage(cfg, model_cfg.uncertainty_head)
    out = stage.folder
    dc = cfg.distill
    tcfg = student_train_config(cfg)

    def load():
        """Everything the student is built from, read and checked before the stage starts: a
        refused run leaves the run folder as it was."""
        dev = resolve_device(device or cfg.device)
        init = provenance.init_path_of(cfg)
        train_set = dataset_for(cfg.data, "train")
        val_set = dataset_for(cfg.data, "val")
        num_classes = train_set.scheme.num_classes
        if not init.exists():
            raise CheckpointError(
                f"{init}: the student starts from a model trained on labels; train member 0 first (udistill train-teacher --member 0)"
            )
        base, _ = load_model(init, expect=model_cfg, num_classes=num_classes, heads="prediction")
        recipe = resolve_recipe(dc)
        torch.manual_seed(student_seed(cfg))  # the new uncertainty head: same init on every (re)run
        student = to_student(base, student_heads(model_cfg))
        ensemble = Ensemble.from_run(cfg.out_dir, temperature=dc.temperature, members=cfg.teacher.members).to(dev)
        distill_set = distillation_set(cfg, train_set)
        return SimpleNamespace(
            dev=dev,
            train_set=train_set,
            val_set=val_set,
            num_classes=num_classes,
            recipe=recipe,
            student=student,
            ensemble=ensemble,
            distill_set=distill_set,
        )

    def prepare(s):
        """After the start, before training: the teacher cache and the σ head's initialisation."""
        s.views = views_for(dc, student_seed(cfg))
        s.targets = None
        s.augment = get_recipe(tcfg.augment)
        if dc.targets == "cached":
            # one cache for every student of the run (it depends on the ensemble, data and views only)
            source = s.distill_set if s.views is None else ViewDataset(s.distill_set, s.views)
            s.targets = build_cache(
                s.ensemble,
                source,
                cache_folder(cfg),
                device=s.dev,
                progress=tcfg.progress,
                reduction=dc.cache_reduction,
                num_workers=cfg.data.num_workers,
            )
            if s.augment.photometric != "none":
                # cached maps describe the cached pixels: keep only the geometric part
                s.augment = dataclasses.replace(s.augment, photometric="none")
        elif dc.targets != "online":
            raise ValueError(f"distill.targets must be 'cached' or 'online', got '{dc.targets}'")
        if s.recipe.sigma_init == "teacher-mean":
            init_sigma_bias(s.student, teacher_sigma_mean(s.ensemble, s.targets, s.train_set, s.dev))
        elif s.recipe.sigma_init != "none":
            init_sigma_bias(s.student, torch.full((s.num_classes,), float(s.recipe.sigma_init)))
        if s.targets is not None:
            s.ensemble = None
        return s

    def build(s, built_from):
        fit(
            s.student,
            s.distill_set,
            s.val_set,
            tcfg,
            out,
            s.num_classes,
            objective=distillation_objective(dc, s.ensemble),
            device=s.dev,
            augment=s.augment,
            targets=s.targets,
            views=s.views,
            num_workers=cfg.data.num_workers,
            on_epoch=on_epoch,
            model_meta={
                **data_meta(s.train_set),
                "role": "student",
                "distill": dataclasses.asdict(dc),
                "recipe": dataclasses.asdict(s.recipe),
                "teacher_members": cfg.teacher.members,
                "built_from": built_from,
            },
            desc="student",
        )

    return run_stage(
        stage,
        lambda: provenance.student_inputs(cfg, model_cfg, provenance.init_path_of(cfg)),
        build,
        load=load,
        prepare=prepare,
        config=dataclasses.replace(cfg, model=model_cfg, train=tcfg),
    )


def control_inputs(cfg: ExperimentConfig) -> dict:
    """What the control's weights depend on: member 0 and the student's training config."""
    return {
        "init": provenance.weights_digest(provenance.init_path_of(cfg)),
        "config": provenance.digest(
            {
                "train": dataclasses.asdict(student_train_config(cfg)),
                "views": cfg.distill.views,
                "recipe": cfg.distill.recipe,
                "view_count": cfg.distill.view_count,
            }
        ),
    }


def control_stage(cfg: ExperimentConfig) -> Stage:
    """The CE-only control as a stage (it holds the whole run, as the student does)."""
    layout = RunLayout.of(cfg)
    return Stage("control", layout.out_dir, layout.model_in(layout.control), lock=RUN, resumes=True)


def run_control(cfg: ExperimentConfig, device: str | None = None) -> Path:
    """The CE-only control: member 0 trained on labels alone for the student's epochs, lr
    and views, into ``out_dir/control``. The student's gain over it is the gain of
    distillation; its gain over member 0 is the gain of more training."""
    stage = control_stage(cfg)
    init = provenance.init_path_of(cfg)
    tcfg = student_train_config(cfg)

    def load():
        if not init.exists():
            raise CheckpointError(
                f"{init}: the control starts from member 0; train it first (udistill train-teacher --member 0)"
            )
        dev = resolve_device(device or cfg.device)
        train_set = dataset_for(cfg.data, "train")
        val_set = dataset_for(cfg.data, "val")
        model, _ = load_model(init, expect=cfg.model, num_classes=train_set.scheme.num_classes, heads="prediction")
        return dev, model, (train_set, val_set)

    def build(loaded, built_from):
        dev, model, sets = loaded
        views = views_for(cfg.distill, student_seed(cfg))
        augment = get_recipe(tcfg.augment)
        if views is not None and augment.photometric != "none":
            augment = dataclasses.replace(augment, photometric="none")  # as the student: views, then geometry
        meta = {"role": "control", "built_from": built_from}
        fit_on_labels(cfg, tcfg, model, sets, stage.folder, dev, meta, desc="control", augment=augment, views=views)

    return run_stage(stage, lambda: control_inputs(cfg), build, load=load, config=dataclasses.replace(cfg, train=tcfg))
