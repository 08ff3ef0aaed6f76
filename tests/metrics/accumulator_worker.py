"""Worker of the two-process (gloo) all-reduce test of the metric accumulators: imported by
spawned processes."""

import os

import torch

from tests.processes import gloo_group


def run(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    from test_accumulators import additive, feed

    with gloo_group(rank, world_size, init_file):
        results = {}
        for name, make in additive().items():
            acc = make()
            feed(name, acc, part=rank, parts=world_size)
            results[name] = acc.all_reduce().compute()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
