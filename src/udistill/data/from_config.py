"""Build the datasets an experiment needs from its :class:`~udistill.config.DataConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..errors import ConfigError
from .registry import build_dataset


class InMemory:
    """Wraps a dataset and keeps every item after its first load (``data.cache_in_memory``).

    Worth it when decoding or rendering an item costs as much as a training step on it, as
    for small synthetic images on a CPU. Items are shared, so consumers must not modify
    them in place (the training view builds new tensors).
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.items.get(index)
        if item is None:
            item = self.items[index] = self.dataset[index]
        return item

    def __getattr__(self, name):  # scheme, fingerprint(), describe(), source() ...
        if name in ("dataset", "items"):  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


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


def parse_shifts(dc: DataConfig, key: str = "shifts") -> list[ShiftSpec]:
    specs = []
    for i, entry in enumerate(getattr(dc, key)):
        if isinstance(entry, str):
            specs.append(ShiftSpec(name=entry, shift=entry))
        elif isinstance(entry, dict):
            unknown = set(entry) - {"name", "shift", "split", "dataset", "root", "options"}
            if unknown or "name" not in entry:
                raise ConfigError(
                    f"config key 'data.{key}[{i}]': needs 'name' and only shift/split/dataset/root/options (got {sorted(entry)})"
                )
            specs.append(ShiftSpec(**{k: v for k, v in entry.items()}))
        else:
            raise ConfigError(f"config key 'data.{key}[{i}]': expected a name or a mapping, got {entry!r}")
    return specs


def parse_val_shifts(dc: DataConfig) -> list[ShiftSpec]:
    """The validation shifts (``data.val_shifts``): built from the val role, used for choices."""
    return parse_shifts(dc, "val_shifts")


def dataset_for(dc: DataConfig, role: str, shift: ShiftSpec | None = None, **extra: Any):
    """``role``: train | val | test. With ``shift`` the role's set is replaced by the shift's
    (a ``shift=`` of it, or the split/dataset/options the shift names)."""
    split = {"train": dc.train_split, "val": dc.val_split, "test": dc.test_split}[role]
    options = {
        **dc.options,
        **(dc.train_options if role == "train" else dc.test_options),
        **dc.role_options.get(role, {}),
    }
    name, root, shift_name = dc.dataset, dc.root, None
    if shift is not None:
        if shift.dataset and shift.dataset != dc.dataset:
            options = dict(dc.options)
        elif shift.split and shift.split != split:
            # another split of the same data set: the role's own selection does not apply
            options = {**dc.options, **dc.test_options}
        options.update(shift.options)
        name = shift.dataset or dc.dataset
        root = shift.root or dc.root
        split = shift.split or split
        shift_name = shift.shift
    options.update(extra)
    ds = build_dataset(name, split, root=root, shift=shift_name, size=dc.size, seed=dc.seed, **options)
    return InMemory(ds) if dc.cache_in_memory and role in ("train", "val") else ds
