"""The training state saved after every epoch, and resuming from it.

``last.state.safetensors`` holds the model, optimiser, scheduler, loss scaler (fp16 only),
every random generator (torch, CUDA, numpy, Python), the number of finished epochs and the
metrics history: rerunning the same command continues exactly where the last finished epoch
left off, so an interrupted run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.checkpoint import load_state, save_state
from .precision import Precision

STATE_FILE = "last.state.safetensors"


def rng_state() -> dict:
    """Every random generator training draws from (numpy's legacy global one included)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [list(keys), int(pos), int(has_gauss), float(gauss)],
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put every generator back where :func:`rng_state` found it."""
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, np.uint32), int(pos), int(has_gauss), float(gauss)))
    random.setstate((3, tuple(int(x) for x in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(
    path: Path, model: nn.Module, optimizer, scheduler, precision: Precision, epoch: int, history: list[dict]
) -> None:
    """Write the state after ``epoch`` finished epochs (atomically: a kill leaves the previous one)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "epoch": epoch,
        "history": history,
    }
    scaler = precision.state_dict()
    if scaler is not None:
        state["scaler"] = scaler
    save_state(path, state)


def resume_training_state(
    path: Path, model: nn.Module, optimizer, scheduler, precision: Precision
) -> tuple[int, list[dict]]:
    """Load the state at ``path`` into the objects if it exists: ``(finished epochs, history)``."""
    if not path.exists():
        return 0, []
    state = load_state(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    precision.load_state_dict(state.get("scaler"))
    set_rng_state(state["rng"])
    return int(state["epoch"]), list(state["history"])
