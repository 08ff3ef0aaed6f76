"""Training throughput (images/s) on this machine at 176x240: default vs fast encoder.

    python benchmarks/train_throughput.py [--steps 10] [--batch 8] [--size 176 240]

Times forward + backward + optimiser step of the real model on random batches, after two
warm-up steps, with the process's default torch thread count.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from udistill.config import ModelConfig
from udistill.models import build_model

ENCODERS = {
    "default (mobilenet_v2, 256 ch)": ModelConfig(),
    "fast (tu-mobilenetv3_small_100, 256 ch)": ModelConfig(encoder="tu-mobilenetv3_small_100"),
    "fast, 64 ch (camvid-cpu / demo)": ModelConfig(
        encoder="tu-mobilenetv3_small_100", decoder_channels=64, head_channels=64
    ),
}


def measure(cfg: ModelConfig, size, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(cfg, 11).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, *size)
    y = torch.randint(0, 11, (batch, *size))

    def step():
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=[176, 240])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size[0]}x{args.size[1]}"
    )
    res = {}
    for name, cfg in ENCODERS.items():
        ips = measure(cfg, tuple(args.size), args.batch, args.steps)
        res[name] = ips
        print(f"{name:<42} {ips:7.1f} images/s")
    if args.json:
        from udistill.io import atomic_write_json

        atomic_write_json(
            args.json, {"size": args.size, "batch": args.batch, "threads": torch.get_num_threads(), "images_per_s": res}
        )


if __name__ == "__main__":
    main()
