"""Worker of the two-process (gloo) all-reduce test of the metric accumulators: imported by
spawned processes."""

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
        from test_accumulators import additive, feed

        results = {}
        for name, make in additive().items():
            acc = make()
            feed(name, acc, part=rank, parts=world_size)
            results[name] = acc.all_reduce().compute()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        clean = True
    finally:
        shut_down(clean)
