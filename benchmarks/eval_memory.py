"""Peak memory of `udistill evaluate` over 10 vs 100 synthetic test images.

    python benchmarks/eval_memory.py [--size 96 128]

Builds a small run (random-weight members and student: memory does not depend on the
weights), then evaluates it twice in fresh processes, on 10 and on 100 test images, and
prints each peak RSS. Pixel metrics are streamed into fixed histograms, so the two figures
should be close: only the per-image scores (a few floats per image) grow with the data.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from udistill.config import ModelConfig
from udistill.models import build_model, save_model, to_student

CHILD = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs=2, default=[96, 128])
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100])
    args = ap.parse_args()
    mcfg = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=64, head_channels=64, dropout=0.1)
    meta = {"classes": ["c"] * 11, "label_scheme": "camvid11"}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for k in range(2):
            torch.manual_seed(k)
            save_model(build_model(mcfg, 11), run / "members" / f"member-{k}" / "model.safetensors", **meta)
        save_model(
            to_student(build_model(mcfg, 11), "prediction+uncertainty"), run / "student" / "model.safetensors", **meta
        )
        cfg = {
            "out_dir": str(run),
            "data": {
                "dataset": "synthetic",
                "size": args.size,
                "test_options": {"length": max(args.counts)},
                "shifts": [],
            },
            "model": {"encoder": mcfg.encoder, "decoder_channels": 64, "head_channels": 64, "dropout": 0.1},
            "teacher": {"members": 2},
            "evaluate": {"mc_samples": 2},
        }
        cfg_path = Path(tmp) / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        print(f"udistill evaluate, synthetic {args.size[0]}x{args.size[1]}, 2 members + MC dropout (T=2) + student")
        for n in args.counts:
            cmd = [
                sys.executable,
                "-c",
                CHILD,
                sys.executable,
                "-m",
                "udistill",
                "evaluate",
                "--config",
                str(cfg_path),
                "--set",
                f"evaluate.max_images={n}",
                "--set",
                f"data.test_options.length={n}",
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(f"{n:>5} images: peak RSS {int(out) / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
