"""The one training loop: ensemble members, the baseline and the student all go through
:func:`fit`.

- CPU, one GPU (AMP), or several (``torchrun``: DistributedDataParallel, any backend);
- poly learning-rate schedule, gradient clipping, ignore index 255, validation mIoU per epoch;
- a training state (model, optimiser, scheduler, RNG, epoch, metrics) saved atomically at
  the end of every epoch: rerunning the same command continues where it stopped and loses
  at most the epoch in progress; the finished model is written last (``model.safetensors``),
  so its presence means "done";
- a non-finite loss stops training with :class:`TrainingError`, the last good state intact.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import TrainConfig
from ..errors import TrainingError
from ..io import atomic_write_text, remove_stale_temp_files
from ..metrics.segmentation import ConfusionMatrix
from ..models.checkpoint import load_state, save_model, save_state
from .views import TrainView

STATE_FILE = "last.state.safetensors"
MODEL_FILE = "model.safetensors"

Objective = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            rank = dist.get_rank() if dist.is_initialized() else 0
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(name)


def supervised_objective(class_weights: list[float] | None = None) -> Objective:
    """Cross-entropy on labels (255 ignored), optionally class-weighted."""

    def objective(model, batch):
        out = model(batch["image"])
        weight = None
        if class_weights is not None:
            weight = torch.tensor(class_weights, dtype=out.logits.dtype, device=out.logits.device)
        loss = F.cross_entropy(out.logits.float(), batch["label"], weight=weight, ignore_index=255)
        return loss, {"ce": float(loss.detach())}

    return objective


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
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
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _rng_state() -> dict:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [list(keys), int(pos), int(has_gauss), float(gauss)],
             "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, np.uint32), int(pos), int(has_gauss), float(gauss)))
    random.setstate((3, tuple(int(x) for x in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


@torch.no_grad()
def validate(model: nn.Module, dataset: Dataset, num_classes: int, device, batch_size: int = 4) -> dict:
    """mIoU of the model's argmax prediction on ``dataset``."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in loader:
        out = model(batch["image"].to(device))
        cm.update(out.logits.argmax(1).cpu(), batch["label"])
    return cm.compute()


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
) -> dict:
    """Train ``model`` and save it to ``out_dir/model.safetensors``; resume if a state exists.

    ``objective(model, batch) -> (loss, parts)``; default: supervised cross-entropy.
    ``targets``: cached teacher maps for :class:`TrainView`. Returns the metrics history.
    """
    from ..data.transforms import get_recipe

    out_dir = Path(out_dir)
    device = torch.device(device)
    rank, world_size = world()
    objective = objective or supervised_objective(cfg.class_weights)
    augment = augment or get_recipe(cfg.augment)
    set_seed(cfg.seed, cfg.deterministic)
    model.to(device)
    view = TrainView(train_set, augment, seed=cfg.seed, targets=targets)
    if len(view) < cfg.batch_size * world_size:
        raise TrainingError(f"training set has {len(view)} images, fewer than one batch ({cfg.batch_size} x {world_size})")
    steps_per_epoch = len(view) // (cfg.batch_size * world_size)
    if cfg.max_iters_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_iters_per_epoch)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    scheduler = poly_schedule(optimizer, steps_per_epoch * cfg.epochs, cfg.poly_power)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict] = []
    start_epoch = 0
    state_path = out_dir / STATE_FILE
    if rank == 0:
        remove_stale_temp_files(out_dir)  # half-written files of a killed earlier run
    if state_path.exists():
        state = load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and use_amp:
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        history = list(state["history"])

    train_model = model
    if world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    writer = None
    if cfg.tensorboard and rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tensorboard"))
        except ImportError:
            print("tensorboard is not installed; pip install tensorboard to log there")

    for epoch in range(start_epoch, cfg.epochs):
        view.epoch = epoch
        gen = torch.Generator().manual_seed(cfg.seed * 7_777 + epoch)
        order = torch.randperm(len(view), generator=gen)
        per_rank = order[: steps_per_epoch * cfg.batch_size * world_size][rank::world_size]
        loader = DataLoader(view, batch_size=cfg.batch_size, sampler=per_rank.tolist(), num_workers=num_workers, drop_last=True)
        train_model.train()
        t0 = time.time()
        sums: dict[str, float] = {}
        n_steps = 0
        bar = _progress(loader, cfg.progress and rank == 0, f"{desc} epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch)
        for batch in bar:
            batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
            with torch.autocast(device.type, enabled=use_amp):
                loss, parts = objective(train_model, batch)
            if not torch.isfinite(loss):
                kept = (f"the last good checkpoint ({state_path}, epoch {epoch}) is intact" if state_path.exists()
                        else "no epoch had finished, nothing was saved")
                raise TrainingError(
                    f"{desc}: loss became {float(loss.detach())} at epoch {epoch + 1}, step {n_steps + 1}; "
                    f"stopped, {kept}. Try a lower learning rate."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n_steps += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}")
        if world_size > 1:
            # BatchNorm running statistics are per rank; take rank 0's so all ranks agree
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3)}
        row.update({k: v / max(1, n_steps) for k, v in sums.items()})
        if val_set is not None and rank == 0:
            res = validate(model, val_set, num_classes, device)
            row["val_miou"] = res["miou"]
        history.append(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
        if rank == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "epoch": epoch + 1,
                "history": history,
            }
            if use_amp:
                state["scaler"] = scaler.state_dict()
            save_state(state_path, state)
            _write_metrics_csv(out_dir / "metrics.csv", history)
        if world_size > 1:
            dist.barrier()
    meta = dict(model_meta or {})
    if world_size > 1:
        # every rank must end with identical weights; record the evidence in the checkpoint
        digests: list = [None] * world_size
        dist.all_gather_object(digests, _weights_digest(model))
        if len(set(digests)) != 1:
            raise TrainingError(f"{desc}: ranks ended with different weights ({digests})")
        meta["ddp"] = {"world_size": world_size, "rank_digests": digests}
    if rank == 0:
        save_model(model, out_dir / MODEL_FILE, train=_asdict(cfg), history=history, **meta)
    if writer is not None:
        writer.close()
    if world_size > 1:
        dist.barrier()
    return {"history": history}


def _weights_digest(model: nn.Module) -> str:
    from ..models.checkpoint import _digest

    return _digest(model.state_dict())[:16]


def _asdict(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)


def _progress(iterable, enabled: bool, desc: str, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for row in history:
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())
