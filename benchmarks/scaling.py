"""Scaling of the sharded stages on CPU: teacher-cache building and evaluation with 1 and 2
processes (gloo, as under ``torchrun``), and the wall time and disk of
``configs/cityscapes-paper.yaml`` estimated from measured throughputs.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py [--images 16] [--size 64 96] \
        [--json benchmarks/results/scaling-cpu.json]

A tiny model (MobileNetV3-small, 16 channels, random weights), 2 members, synthetic scenes
rendered once up front (so rendering is not timed), one torch thread per process. Each run
is timed on rank 0 between barriers, after the models are built. The cache bytes and the
evaluation's numbers of the two runs are compared (they must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]


class Frozen(torch.utils.data.Dataset):
    """Pre-rendered items (image, label, name) loaded from one file."""

    def __init__(self, path):
        self.items = torch.load(path)
        from udistill.data.labels import SCHEMES

        self.scheme = SCHEMES["camvid11"]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return dict(self.items[i])

    def fingerprint(self):
        return f"frozen:{len(self.items)}"


def _models():
    from udistill.config import ModelConfig
    from udistill.core.ensemble import Ensemble
    from udistill.evaluation.evaluate import EvaluatedModels
    from udistill.evaluation.mc_dropout import MCDropout
    from udistill.models import build_model, to_student

    cfg = ModelConfig(
        encoder="tu-mobilenetv3_small_100", encoder_weights=None, decoder_channels=16, head_channels=16, dropout=0.1
    )
    members = []
    for k in range(2):
        torch.manual_seed(k)
        members.append(build_model(cfg, 11).eval())
    torch.manual_seed(9)
    student = to_student(build_model(cfg, 11), "prediction+uncertainty").eval()
    ens = Ensemble(members)
    return ens, EvaluatedModels(members[0], ens, student, "camvid11", [], mc=MCDropout(members[0], 0.1, 4, 0))


def worker(rank: int, world: int, init: str, data: str, out: str, batch: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        from udistill.evaluation.evaluate import SetAccumulator, evaluate_set, predictor_table
        from udistill.pipeline.targets import build_cache
        from udistill.sharding import barrier

        ds = Frozen(data)
        ens, models = _models()
        barrier()
        t0 = time.perf_counter()
        build_cache(ens, ds, Path(out) / "cache", batch_size=batch, progress=False, reduction=4)
        barrier()
        t_cache = time.perf_counter() - t0
        acc = SetAccumulator(11, 11, True, 1024, 0, models.methods, models.predictors)
        barrier()
        t0 = time.perf_counter()
        evaluate_set(models, ds, "cpu", acc, batch, None, "scaling", progress=False)
        barrier()
        t_eval = time.perf_counter() - t0
        if rank == 0:
            res = {
                "cache_s": t_cache,
                "evaluate_s": t_eval,
                "predictors": predictor_table(acc),
                "student_scores": acc.scores["student_sigma"]["mean"],
            }
            Path(out, "timing.json").write_text(json.dumps(res))
    finally:
        if world > 1:
            dist.destroy_process_group()


def run(world: int, data: str, batch: int, tmp: Path) -> dict:
    out = tmp / f"p{world}"
    out.mkdir()
    if world == 1:
        worker(0, 1, "", data, str(out), batch)
    else:
        mp.spawn(worker, args=(world, str(tmp / f"init{world}"), data, str(out), batch), nprocs=world, join=True)
    res = json.loads((out / "timing.json").read_text())
    res["cache_bytes"] = {n: (out / "cache" / n).read_bytes() for n in ("mean.f16", "std.f16", "crc.u32")}
    return res


def _close(a, b, tol: float = 1e-6) -> bool:
    """Equal structure, numbers equal to ``tol`` (merged sums round differently)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return (a != a and b != b) or abs(a - b) <= tol * max(1.0, abs(a))
    return a == b


def paper_estimate() -> dict:
    from udistill.config import ExperimentConfig, load_config
    from udistill.pipeline.planning import estimate

    cfg = load_config(ExperimentConfig, str(ROOT / "configs" / "cityscapes-paper.yaml"), [])
    stages, notes = estimate(cfg)
    return {
        "stages": [
            {"name": s.name, "disk_bytes": s.disk, "cpu_thread_seconds": s.seconds, "note": s.note} for s in stages
        ],
        "disk_bytes_total": sum(s.disk for s in stages),
        "cpu_thread_seconds_total": sum(s.seconds for s in stages if s.seconds is not None),
        "notes": notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, nargs=2, default=(64, 96))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from udistill.data import build_dataset

    synth = build_dataset("synthetic", "test", size=tuple(args.size), length=args.images)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        torch.save([{k: synth[i][k] for k in ("image", "label", "name")} for i in range(len(synth))], tmp / "data.pt")
        one, two = run(1, str(tmp / "data.pt"), args.batch, tmp), run(2, str(tmp / "data.pt"), args.batch, tmp)
    same_cache = one.pop("cache_bytes") == two.pop("cache_bytes")
    same_eval = _close(one["predictors"], two["predictors"]) and one["student_scores"] == two["student_scores"]
    n = args.images
    result = {
        "what": "teacher cache (2 members, 1/4 resolution) and evaluation (baseline, 2-member ensemble, MC dropout T=4, student) "
        "of synthetic scenes; tu-mobilenetv3_small_100 with 16 channels, random weights; 1 torch thread per process",
        "command": "OMP_NUM_THREADS=1 python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        "images": n,
        "size": list(args.size),
        "batch": args.batch,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs while measured)",
        "gpu": "none available: GPU figures are not measured",
        "cache_images_per_s": {"1 process": n / one["cache_s"], "2 processes": n / two["cache_s"]},
        "evaluate_images_per_s": {"1 process": n / one["evaluate_s"], "2 processes": n / two["evaluate_s"]},
        "speedup_2_processes": {
            "cache": one["cache_s"] / two["cache_s"],
            "evaluate": one["evaluate_s"] / two["evaluate_s"],
        },
        "identical": {"cache_bytes": same_cache, "evaluation": same_eval},
        "cityscapes_paper_estimate": paper_estimate(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
