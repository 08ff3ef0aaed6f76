"""Worker of the two-process (gloo) BatchNorm test: imported by spawned processes."""

import os

import torch

from tests.processes import gloo_group


def run(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    # the autograd graph of the cross-rank statistics holds the process group: it is gone once
    # _measure returns, so the group closes in gloo_group and not at the interpreter's exit,
    # where a gloo thread still alive aborts the process (SIGABRT, 1 run in ~10)
    with gloo_group(rank, world_size, init_file):
        _measure(rank, out_dir)


def _measure(rank: int, out_dir: str) -> None:
    from udistill.train.batchnorm import CrossRankBatchNorm2d

    torch.manual_seed(0)
    full = torch.randn(6, 3, 5, 4) * 3 + 1  # the same on every rank
    upstream = torch.randn(6, 3, 5, 4)
    bn = CrossRankBatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    part = slice(0, 2) if rank == 0 else slice(2, 6)  # unequal slices: counts must add up
    x = full[part].clone().requires_grad_(True)
    y = bn(x)
    (y * upstream[part]).sum().backward()
    torch.save(
        {
            "y": y.detach(),
            "grad": x.grad,
            "mean": bn.running_mean,
            "var": bn.running_var,
            "weight_grad": bn.weight.grad,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
