"""Registry of dataset builders and the one public factory, :func:`build_dataset`.

Every dataset item is a dict:
- ``image``: float32 tensor (3, H, W), RGB scaled to [0, 1] (no mean/std normalisation:
  the model normalises internally with the statistics stored in its checkpoint);
- ``label``: int64 tensor (H, W), class ids of the dataset's scheme, 255 = ignore;
- ``name``: str, a stable identifier of the item (file stem or synthetic index);
- ``depth``: float32 tensor (H, W) in metres, only where known (synthetic).
Native resolution unless ``size=(H, W)`` is given (bilinear for images, nearest for labels).
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str) -> Callable:
    """Decorator: ``@register_dataset("camvid")`` on a builder ``f(split, root, shift, size, seed, **options)``."""

    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset '{name}' registered twice")
        _REGISTRY[name] = fn
        return fn

    return wrap


def available_datasets() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_dataset(name, split, root=None, shift=None, size=None, seed=0, **options) -> Dataset:
    """Build dataset ``name`` for ``split``; see the module docstring for the item format."""
    from ..errors import DataError

    _load_builtin()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None
    if size is not None:
        size = (int(size[0]), int(size[1]))
    return builder(split=split, root=root, shift=shift, size=size, seed=seed, **options)


def _load_builtin() -> None:
    # Importing the modules registers their builders.
    from . import a2d2, camvid, cityscapes, images, synthetic  # noqa: F401
