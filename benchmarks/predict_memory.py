"""Peak memory of ``udistill predict`` over a folder of 50 vs 500 small images.

Memory must not grow with the number of images (the command streams: one image in, its
four files out). This script builds a tiny random-weight student, writes synthetic PNGs
into a temporary folder and runs ``python -m udistill predict`` in a subprocess per folder,
reading that child's peak resident set size from ``os.wait4`` (the child's own rusage;
``ru_maxrss`` is in KiB on Linux).

Usage: python benchmarks/predict_memory.py [--counts 50 500] [--size 64 96] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_checkpoint(path: Path) -> None:
    """A small random student at the frames' own size (no input_size: nothing is resized)."""
    from field_deploy import random_student

    from udistill.metrics.image import IMAGE_SCORES

    arch = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 32, "head_channels": 32}
    ood = {"score": "median_plus_min_over_max", "thresholds": {s: 0.5 for s in IMAGE_SCORES}}
    random_student(path, arch, ood, input_size=None)


def make_images(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        phase = rng.uniform(0, 6.28)
        img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5 + yy / 7 + phase)], -1)
        img = (img + rng.normal(0, 0.05, img.shape)).clip(0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i:05d}.png")


def peak_rss_of_predict(ckpt: Path, folder: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of one ``udistill predict`` child process."""
    cmd = [sys.executable, "-m", "udistill", "predict", str(ckpt), str(folder), "--out", str(out)]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        print(err, file=sys.stderr)
    return usage.ru_maxrss / 1024.0, wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"))
    ap.add_argument("--keep", default=None, help="work in this folder instead of a temporary one")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="udistill-mem-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        ckpt = root / "student.safetensors"
        make_checkpoint(ckpt)
        rows = []
        for n in args.counts:
            folder = root / f"images-{n}"
            make_images(folder, n, tuple(args.size))
            mib, wall, rc = peak_rss_of_predict(ckpt, folder, root / f"out-{n}")
            if rc != 0:
                print(f"udistill predict failed on {n} images (exit {rc})", file=sys.stderr)
                return 1
            written = sum(1 for _ in (root / f"out-{n}").glob("*.json"))
            rows.append((n, mib, wall, written))
    print(f"udistill predict, {args.size[0]}x{args.size[1]} PNGs, tiny student (tu-mobilenetv3_small_100, 32/32)")
    print(f"{'images':>7} {'peak RSS MiB':>13} {'wall s':>8} {'ms/img':>8} {'json written':>13}")
    for n, mib, wall, written in rows:
        print(f"{n:>7} {mib:>13.1f} {wall:>8.1f} {1000 * wall / n:>8.1f} {written:>13}")
    if len(rows) > 1:
        print(f"peak RSS ratio {rows[-1][0]} vs {rows[0][0]} images: {rows[-1][1] / rows[0][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
