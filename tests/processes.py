"""Running udistill as users do, in child processes: the command lines and a quiet, one-thread
environment (the 2-core CI machine runs them beside the test process)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest


def child_env() -> dict:
    """The environment of a child udistill process: one thread, no update checks."""
    return dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")


def udistill_cmd(*args: str) -> list[str]:
    """``python -m udistill ARGS`` with this interpreter."""
    return [sys.executable, "-m", "udistill", *map(str, args)]


def torchrun_cmd(nproc: int, *args: str) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m udistill ARGS``; skips the test without torchrun."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    return [str(torchrun), "--standalone", "--nproc_per_node", str(nproc), "-m", "udistill", *map(str, args)]


@contextlib.contextmanager
def gloo_group(rank: int, world_size: int, init_file: str):
    """The process group of a spawned two-process test worker: one thread, gloo, and left with
    :func:`udistill.train.distributed.shut_down` (a barrier first when the body finished, so
    no rank closes the group while another still talks to it). Keep tensors that hold the
    group (an autograd graph through a collective) inside a function called in the body, so
    they are gone before the group closes."""
    import torch
    import torch.distributed as dist

    from udistill.train.distributed import shut_down

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    clean = False
    try:
        yield
        clean = True
    finally:
        shut_down(clean)
