"""Cost of a distillation epoch against a baseline epoch, from one run on the same data.

    python benchmarks/distill_epoch_cost.py [--images 96] [--size 96 128] [--members 4] [--head paper|light] \
        [--json benchmarks/results/distill-epoch-cost-cpu.json]

Trains (with `udistill.train.fit`, one epoch each, same data, same batch size, median of
``--repeats``): the baseline with labels; the student with cached teacher targets (cache
built beforehand, its one-off cost printed separately); the student with cached targets on
the training images plus auxiliary images (``distill.auxiliary``, a quarter of the epoch:
the epoch is 4/3 as long); the student with online targets (the F members run on every
batch). Prints seconds per epoch and the ratios. Targets: cached <= 1.3 x baseline, cached
with auxiliary images <= 1.5 x. Member weights are random: the cost of a forward pass does
not depend on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from udistill.config import DistillConfig, ModelConfig, TrainConfig
from udistill.core.ensemble import Ensemble
from udistill.data import build_dataset
from udistill.models import build_model, to_student
from udistill.pipeline.distill import distillation_objective
from udistill.pipeline.targets import build_cache
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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--auxiliary", default="synthetic:harbour,synthetic:suburb,corrupt:pixelate,corrupt:channel-swap")
    ap.add_argument("--auxiliary-ratio", type=float, default=0.25)
    ap.add_argument("--json", default=None)
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

    from udistill.data.auxiliary import with_auxiliary

    mixed = with_auxiliary(data, args.auxiliary.split(","), args.auxiliary_ratio, tuple(args.size))
    mixed = Frozen(mixed)  # pre-rendered too: the rendering is part of the cache build, once
    data = Frozen(data)
    tcfg = TrainConfig(epochs=1, batch_size=args.batch, lr=0.01, progress=False, augment="basic")
    heads = "prediction+uncertainty" if args.head == "paper" else "prediction+uncertainty-light"
    members = []
    for k in range(args.members):
        torch.manual_seed(k)
        members.append(build_model(mcfg, 11).eval())
    ensemble = Ensemble(members)
    dcfg = DistillConfig()
    times: dict[str, list[float]] = {}

    @contextmanager
    def timed(name):
        t0 = time.perf_counter()
        yield
        times.setdefault(name, []).append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.repeats):
            torch.manual_seed(0)
            with timed("baseline"):
                fit(build_model(mcfg, 11), data, None, tcfg, tmp / f"baseline{r}", 11)
            with timed("cache"):
                cache = build_cache(ensemble, data, tmp / f"cache{r}", progress=False)
            with timed("cache_auxiliary"):
                cache_aux = build_cache(ensemble, mixed, tmp / f"cache-aux{r}", progress=False)
            obj = distillation_objective(dcfg)
            for name, dset, targets in (("cached", data, cache), ("cached_auxiliary", mixed, cache_aux)):
                torch.manual_seed(0)
                student = to_student(build_model(mcfg, 11), heads)
                with timed(name):
                    fit(student, dset, None, tcfg, tmp / f"{name}{r}", 11, objective=obj, targets=targets)
            torch.manual_seed(0)
            student = to_student(build_model(mcfg, 11), heads)
            with timed("online"):
                fit(student, data, None, tcfg, tmp / f"o{r}", 11, objective=distillation_objective(dcfg, ensemble))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["baseline"]
    print(
        f"{args.images} images {args.size[0]}x{args.size[1]}, batch {args.batch}, F={args.members}, "
        f"{args.encoder}/{args.channels}, {args.head} head, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print(f"baseline epoch                 {base:7.2f} s")
    print(
        f"distill epoch, cached          {med['cached']:7.2f} s   ratio {med['cached'] / base:.2f} x baseline (target <= 1.3)"
    )
    print(
        f"distill epoch, cached + aux    {med['cached_auxiliary']:7.2f} s   ratio {med['cached_auxiliary'] / base:.2f} x "
        f"baseline (target <= 1.5; {len(mixed) - len(data)} auxiliary images beside {len(data)})"
    )
    print(f"distill epoch, online          {med['online']:7.2f} s   ratio {med['online'] / base:.2f} x baseline")
    print(f"cache build (once)             {med['cache']:7.2f} s   ({med['cache'] / base:.2f} x a baseline epoch)")
    print(f"cache build with aux (once)    {med['cache_auxiliary']:7.2f} s")
    if args.json:
        from udistill.io import atomic_write_json

        path = Path(args.json)
        record = json.loads(path.read_text()) if path.exists() else {}
        record[f"{args.head} head, auxiliary_ratio {args.auxiliary_ratio:g}"] = {
            "images": args.images,
            "auxiliary_images": len(mixed) - len(data),
            "auxiliary": args.auxiliary.split(","),
            "size": args.size,
            "batch": args.batch,
            "members": args.members,
            "encoder": f"{args.encoder}/{args.channels}",
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "seconds": med,
            "ratio_to_baseline": {k: med[k] / base for k in ("cached", "cached_auxiliary", "online", "cache")},
        }
        atomic_write_json(path, record)


if __name__ == "__main__":
    main()
