"""Which images form which evaluation set, and the check that two sets share no image.

Why here, in ``data``: the calibration set, the test sets and the validation shifts are named
by the config, and every stage that makes a choice (the alarm's calibration, auxiliary
distillation data, the single-pass fits, evaluation) must refuse a set that overlaps the
images it is judged on. One definition of "the same image" (by file content) serves them all.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

from torch.utils.data import Dataset

from ..config import ExperimentConfig
from ..errors import ConfigError
from .from_config import dataset_for, parse_shifts, parse_val_shifts

SUBSETS = ("all", "even", "odd")


class Selection(Dataset):
    """Some items of a dataset (by index), keeping its scheme, fingerprint and names."""

    def __init__(self, dataset, indices: list[int], rule: str):
        self.dataset, self.indices, self.rule = dataset, list(indices), rule

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name):
        if name in ("dataset", "indices", "rule"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def item_names(ds) -> list[str]:
    """The item names of a dataset without decoding images (the identity used by
    :func:`check_disjoint`: CamVid frame stems, synthetic ``synthetic-<split>-<index>``)."""
    if isinstance(ds, Selection):
        names = item_names(ds.dataset)
        return [names[i] for i in ds.indices]
    base = getattr(ds, "dataset", ds)  # InMemory
    if callable(getattr(base, "name", None)):
        return [base.name(i) for i in range(len(base))]
    if hasattr(base, "samples"):
        return [s.name for s in base.samples]
    return [str(base[i]["name"]) for i in range(len(base))]


def calibration_dataset(cfg: ExperimentConfig):
    """The calibration set the config names (``evaluate.calibration_split`` / ``_subset``)."""
    ec = cfg.evaluate
    if ec.calibration_subset not in SUBSETS:
        raise ConfigError(
            f"config key 'evaluate.calibration_subset': expected one of {', '.join(SUBSETS)}, got {ec.calibration_subset!r}"
        )
    data = cfg.data
    if ec.calibration_split and ec.calibration_split != data.val_split:
        data = dataclasses.replace(data, val_split=ec.calibration_split)
    ds = dataset_for(data, "val")
    if ec.calibration_subset == "all":
        return ds
    start = 0 if ec.calibration_subset == "even" else 1
    return Selection(ds, list(range(start, len(ds), 2)), ec.calibration_subset)


# data set options that say which frames of a split a set holds (CamVid's sequence filters)
_SELECTING_OPTIONS = ("sequences", "exclude_sequences", "frames")


def describe_set(ds) -> str:
    """'camvid split 'train' (sequences 0006R0, frames 3030-3930), 31 images': enough to find
    the images again, written into results.json beside every choice made on them."""
    rule = f", {ds.rule} indices" if isinstance(ds, Selection) else ""
    split = getattr(ds, "split", "?")
    base = getattr(ds, "dataset", ds)
    options = getattr(base, "options", None) or {}
    chosen = [_describe_option(k, options[k]) for k in _SELECTING_OPTIONS if options.get(k) is not None]
    which = f" ({', '.join(chosen)})" if chosen else ""
    name = getattr(ds, "dataset_name", type(base).__name__)
    return f"{name} split '{split}'{which}{rule}, {len(ds)} images"


def _describe_option(key: str, value) -> str:
    label = key.replace("_", " ")
    if key == "frames" and isinstance(value, dict):
        return f"{label} " + ", ".join(f"{seq} {r[0]}-{r[1]}" for seq, r in value.items())
    if key == "frames":
        return f"{label} {value[0]}-{value[1]}"
    return f"{label} {', '.join(map(str, value))}"


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]


def item_identities(ds) -> list[str]:
    """What identifies each image across data sets, by content: the digest of its file's
    bytes for on-disk data (a renamed copy is the same image), the item name for rendered
    data (synthetic scenes are a function of seed, split and index)."""
    if isinstance(ds, Selection):
        ids = item_identities(ds.dataset)
        return [ids[i] for i in ds.indices]
    base = getattr(ds, "dataset", ds)  # InMemory
    paths = [s.image for s in base.samples] if hasattr(base, "samples") else getattr(base, "files", None)
    if paths is None:
        return item_names(ds)
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append(_file_digest(str(p), st.st_size, st.st_mtime_ns))
    return out


def check_disjoint(
    calibration,
    tests: dict[str, object],
    what: str = "the calibration set",
    hint: str = "choose disjoint splits (evaluate.calibration_split / calibration_subset, data.val_split, the test split)",
) -> None:
    """Refuse ``calibration`` (or any set that makes a choice) when it shares an image with
    any test set, by content (:func:`item_identities`); the message names the files."""
    ids = item_identities(calibration)
    mine = dict(zip(ids, item_names(calibration)))
    for name, ds in tests.items():
        theirs = dict(zip(item_identities(ds), item_names(ds)))
        common = sorted(set(mine).intersection(theirs))
        if common:
            d = common[0]
            raise ConfigError(
                f"{what} shares {len(common)} image(s) with the test set '{name}' "
                f"(e.g. {mine[d]} is the same image as {theirs[d]}); {hint}"
            )


def test_sets(cfg: ExperimentConfig) -> dict[str, object]:
    """The in-distribution test set and every test shift, by name."""
    sets = {"in-distribution": dataset_for(cfg.data, "test")}
    for spec in parse_shifts(cfg.data):
        sets[spec.name] = dataset_for(cfg.data, "test", shift=spec)
    return sets


def evaluation_sets(cfg: ExperimentConfig) -> dict[str, object]:
    """Every set a choice or a result is made on: the test sets, the val split and the
    validation shifts, by name (what auxiliary distillation data must not share an image with)."""
    sets = {f"test {name}": ds for name, ds in test_sets(cfg).items()}
    sets["val"] = dataset_for(cfg.data, "val")
    for spec in parse_val_shifts(cfg.data):
        sets[f"val {spec.name}"] = dataset_for(cfg.data, "val", shift=spec)
    return sets
