"""Cost of a distillation epoch against a baseline epoch, from one run on the same data.

    python benchmarks/distill_epoch_cost.py [--images 96] [--size 96 128] [--members 4] [--head paper|light]

Trains (with `udistill.train.fit`, one epoch each, same data, same batch size): the baseline
with labels; the student with cached teacher targets (cache built beforehand, its one-off
cost printed separately); the student with online targets (the F members run on every
batch). Prints seconds per epoch and the ratios. Target: cached <= 1.3 x baseline.
Member weights are random: the cost of a forward pass does not depend on them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from udistill.config import DistillConfig, ModelConfig, TrainConfig
from udistill.data import build_dataset
from udistill.distill import distillation_objective
from udistill.ensemble import Ensemble
from udistill.models import build_model, to_student
from udistill.targets import build_cache
from udistill.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", type=int, nargs=2, default=[96, 128])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--head", choices=["paper", "light"], default="paper")
    ap.add_argument("--encoder", default="tu-mobilenetv3_small_100")
    ap.add_argument("--channels", type=int, default=64)
    args = ap.parse_args()
    mcfg = ModelConfig(encoder=args.encoder, decoder_channels=args.channels, head_channels=args.channels)
    data = build_dataset("synthetic", "train", size=tuple(args.size), length=args.images)
    # pre-render once so the three runs see identical, equally cheap data
    from torch.utils.data import Dataset

    class Frozen(Dataset):
        def __init__(self, ds):
            self.items = [ds[i] for i in range(len(ds))]
            self.scheme = ds.scheme
            self._fp = ds.fingerprint()

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

        def fingerprint(self):
            return self._fp

    data = Frozen(data)
    tcfg = TrainConfig(epochs=1, batch_size=args.batch, lr=0.01, progress=False, augment="basic")
    heads = "prediction+uncertainty" if args.head == "paper" else "prediction+uncertainty-light"
    members = []
    for k in range(args.members):
        torch.manual_seed(k)
        members.append(build_model(mcfg, 11).eval())
    ensemble = Ensemble(members)
    dcfg = DistillConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        fit(build_model(mcfg, 11), data, None, tcfg, tmp / "baseline", 11)
        t_base = time.perf_counter() - t0

        t0 = time.perf_counter()
        cache = build_cache(ensemble, data, tmp / "cache", progress=False)
        t_cache = time.perf_counter() - t0
        torch.manual_seed(0)
        student = to_student(build_model(mcfg, 11), heads)
        t0 = time.perf_counter()
        fit(student, data, None, tcfg, tmp / "cached", 11, objective=distillation_objective(dcfg), targets=cache)
        t_cached = time.perf_counter() - t0

        torch.manual_seed(0)
        student = to_student(build_model(mcfg, 11), heads)
        t0 = time.perf_counter()
        fit(student, data, None, tcfg, tmp / "online", 11, objective=distillation_objective(dcfg, ensemble))
        t_online = time.perf_counter() - t0
    print(
        f"{args.images} images {args.size[0]}x{args.size[1]}, batch {args.batch}, F={args.members}, {args.encoder}/{args.channels}, {args.head} head, {torch.get_num_threads()} threads"
    )
    print(f"baseline epoch            {t_base:7.2f} s")
    print(f"distill epoch, cached     {t_cached:7.2f} s   ratio {t_cached / t_base:.2f} x baseline (target <= 1.3)")
    print(f"distill epoch, online     {t_online:7.2f} s   ratio {t_online / t_base:.2f} x baseline")
    print(f"cache build (once)        {t_cache:7.2f} s   ({t_cache / t_base:.2f} x a baseline epoch)")


if __name__ == "__main__":
    main()
