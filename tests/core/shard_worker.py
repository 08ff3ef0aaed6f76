"""Worker of the two-process (gloo) cache test: imported by spawned processes."""

import torch

from tests.processes import gloo_group


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
    from tests.toy import ToyDataset
    from udistill.pipeline.targets import build_cache

    with gloo_group(rank, world_size, init_file):
        build_cache(tiny_ensemble(), ToyDataset(n), folder, batch_size=2, progress=False, reduction=reduction)
