"""The student in the field, measured: predict throughput, memory against frame size, int8
against float32 onnxruntime, fused against full ONNX outputs.

What it prints (one section each):

1. ``udistill predict`` throughput over a folder of 360x480 frames (CamVid's size) with a
   CamVid-sized student (the camvid-cpu architecture: MobileNetV3-small, 64 channels,
   trained at 176x240), end to end (decode, resize, model, upsample, four files written), in
   the default mode (frames resized to the training size) and with ``--native``; plus the
   Predictor API alone (no file I/O).
2. Peak resident memory of one ``udistill predict`` process on one frame of each size up to
   4000x6000 (the child's own ``ru_maxrss``; about 900 MiB of it is importing torch + smp).
3. onnxruntime latency at 360x480, float32 against int8 (static quantisation calibrated on
   synthetic 360x480 frames, every fourth held out for fidelity): label agreement and
   Pearson of U on the held-out frames.
4. Fused against full ONNX outputs at 360x480: latency and bytes leaving the graph per frame.

Without ``--checkpoint`` a randomly initialised student of the camvid-cpu architecture is
used (latency and memory do not depend on the weights; int8 fidelity does, so its numbers
then describe a random model, and the script says so).

Usage: OMP_NUM_THREADS=1 python benchmarks/field_deploy.py [--checkpoint RUN_OR_FILE] [--frames 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SIZES = [(360, 480), (1080, 1920), (2160, 3840), (4000, 6000)]


CAMVID_CPU = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 64, "head_channels": 64, "dropout": 0.1}
PAPER = {"encoder": "mobilenet_v2", "decoder_channels": 256, "head_channels": 256, "dropout": 0.1}


DEFAULT_OOD = {
    "score": "median_plus_min_over_max",
    "thresholds": {"median_plus_min_over_max": 1.0},
    "display_range": [0.0, 0.05],
}


def random_student(path: Path, arch: dict = CAMVID_CPU, ood: dict = DEFAULT_OOD, input_size=(176, 240)) -> None:
    """A seeded, untrained student checkpoint (speed and memory do not depend on training)."""
    import torch

    from udistill.config import ModelConfig
    from udistill.data.labels import CAMVID11
    from udistill.models.build import build_model
    from udistill.models.checkpoint import save_model

    torch.manual_seed(0)
    cfg = ModelConfig(**arch)
    model = build_model(cfg, 11, "prediction+uncertainty").eval()
    save_model(
        model,
        path,
        classes=list(CAMVID11.classes),
        label_scheme="camvid11",
        input_size=None if input_size is None else list(input_size),
        resize="stretch",
        ood=ood,
    )


def synthetic_frames(folder: Path, count: int, size=(360, 480), split: str = "val") -> list[Path]:
    """Rendered driving scenes (udistill's synthetic data) as PNGs."""
    from PIL import Image

    from udistill.data import build_dataset

    folder.mkdir(parents=True, exist_ok=True)
    ds = build_dataset("synthetic", split, size=size, length=count)
    paths = []
    for i in range(count):
        img = (ds[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        paths.append(folder / f"f{i:04d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def big_frame(path: Path, size) -> None:
    """A large structured frame (gradients + waves), cheap to make at any size."""
    from PIL import Image

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 37 + yy / 53)], -1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path, compress_level=1)


# The child reports its own peak (VmHWM of its address space): ru_maxrss from wait4 would
# include the RSS this (large) parent had when it forked the child.
CHILD = """
import sys
from udistill.cli import main
rc = main(sys.argv[1:])
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
sys.stderr.write(f"VmHWM_KB {hwm}\\n")
sys.exit(rc)
"""


def run_predict(ckpt: Path, inputs, out: Path, *extra) -> tuple[float, float, int]:
    """(peak RSS MiB, wall seconds, exit code) of one ``udistill predict`` child process."""
    cmd = [sys.executable, "-c", CHILD, "predict", str(ckpt), *map(str, inputs), "--out", str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        print(proc.stderr, file=sys.stderr)
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM_KB")]
    return (int(peak[0]) / 1024.0 if peak else float("nan")), wall, proc.returncode


def _predict_in_process(ckpt: Path, inputs, out: Path, native: bool) -> tuple[float, int]:
    """(wall seconds, exit code) of the ``udistill predict`` code path, in this process."""
    import contextlib
    import io

    from udistill.deploy.predict.runner import PredictOptions
    from udistill.deploy.predict.runner import run_predict as predict

    args = PredictOptions(
        checkpoint=str(ckpt), inputs=[str(i) for i in inputs], out=str(out), native=native, device="cpu"
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = predict(args)["exit_code"]
    return time.perf_counter() - t0, code


def section_throughput(ckpt: Path, frames: list[Path], tmp: Path) -> None:
    from udistill.data.imageio import read_image
    from udistill.deploy.predict import Predictor

    print(f"\n1. predict throughput, {len(frames)} frames of 360x480, one thread")
    for label, native in (("resize to 176x240 (default)", False), ("--native (model at 360x480)", True)):
        one, _ = _predict_in_process(ckpt, frames[:1], tmp / f"one{int(native)}", native)  # model load + first frame
        full, code = _predict_in_process(ckpt, [frames[0].parent], tmp / f"all{int(native)}", native)
        per = (full - one) / (len(frames) - 1)
        print(
            f"   udistill predict (decode, model, 4 files/frame), {label:<28} {1 / per:6.2f} frames/s "
            f"({1000 * per:6.1f} ms/frame), exit {code}"
        )
    imgs = [read_image(p) for p in frames]
    for label, native in (("resize to 176x240 (default)", False), ("--native (model at 360x480)", True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = Predictor.from_checkpoint(ckpt, device="cpu", native=native)
        pred(imgs[0])
        t0 = time.perf_counter()
        for im in imgs:
            pred(im)
        per = (time.perf_counter() - t0) / len(imgs)
        print(
            f"   Predictor API (no file I/O),                      {label:<28} {1 / per:6.2f} frames/s ({1000 * per:6.1f} ms/frame)"
        )


def section_memory(ckpt: Path, tmp: Path) -> None:
    print("\n2. peak memory of one `udistill predict` process on one frame (default mode: model at 176x240)")
    for h, w in SIZES:
        path = tmp / f"big_{h}x{w}.png"
        big_frame(path, (h, w))
        rss, wall, code = run_predict(ckpt, [path], tmp / f"mem_{h}x{w}")
        print(f"   {h:>5}x{w:<5} {rss:8.1f} MiB  {wall:6.1f} s  exit {code}")
    h, w = SIZES[1]
    rss, wall, code = run_predict(ckpt, [tmp / f"big_{h}x{w}.png"], tmp / "mem_native", "--native")
    print(f"   {h:>5}x{w:<5} {rss:8.1f} MiB  {wall:6.1f} s  exit {code}  (--native, for comparison)")


def _session(path, threads=1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _latency(sess, x, repeats: int) -> tuple[float, int]:
    """(median ms, bytes of all outputs) of one session on input x."""
    out = sess.run(None, {"image": x})
    for _ in range(2):
        sess.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), int(sum(o.nbytes for o in out))


def section_onnx(ckpt: Path, tmp: Path, repeats: int, trained: bool) -> None:
    from udistill.deploy.export import export_onnx
    from udistill.deploy.quantize import quantize_onnx

    calib = tmp / "calib"
    synthetic_frames(calib, 20, split="train")
    from udistill.data.imageio import read_image

    frame = read_image(sorted(calib.glob("*.png"))[0])
    x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], np.float32) / 255  # (1, 3, 360, 480)
    print(f"\n3. onnxruntime at 360x480, one thread, median of {repeats}: float32 vs int8")
    paper = tmp / "paper.safetensors"
    random_student(paper, PAPER)
    for label, model, native in (
        ("graph resizes to 176x240", ckpt, False),
        ("native graph (model at 360x480)", ckpt, True),
        ("paper arch (MobileNetV2/256), resizes", paper, False),
    ):
        fp32 = export_onnx(model, tmp / f"s{int(native)}{model.stem}.onnx", native=native)
        int8 = tmp / f"s{int(native)}{model.stem}.int8.onnx"
        fid = quantize_onnx(fp32, int8, calib)
        t32, _ = _latency(_session(fp32), x, repeats)
        t8, _ = _latency(_session(int8), x, repeats)
        print(
            f"   {label:<34} fp32 {t32:7.1f} ms  int8 {t8:7.1f} ms  speed-up {t32 / t8:4.2f}x  "
            f"label agreement {100 * fid['label_agreement']:6.2f} %  U Pearson {fid['u_pearson']:.4f} "
            f"({fid['holdout_images']} held-out frames)"
        )
    print(
        "   (the paper-architecture line always has random weights; "
        + ("" if trained else "so do the others: ")
        + "fidelity of random weights describes a random model, not a trained student)"
    )
    print(f"\n4. fused vs full outputs at 360x480 (graph resizes to 176x240), median of {repeats}")
    full = export_onnx(ckpt, tmp / "full.onnx")
    fused = export_onnx(ckpt, tmp / "fused.onnx", fused=True)
    for label, path in (
        ("full (probabilities, sigma, score_map)", full),
        ("fused (labels u8, U f16, 5 scores)", fused),
    ):
        ms, nbytes = _latency(_session(path), x, repeats)
        print(f"   {label:<40} {ms:7.1f} ms  {nbytes / 1024:9.1f} KiB/frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--checkpoint", default=None, help="trained student (file, student or run folder); default: random weights"
    )
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "onnx"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="udistill-field-") as t:
        tmp = Path(t)
        if args.checkpoint:
            from udistill.deploy.predict import resolve_checkpoint

            ckpt, trained = resolve_checkpoint(args.checkpoint), True
        else:
            ckpt, trained = tmp / "student.safetensors", False
            random_student(ckpt)
        import platform

        print(
            f"field deployment benchmark: {'trained student ' + str(ckpt) if trained else 'RANDOM-WEIGHT student'} "
            f"(camvid-cpu architecture: tu-mobilenetv3_small_100, 64/64 channels, trained size 176x240, 11 classes); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, torch threads 1, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs"
        )
        if "throughput" not in args.skip:
            section_throughput(ckpt, synthetic_frames(tmp / "frames", args.frames), tmp)
        if "memory" not in args.skip:
            section_memory(ckpt, tmp)
        if "onnx" not in args.skip:
            section_onnx(ckpt, tmp, args.repeats, trained)


if __name__ == "__main__":
    main()
