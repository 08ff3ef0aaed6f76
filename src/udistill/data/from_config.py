"""Build the datasets an experiment needs from its :class:`~udistill.config.DataConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..errors import ConfigError
from .registry import build_dataset


@dataclass(frozen=True)
class ShiftSpec:
    """One out-of-distribution evaluation set: a ``shift=`` of the test split, or another
    selection / another dataset entirely (e.g. CamVid's dusk sequence, A2D2)."""

    name: str
    shift: str | None = None
    split: str | None = None
    dataset: str | None = None
    root: str | None = None
    options: dict = field(default_factory=dict)


def parse_shifts(dc: DataConfig) -> list[ShiftSpec]:
    specs = []
    for i, entry in enumerate(dc.shifts):
        if isinstance(entry, str):
            specs.append(ShiftSpec(name=entry, shift=entry))
        elif isinstance(entry, dict):
            unknown = set(entry) - {"name", "shift", "split", "dataset", "root", "options"}
            if unknown or "name" not in entry:
                raise ConfigError(f"config key 'data.shifts[{i}]': needs 'name' and only shift/split/dataset/root/options (got {sorted(entry)})")
            specs.append(ShiftSpec(**{k: v for k, v in entry.items()}))
        else:
            raise ConfigError(f"config key 'data.shifts[{i}]': expected a name or a mapping, got {entry!r}")
    return specs


def dataset_for(dc: DataConfig, role: str, shift: ShiftSpec | None = None, **extra: Any):
    """``role``: train | val | test. With ``shift`` the test role is replaced by the shift's set."""
    split = {"train": dc.train_split, "val": dc.val_split, "test": dc.test_split}[role]
    options = {**dc.options, **(dc.train_options if role == "train" else dc.test_options)}
    name, root, shift_name = dc.dataset, dc.root, None
    if shift is not None:
        if shift.dataset and shift.dataset != dc.dataset:
            options = dict(dc.options)
        options.update(shift.options)
        name = shift.dataset or dc.dataset
        root = shift.root or dc.root
        split = shift.split or split
        shift_name = shift.shift
    options.update(extra)
    return build_dataset(name, split, root=root, shift=shift_name, size=dc.size, seed=dc.seed, **options)
