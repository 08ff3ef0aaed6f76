"""Ensemble diversity (paper, section 4): members share one initialisation and differ in
learning rate, optimiser and data augmentation, all drawn deterministically from the
member index K. Member 0 keeps the base recipe unchanged: it is the paper's baseline.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import TrainConfig

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
AUGMENTATIONS = ("flip", "basic", "color", "strong")
# A good starting learning rate differs per optimiser; the member's lr is this times a
# log-uniform factor in [1/2, 2].
BASE_LR = {"sgd": 1.0, "adam": 0.1, "adamw": 0.1, "rmsprop": 0.05}


def member_recipe(base: TrainConfig, member: int, diversify: bool = True) -> TrainConfig:
    """The training config of ensemble member ``member``."""
    if member == 0 or not diversify:
        return dataclasses.replace(base, seed=base.seed + member)
    rng = np.random.default_rng([base.seed, member, 2718])
    optimizer = OPTIMIZERS[int(rng.integers(len(OPTIMIZERS)))]
    factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    lr = base.lr * BASE_LR[optimizer] / BASE_LR.get(base.optimizer, 1.0) * factor
    augment = AUGMENTATIONS[int(rng.integers(len(AUGMENTATIONS)))]
    return dataclasses.replace(
        base, optimizer=optimizer, lr=float(f"{lr:.3g}"), augment=augment, seed=base.seed + member
    )
