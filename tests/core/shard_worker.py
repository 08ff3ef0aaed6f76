"""Worker of the two-process (gloo) cache test: imported by spawned processes."""

import os

import torch
import torch.distributed as dist

from udistill.train.distributed import shut_down


def tiny_ensemble():
    """Two seeded 16-channel members (the same weights in every process)."""
    from udistill.config import ModelConfig
    from udistill.core.ensemble import Ensemble
    from udistill.models import build_model

    cfg = ModelConfig(encoder="tu-mobilenetv3_small_100", encoder_weights=None, decoder_channels=16, head_channels=16)
    members = []
    for k in range(2):
        torch.manual_seed(k)
        members.append(build_model(cfg, 3).eval())
    return Ensemble(members)


def build(rank: int, world_size: int, init_file: str, folder: str, n: int, reduction: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    clean = False
    try:
        from tests.toy import ToyDataset
        from udistill.pipeline.targets import build_cache

        build_cache(tiny_ensemble(), ToyDataset(n), folder, batch_size=2, progress=False, reduction=reduction)
        clean = True
    finally:
        shut_down(clean)
