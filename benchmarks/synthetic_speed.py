"""Generation speed of the synthetic dataset, clean and under each shift, on one CPU core.

    python benchmarks/synthetic_speed.py [--count 40] [--size 360 480]

Times ``SyntheticDataset.load`` (render + shift, uint8 arrays; no tensor conversion) and
prints images per second and milliseconds per image as a table.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from udistill.data.synthetic import KNOWN_SHIFTS, SyntheticDataset  # noqa: E402


def measure(shift, count: int, size) -> float:
    ds = SyntheticDataset("train", shift=shift, size=size, length=count + 1)
    ds.load(count)  # warm-up (imports, caches)
    start = time.perf_counter()
    for i in range(count):
        ds.load(i)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="images per setting (default 40)")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(args.size)
    print(f"synthetic generation, {size[0]}x{size[1]}, one core, {args.count} images each")
    print(f"{'shift':<10} {'images/s':>9} {'ms/image':>9}")
    for shift in (None,) + KNOWN_SHIFTS:
        sec = measure(shift, args.count, size)
        print(f"{shift or 'clean':<10} {1.0 / sec:>9.1f} {1000.0 * sec:>9.1f}")


if __name__ == "__main__":
    main()
