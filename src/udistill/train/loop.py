"""The one training loop: ensemble members, the baseline and the student all go through
:func:`fit`.

- CPU, one GPU, or several (``torchrun``: DistributedDataParallel, any backend; optional
  synchronised BatchNorm) — :mod:`.distributed`, :mod:`.batchnorm`;
- fp32, fp16 (loss scaling) or bf16 autocast — :mod:`.precision`; channels-last and
  ``torch.compile`` — :mod:`.acceleration`;
- poly learning-rate schedule, gradient clipping, ignore index 255, validation mIoU per epoch;
- a training state (model, optimiser, scheduler, scaler, RNG, epoch, metrics) saved atomically
  at the end of every epoch — :mod:`.state`: rerunning the same command continues where it
  stopped and loses at most the epoch in progress; the finished model is written last
  (``model.safetensors``), so its presence means "done";
- progress bars, ``metrics.csv``, TensorBoard — :mod:`.logbook`;
- a non-finite loss stops training with :class:`TrainingError`, the last good state intact.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import TrainConfig
from ..data.labels import IGNORE_INDEX
from ..device import resolve_device
from ..errors import TrainingError
from ..io import remove_stale_temp_files
from ..layout import MODEL_FILE
from ..metrics.segmentation import ConfusionMatrix
from ..models.acceleration import batch_to_device, compile_model, to_channels_last
from ..models.checkpoint import save_model
from ..sharding import barrier, world
from .distributed import (
    check_equal_weights,
    prepare_batchnorm,
    rank_batches,
    share_batchnorm_buffers,
    wrap_ddp,
)
from .logbook import Logbook
from .precision import Precision
from .state import STATE_FILE, resume_training_state, save_training_state
from .state import rng_state as _rng_state  # noqa: F401  (kept importable from here)
from .state import set_rng_state as _set_rng_state  # noqa: F401
from .views import TrainView

Objective = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "Objective",
    "fit",
    "validate",
    "supervised_objective",
    "build_optimizer",
    "poly_schedule",
    "set_seed",
    "train_one_epoch",
    "world",
    "resolve_device",
]


def supervised_objective(class_weights: list[float] | None = None) -> Objective:
    """Cross-entropy on labels (255 ignored), optionally class-weighted."""

    def objective(model, batch):
        out = model(batch["image"])
        weight = None
        if class_weights is not None:
            weight = torch.tensor(class_weights, dtype=out.logits.dtype, device=out.logits.device)
        loss = F.cross_entropy(out.logits.float(), batch["label"], weight=weight, ignore_index=IGNORE_INDEX)
        return loss, {"ce": float(loss.detach())}

    return objective


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=max(cfg.weight_decay, 1e-2))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}' (known: sgd, adam, adamw, rmsprop)")


def poly_schedule(optimizer, total_steps: int, power: float):
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total) ** power)


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed every generator; deterministic algorithms, or cuDNN's autotuner (benchmark) when not."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


@torch.no_grad()
def validate(
    model: nn.Module, dataset: Dataset, num_classes: int, device, batch_size: int = 4, num_workers: int = 0
) -> dict:
    """mIoU of the model's argmax prediction on ``dataset``."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        out = model(batch["image"].to(device))
        cm.update(out.logits.argmax(1).cpu(), batch["label"])
    return cm.compute()


@dataclass
class Trainer:
    """What one epoch of training needs; built once by :func:`fit`."""

    model: nn.Module  # the plain model: its weights are saved
    step_model: nn.Module  # what the training step calls: DDP and/or compiled around ``model``
    view: TrainView
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    cfg: TrainConfig
    device: torch.device
    steps_per_epoch: int
    num_workers: int
    rank: int
    world_size: int
    state_path: Path
    desc: str


def train_one_epoch(t: Trainer, epoch: int, log: Logbook) -> dict:
    """Train one epoch; returns its row of the history (epoch, lr, seconds, mean loss and parts)."""
    cfg = t.cfg
    t.view.epoch = epoch
    gen = torch.Generator().manual_seed(cfg.seed * 7_777 + epoch)
    order = torch.randperm(len(t.view), generator=gen)
    sampler = rank_batches(order, t.steps_per_epoch, cfg.batch_size, t.rank, t.world_size)
    loader = DataLoader(t.view, batch_size=cfg.batch_size, sampler=sampler, num_workers=t.num_workers, drop_last=True)
    t.step_model.train()
    t0 = time.time()
    sums: dict[str, float] = {}
    n_steps = 0
    bar = log.bar(loader, epoch, t.steps_per_epoch)
    for batch in bar:
        batch = batch_to_device(batch, t.device, cfg.channels_last)
        with t.precision.autocast():
            loss, parts = t.objective(t.step_model, batch)
        if not torch.isfinite(loss):
            _stop_on_nonfinite(t, loss, epoch, n_steps)
        t.precision.step(loss, t.optimizer, t.model.parameters(), cfg.grad_clip)
        t.scheduler.step()
        n_steps += 1
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}")
    row = {"epoch": epoch + 1, "lr": t.optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3)}
    row.update({k: v / max(1, n_steps) for k, v in sums.items()})
    return row


def _stop_on_nonfinite(t: Trainer, loss: torch.Tensor, epoch: int, n_steps: int) -> None:
    kept = (
        f"the last good checkpoint ({t.state_path}, epoch {epoch}) is intact"
        if t.state_path.exists()
        else "no epoch had finished, nothing was saved"
    )
    raise TrainingError(
        f"{t.desc}: loss became {float(loss.detach())} at epoch {epoch + 1}, step {n_steps + 1}; "
        f"stopped, {kept}. Try a lower learning rate."
    )


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    num_classes: int,
    objective: Objective | None = None,
    device: str | torch.device = "cpu",
    augment=None,
    targets=None,
    model_meta: dict | None = None,
    num_workers: int = 0,
    desc: str = "train",
    views=None,
    on_epoch: Callable[[nn.Module, int], None] | None = None,
) -> dict:
    """Train ``model`` and save it to ``out_dir/model.safetensors``; resume if a state exists.

    ``objective(model, batch) -> (loss, parts)``; default: supervised cross-entropy.
    ``targets``: cached teacher maps for :class:`TrainView`; ``views``: perturbed views
    (:class:`udistill.pipeline.perturb.PerturbedViews`). ``num_workers``: data-loading processes for
    training and validation. ``on_epoch(model, epoch)``: called on the main process with
    epoch 0 before the first epoch of a fresh start and with epoch k after the k-th (to
    watch how something evolves during training; it must leave the model as it found it,
    e.g. restore ``model.train()``). Returns the metrics history.
    """
    out_dir = Path(out_dir)
    t = _build_trainer(model, train_set, cfg, out_dir, objective, device, augment, targets, num_workers, desc, views)
    if t.rank == 0:
        remove_stale_temp_files(out_dir)  # half-written files of a killed earlier run
    start_epoch, history = resume_training_state(t.state_path, model, t.optimizer, t.scheduler, t.precision)
    t.step_model = compile_model(wrap_ddp(model, t.device, t.world_size), cfg)
    log = Logbook(out_dir, cfg, desc, t.rank)
    if on_epoch is not None and start_epoch == 0 and t.rank == 0:
        on_epoch(model, 0)
    for epoch in range(start_epoch, cfg.epochs):
        row = train_one_epoch(t, epoch, log)
        if on_epoch is not None and t.rank == 0:
            on_epoch(model, epoch + 1)
        share_batchnorm_buffers(model, t.world_size)
        if val_set is not None and t.rank == 0:
            row["val_miou"] = validate(model, val_set, num_classes, t.device, num_workers=num_workers)["miou"]
        history.append(row)
        log.scalars(row)
        if t.rank == 0:
            save_training_state(t.state_path, model, t.optimizer, t.scheduler, t.precision, epoch + 1, history)
            log.write_csv(history)
        barrier()
    meta = {**(model_meta or {}), **check_equal_weights(model, t.world_size, desc)}
    if t.rank == 0:
        save_model(model, out_dir / MODEL_FILE, train=dataclasses.asdict(cfg), history=history, **meta)
    log.close()
    barrier()
    return {"history": history}


def _build_trainer(
    model, train_set, cfg, out_dir, objective, device, augment, targets, num_workers, desc, views
) -> Trainer:
    """Seed, place and prepare the model, and build the view, optimiser, schedule and precision."""
    from ..data.transforms import get_recipe

    device = torch.device(device)
    rank, world_size = world()
    objective = objective or supervised_objective(cfg.class_weights)
    augment = augment or get_recipe(cfg.augment)
    set_seed(cfg.seed, cfg.deterministic)
    model.to(device)
    prepare_batchnorm(model, cfg, device, world_size)
    to_channels_last(model, cfg)
    view = TrainView(train_set, augment, seed=cfg.seed, targets=targets, views=views)
    if len(view) < cfg.batch_size * world_size:
        raise TrainingError(
            f"training set has {len(view)} images, fewer than one batch ({cfg.batch_size} x {world_size})"
        )
    steps_per_epoch = len(view) // (cfg.batch_size * world_size)
    if cfg.max_iters_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_iters_per_epoch)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    scheduler = poly_schedule(optimizer, steps_per_epoch * cfg.epochs, cfg.poly_power)
    return Trainer(
        model,
        model,
        view,
        objective,
        optimizer,
        scheduler,
        Precision.for_config(cfg, device),
        cfg,
        device,
        steps_per_epoch,
        num_workers,
        rank,
        world_size,
        out_dir / STATE_FILE,
        desc,
    )
