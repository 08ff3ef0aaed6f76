"""Latency of the single-pass methods against the baseline, batch 1 and batch 8, PyTorch and
onnxruntime (when installed): the cost side of the single-pass comparison (issue 20).

    python benchmarks/single_pass_latency.py                      # both shipped configs
    python benchmarks/single_pass_latency.py --config configs/synthetic.yaml --repeats 5 --out /tmp/x.json

Every variant returns what a deployment reads, class probabilities (N, C, H, W) and one
per-pixel uncertainty map (N, H, W), so the ratios compare like with like:

- ``baseline``: member 0, softmax, 1 − max p;
- ``temperature_scaled``: the same at a temperature (one division);
- ``feature_density``: the baseline plus the density of its decoder features (shared
  covariance, log-sum-exp over classes; :mod:`udistill.single_pass.feature_density`);
- ``multi_head``: the trunk once, F = ``--heads`` paper heads (3x3 conv-BN-ReLU + 1x1), mean
  and mean std; ``multi_head_shared``: F 1x1 classifiers on member 0's shared 3x3 block
  (``single_pass.multi_head_channels: 0``);
- ``student``: the paper's two-headed student (for reference).

Weights are random (a forward pass costs the same whatever the weights). Timing follows
``udistill benchmark``: warm-up calls, then rounds in which every variant runs once in turn
(round robin, so machine load hits all alike); medians (and the fastest run) are reported.
Targets (issue 20): feature_density ≤ 1.2×, multi_head ≤ 1.5× the baseline at F = 4.
Writes ``benchmarks/results/single-pass-latency-cpu.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from machine import commit
from torch import nn

from udistill.config import ExperimentConfig, load_config
from udistill.deploy.benchmark import device_name
from udistill.io import atomic_write_json
from udistill.models.build import build_model
from udistill.single_pass.feature_density import GaussianDensity
from udistill.single_pass.multi_head import MultiHeadPredictor, build_multi_head

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ["configs/synthetic.yaml", "configs/camvid-cpu.yaml"]
TARGETS = {"feature_density": 1.2, "multi_head": 1.5}


class Baseline(nn.Module):
    """Softmax (at ``temperature``) and 1 − max p. Shape: (N, 3, H, W) -> (N, C, H, W), (N, H, W)."""

    def __init__(self, model, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x):
        logits = self.model(x).logits
        p = torch.softmax(logits / self.temperature if self.temperature != 1.0 else logits, 1)
        return p, 1 - p.max(1).values


class Density(nn.Module):
    def __init__(self, model, density):
        super().__init__()
        self.model, self.density = model, density

    def forward(self, x):
        feats, size = self.model.padded_features(x)
        p = torch.softmax(self.model.heads_forward(feats, size).logits, 1)
        return p, self.density(feats, size)


class Heads(nn.Module):
    def __init__(self, predictor: MultiHeadPredictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, x):
        feats, size = self.predictor.model.padded_features(x)
        out = self.predictor.heads.predict(feats, size)
        return out.probs, out.spread.mean(1)


class Student(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return torch.softmax(out.logits, 1), out.sigma.mean(1)


def random_density(dim: int, classes: int) -> GaussianDensity:
    """A density of the fitted shapes (shared covariance): its cost does not depend on values."""
    gen = torch.Generator().manual_seed(0)
    w = torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]
    return GaussianDensity(
        torch.randn(classes, dim, generator=gen),
        torch.full((classes,), -np.log(classes)),
        torch.arange(classes),
        w[None],
        torch.zeros(1),
    )


def variants(cfg: ExperimentConfig, classes: int, heads: int) -> dict[str, nn.Module]:
    mcfg = dataclasses.replace(cfg.model, encoder_weights=None, dropout=0.0)
    torch.manual_seed(0)
    base = build_model(mcfg, classes).eval()
    out = {
        "baseline": Baseline(base),
        "temperature_scaled": Baseline(base, 1.5),
        "feature_density": Density(base, random_density(mcfg.decoder_channels, classes)),
        "multi_head": Heads(MultiHeadPredictor(base, build_multi_head(base, heads, None).eval())),
        "multi_head_shared": Heads(MultiHeadPredictor(base, build_multi_head(base, heads, 0).eval())),
        "student": Student(build_model(mcfg, classes, "prediction+uncertainty").eval()),
    }
    return {k: v.eval() for k, v in out.items()}


def onnx_runners(models: dict[str, nn.Module], size, threads: int, tmp: Path) -> dict:
    """Each variant exported to ONNX (opset 17) and run by onnxruntime on the CPU; a variant
    that does not export is left out (null in the results)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    runners = {}
    for name, m in models.items():
        path = tmp / f"{name}.onnx"
        try:
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                m,
                torch.rand(1, 3, *size),
                str(path),
                input_names=["image"],
                output_names=["probabilities", "uncertainty"],
                dynamic_axes={"image": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001 - reported, the other variants still run
            print(f"  {name}: ONNX export failed ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        runners[name] = lambda x, s=sess: s.run(None, {"image": x})
    return runners


def round_robin(runners: dict, x, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, min) milliseconds per call, every variant once per round."""
    with torch.inference_mode():
        for fn in runners.values():
            for _ in range(warmup):
                fn(x)
        times = {n: [] for n in runners}
        for _ in range(repeats):
            for n, fn in runners.items():
                t0 = time.perf_counter()
                fn(x)
                times[n].append((time.perf_counter() - t0) * 1000)
    return {n: (statistics.median(t), min(t)) for n, t in times.items()}


def measure(cfg_path: str, args, threads: int) -> dict:
    cfg = load_config(ExperimentConfig, ROOT / cfg_path if not Path(cfg_path).is_absolute() else cfg_path, args.set)
    size = tuple(args.size or cfg.data.size or (360, 480))
    models = variants(cfg, args.classes, args.heads)
    backends = {"torch": {n: m for n, m in models.items()}}
    with tempfile.TemporaryDirectory(prefix="udistill-sp-") as tmp:
        if "onnxruntime" in args.backends:
            try:
                backends["onnxruntime"] = onnx_runners(models, size, threads, Path(tmp))
            except ImportError:
                print("  onnxruntime not installed: its columns stay null")
        lat = {n: {b: {} for b in ("torch", "onnxruntime")} for n in models}
        fastest = {n: {b: {} for b in ("torch", "onnxruntime")} for n in models}
        for backend, runners in backends.items():
            for bs in args.batch_sizes:
                x = (
                    torch.rand(bs, 3, *size)
                    if backend == "torch"
                    else np.random.default_rng(0).random((bs, 3, *size), dtype=np.float32)
                )
                print(f"  {cfg_path} {size[0]}x{size[1]} {backend} batch {bs} ...", flush=True)
                for n, (med, lo) in round_robin(runners, x, args.warmup, args.repeats).items():
                    lat[n][backend][f"b{bs}"] = med
                    fastest[n][backend][f"b{bs}"] = lo
    ratios = {
        n: {
            b: {k: (v / lat["baseline"][b][k]) if lat["baseline"][b].get(k) else None for k, v in by.items()}
            for b, by in per.items()
        }
        for n, per in lat.items()
    }
    met = {
        n: {b: {k: r <= limit for k, r in ratios[n][b].items() if r is not None} for b in ratios[n]}
        for n, limit in TARGETS.items()
    }
    return {
        "size": list(size),
        "model": dataclasses.asdict(cfg.model),
        "heads": args.heads,
        "num_classes": args.classes,
        "latency_ms": lat,
        "latency_min_ms": fastest,
        "ratios": ratios,
        "targets": {"limits": TARGETS, "met": met},
    }


def table(name: str, r: dict) -> str:
    lines = [f"{name}: {r['size'][0]}x{r['size'][1]}, F = {r['heads']}, ratio to the baseline (median ms)"]
    keys = sorted({k for per in r["latency_ms"].values() for by in per.values() for k in by})
    head = "".join(f"{b[:5]} {k:>4}".rjust(22) for b in ("torch", "onnxruntime") for k in keys)
    lines.append(f"{'variant':<20}{head}")
    for n, per in r["latency_ms"].items():
        cells = []
        for b in ("torch", "onnxruntime"):
            for k in keys:
                ms, ratio = per[b].get(k), r["ratios"][n][b].get(k)
                cells.append((f"{ms:.1f} ms {ratio:.2f}x" if ms is not None else "-").rjust(22))
        lines.append(f"{n:<20}{''.join(cells)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config",
        action="append",
        help=f"config(s) to take the model and size from (default: {' '.join(DEFAULT_CONFIGS)})",
    )
    ap.add_argument("--set", action="append", default=[], help="dotted.key=value override of every config")
    ap.add_argument("--size", type=int, nargs=2, help="H W (default: each config's data.size)")
    ap.add_argument("--heads", type=int, default=4, help="F, the multi-head ensemble's heads")
    ap.add_argument("--classes", type=int, default=11)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "single-pass-latency-cpu.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    results = {}
    for c in args.config or DEFAULT_CONFIGS:
        results[Path(c).stem] = r = measure(c, args, threads)
        print(table(Path(c).stem, r))
    out = {
        "configs": results,
        "device": device_name(torch.device("cpu")),
        "threads": threads,
        "torch_version": torch.__version__,
        "onnxruntime_version": _ort_version(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "overrides": args.set,
        "commit": commit(),
        "command": "python benchmarks/single_pass_latency.py",
    }
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
