"""Worker of the two-process (gloo) BatchNorm test: imported by spawned processes."""

import os

import torch
import torch.distributed as dist

from udistill.train.distributed import shut_down


def run(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    clean = False
    try:
        _measure(rank, out_dir)
        clean = True
    finally:
        # the autograd graph of the cross-rank statistics holds the process group: it is gone
        # once _measure returns, so the group really closes here and not in the interpreter's
        # exit, where a gloo thread still alive aborts the process (SIGABRT, 1 run in ~10)
        shut_down(clean)


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
