"""Which device a job runs on: one answer for training, evaluation and deployment.

``"auto"`` is the GPU of this process's rank when CUDA is available (``torchrun`` starts one
process per GPU: rank R uses GPU R modulo the GPUs visible), else the CPU; any other string is
handed to :class:`torch.device` (``"cpu"``, ``"cuda:1"``, ``"mps"``). A device that is not one
(``"bogus"``) or is not on this machine (``"cuda"`` without CUDA, ``"cuda:3"`` with two GPUs) is
a :class:`~udistill.errors.ConfigError`: one line and exit code 2 in every command.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .sharding import world

KNOWN = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` for ``name`` (``"auto"``: this rank's GPU, else the CPU);
    ConfigError when ``name`` is not a device or that device is not available here."""
    if isinstance(name, torch.device):
        return check_available(name, str(name))
    if name is None:
        name = "auto"
    if not isinstance(name, str):
        raise ConfigError(f"device {name!r}: expected a device name ({KNOWN})")
    if name == "auto":
        if torch.cuda.is_available():
            rank = world()[0]
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device '{name}': not a device (expected {KNOWN})") from None
    return check_available(dev, name)


def check_available(dev: torch.device, name: str) -> torch.device:
    """``dev`` if this machine has it, else ConfigError naming ``name``."""
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}': CUDA is not available on this machine (use auto or cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device '{name}': this machine has {count} CUDA device(s), numbered from 0")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device '{name}': MPS is not available on this machine (use auto or cpu)")
        return dev
    backend = getattr(torch, dev.type, None)
    if dev.type != "meta" and callable(getattr(backend, "is_available", None)):
        if not backend.is_available():
            raise ConfigError(f"device '{name}': not available on this machine (use auto or cpu)")
        return dev
    raise ConfigError(f"device '{name}': not supported (expected {KNOWN})")
