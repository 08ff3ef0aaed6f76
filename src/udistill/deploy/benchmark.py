"""Latency and throughput of the deployable models, side by side in one process.

Models (built from the config's ``model`` section with random weights: the cost of a
forward pass does not depend on the weights; ``encoder_weights`` is ignored):

- ``baseline``: the single-head network (+ softmax);
- ``student``: the paper's student, two full heads (softmax + sigma);
  (baseline and students honour ``train.channels_last`` and ``train.compile``: ``--set
  train.channels_last=true`` measures the speed options training can use)
- ``student_light``: the shared-trunk student (``model.uncertainty_head: light``);
- ``ensemble``: F = ``teacher.members`` baselines and their softmax statistics
  (:class:`udistill.core.ensemble.Ensemble`: mean, std, mutual information);
- ``mc_dropout``: :class:`udistill.evaluation.mc_dropout.MCDropout`, the definition evaluation uses:
  encoder and decoder once, T = ``evaluate.mc_samples`` seeded dropout samples of the head
  (rate ``model.dropout``, or ``evaluate.mc_dropout`` when that is 0), and their statistics.

Backends: PyTorch eager (``torch.inference_mode``) and onnxruntime (each model exported
with :func:`udistill.deploy.export.export_model`; CUDA provider when the device is a GPU and
onnxruntime has it, else CPU). In onnxruntime the ensemble is F sessions followed by the
same statistics in numpy; MC dropout is PyTorch only (null for onnxruntime).

Protocol (:func:`udistill.models.latency.time_calls`, the one timing function, also used by
evaluation): ``warmup`` untimed calls per model (one for ensemble / MC dropout, which are
already F / T passes), then ``repeats`` timed rounds in which every model runs once in turn
(round robin, so a change of machine load hits all models alike); the median is reported.
Latency uses batch 1 (milliseconds); throughput uses ``batch_size`` (images per second,
median over ``throughput_repeats`` rounds). CUDA timings synchronise before and after.

Result (``run_benchmark``; saved as JSON by the CLI): ``latency_ms.<model>.<backend>``,
``throughput_ips.<model>.<backend>``, ``ratios`` (torch latencies:
``student_over_baseline``, ``student_light_over_baseline``, ``ensemble_over_student``,
``mc_dropout_over_student``), ``ratios_onnxruntime`` (the same with onnxruntime), ``size``,
``device``, ``threads``, ``torch_version``, ... for the first size (plus ``latency_min_ms`` and
``ratios_min[_onnxruntime]``, the fastest run: less sensitive to other processes on a busy
machine than the median); ``by_size["HxW"]`` holds
those per-size entries for every requested size. Missing measurements (a backend not
installed, a model not selected) are null.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import ExperimentConfig, load_config
from ..core.ensemble import Ensemble, RunningMoments
from ..device import resolve_device
from ..errors import UdistillError
from ..evaluation.mc_dropout import MCDropout, mc_dropout_rate
from ..io import atomic_write_json
from ..models.acceleration import compile_model, to_channels_last
from ..models.build import build_model
from ..models.latency import device_sync, time_calls
from .export import OnnxWrapper, export_model

MODELS = ("baseline", "student", "student_light", "ensemble", "mc_dropout")
BACKENDS = ("torch", "onnxruntime")
RATIOS = {
    "student_over_baseline": ("student", "baseline"),
    "student_light_over_baseline": ("student_light", "baseline"),
    "ensemble_over_student": ("ensemble", "student"),
    "mc_dropout_over_student": ("mc_dropout", "student"),
}


def default_num_classes(dataset: str) -> int:
    """Classes of a dataset's label scheme without opening it: 19 for Cityscapes-like and A2D2, else 11."""
    name = dataset.lower()
    return 19 if ("cityscapes" in name or "a2d2" in name) else 11


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu ({cpu})" if cpu else "cpu"


# --- runners ----------------------------------------------------------------------------------


def _torch_runners(
    cfg: ExperimentConfig, num_classes: int, dev: torch.device, models: Sequence[str]
) -> dict[str, Callable]:
    mcfg = dataclasses.replace(cfg.model, encoder_weights=None)
    runners: dict[str, Callable] = {}
    heads = {
        "baseline": "prediction",
        "student": "prediction+uncertainty",
        "student_light": "prediction+uncertainty-light",
    }
    for name, h in heads.items():
        if name in models:
            torch.manual_seed(0)
            wrapped = OnnxWrapper(build_model(mcfg, num_classes, h)).to(dev).eval()
            # train.channels_last / train.compile: the speed options training uses, measured here
            runners[name] = compile_model(to_channels_last(wrapped, cfg.train), cfg.train)
    if "ensemble" in models:
        members = []
        for k in range(cfg.teacher.members):
            torch.manual_seed(k)
            members.append(build_model(mcfg, num_classes, "prediction"))
        runners["ensemble"] = Ensemble(members, temperature=cfg.distill.temperature).to(dev).eval()
    if "mc_dropout" in models:
        # the evaluated definition (udistill.evaluation.mc_dropout): encoder/decoder once, T head samples
        rate = mc_dropout_rate(cfg.model.dropout, cfg.evaluate.mc_dropout)
        torch.manual_seed(0)
        base = build_model(dataclasses.replace(mcfg, dropout=rate), num_classes, "prediction").to(dev).eval()
        runners["mc_dropout"] = MCDropout(base, rate, cfg.evaluate.mc_samples, cfg.evaluate.mc_seed)
    return runners


def _ort_runners(
    cfg: ExperimentConfig, num_classes: int, dev: torch.device, models: Sequence[str], threads: int, workdir: Path
) -> tuple[dict[str, Callable], list[str]]:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    mcfg = dataclasses.replace(cfg.model, encoder_weights=None, dropout=0.0)
    heads = {
        "baseline": "prediction",
        "student": "prediction+uncertainty",
        "student_light": "prediction+uncertainty-light",
    }
    need = {"baseline"} if {"ensemble", "mc_dropout"} & set(models) else set()
    need |= {m for m in models if m in heads}
    files: dict[str, Path] = {}
    for name in heads:
        if name in need:
            torch.manual_seed(0)
            files[name] = export_model(build_model(mcfg, num_classes, heads[name]), workdir / f"{name}.onnx")

    def session(path: Path):
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)

    def single(sess):
        def run(x: np.ndarray):
            return sess.run(None, {"image": x})

        return run

    def stats(sessions: list, passes: int):
        def run(x: np.ndarray):
            mom = RunningMoments()  # the ensemble's own streaming statistics, on the sessions' outputs
            for i in range(passes):
                mom.update(torch.from_numpy(sessions[i % len(sessions)].run(["probabilities"], {"image": x})[0]))
            return mom.result()

        return run

    runners: dict[str, Callable] = {}
    base_sess = session(files["baseline"]) if "baseline" in files else None
    for name in heads:
        if name in models:
            runners[name] = single(base_sess if name == "baseline" else session(files[name]))
    if "ensemble" in models:
        f = cfg.teacher.members
        runners["ensemble"] = stats([session(files["baseline"]) for _ in range(f)], f)
    # MC dropout is not timed here: its definition samples only the head on one feature map
    # (udistill.evaluation.mc_dropout), which one exported graph cannot express; T full passes of the
    # baseline session would time another method (its torch latency is reported)
    return runners, providers


# --- timing -----------------------------------------------------------------------------------


def _ratios(lat: dict[str, dict[str, float | None]], backend: str) -> dict[str, float | None]:
    out = {}
    for key, (a, b) in RATIOS.items():
        va, vb = lat[a][backend], lat[b][backend]
        out[key] = (va / vb) if va is not None and vb else None
    return out


def run_benchmark(
    cfg: ExperimentConfig,
    sizes: Sequence[Sequence[int]] | None = None,
    repeats: int = 20,
    throughput_repeats: int | None = None,
    batch_size: int = 8,
    warmup: int = 3,
    threads: int | None = None,
    models: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    num_classes: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Measure every model with every backend at every size; see the module docstring."""
    models, backends, sizes = _checked_choices(models, backends, sizes or [cfg.data.size or (360, 480)])
    if repeats < 1 or batch_size < 1 or warmup < 0 or (throughput_repeats is not None and throughput_repeats < 1):
        raise UdistillError("--repeats, --throughput-repeats and --batch-size must be >= 1, --warmup >= 0")
    throughput_repeats = throughput_repeats or repeats
    num_classes = num_classes or default_num_classes(cfg.data.dataset)
    dev = resolve_device(device or cfg.device)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    n_threads = torch.get_num_threads()
    say = log or (lambda _s: None)

    ort_version, providers = _onnxruntime_version(backends), None

    sync = device_sync(dev)
    per_size = {}
    try:
        with tempfile.TemporaryDirectory(prefix="udistill-bench-") as tmp:
            runners = {"torch": _torch_runners(cfg, num_classes, dev, models)}
            if "onnxruntime" in backends:
                say("exporting models to ONNX ...")
                runners["onnxruntime"], providers = _ort_runners(cfg, num_classes, dev, models, n_threads, Path(tmp))
            rounds = {"warmup": warmup, "repeats": repeats, "throughput_repeats": throughput_repeats}
            for h, w in sizes:
                chosen = {b: runners[b] for b in backends}
                per_size[f"{h}x{w}"] = _measure_size(chosen, (h, w), dev, batch_size, rounds, sync, say)
    finally:
        torch.set_num_threads(old_threads)

    first = per_size[f"{sizes[0][0]}x{sizes[0][1]}"]
    return {
        **first,
        "device": device_name(dev),
        "threads": n_threads,
        "channels_last": bool(cfg.train.channels_last),
        "compile": cfg.train.compile,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort_version,
        "onnxruntime_providers": providers,
        "num_classes": num_classes,
        "model": dataclasses.asdict(cfg.model),
        "ensemble_members": cfg.teacher.members,
        "mc_samples": cfg.evaluate.mc_samples,
        "repeats": repeats,
        "throughput_repeats": throughput_repeats,
        "batch_size": batch_size,
        "warmup": warmup,
        "sizes": [list(s) for s in sizes],
        "by_size": per_size,
    }


def _checked_choices(models, backends, sizes) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """The requested models, backends and sizes, refused with one line when unknown or malformed."""
    models = list(models or MODELS)
    backends = list(backends or BACKENDS)
    for m in models:
        if m not in MODELS:
            raise UdistillError(f"unknown benchmark model '{m}' (known: {', '.join(MODELS)})")
    for b in backends:
        if b not in BACKENDS:
            raise UdistillError(f"unknown backend '{b}' (known: {', '.join(BACKENDS)})")
    sizes = [tuple(int(v) for v in s) for s in sizes]
    for s in sizes:
        if len(s) != 2 or min(s) < 1:
            raise UdistillError(f"a benchmark size must be two positive integers H W, got {list(s)}")
    return models, backends, sizes


def _onnxruntime_version(backends: list[str]) -> str | None:
    """onnxruntime's version; without it, a warning and ``backends`` loses 'onnxruntime'."""
    if "onnxruntime" not in backends:
        return None
    try:
        import onnxruntime
    except ImportError:
        warnings.warn(
            "onnxruntime is not installed: its columns stay empty (pip install 'udistill[deploy]')",
            UserWarning,
            stacklevel=3,
        )
        backends.remove("onnxruntime")
        return None
    return onnxruntime.__version__


def _measure_size(runners: dict, size: tuple[int, int], dev, batch_size: int, rounds: dict, sync, say) -> dict:
    """Latency (batch 1) and throughput (``batch_size``) of every runner at one input size."""
    h, w = size
    lat = {m: {b: None for b in BACKENDS} for m in MODELS}
    lat_min = {m: {b: None for b in BACKENDS} for m in MODELS}
    thr = {m: {b: None for b in BACKENDS} for m in MODELS}
    for backend, backend_runners in runners.items():
        if backend == "torch":

            def make(n):
                return lambda: torch.rand(n, 3, h, w, device=dev)
        else:

            def make(n):
                return lambda: np.random.default_rng(0).random((n, 3, h, w), dtype=np.float32)

        say(f"{h}x{w} {backend}: latency (batch 1, {rounds['repeats']} rounds) ...")
        t1 = time_calls(backend_runners, make(1), rounds["warmup"], rounds["repeats"], sync)
        say(f"{h}x{w} {backend}: throughput (batch {batch_size}, {rounds['throughput_repeats']} rounds) ...")
        tb = time_calls(backend_runners, make(batch_size), rounds["warmup"], rounds["throughput_repeats"], sync)
        for m in backend_runners:
            lat[m][backend] = t1[m][0] * 1000.0
            lat_min[m][backend] = t1[m][1] * 1000.0
            thr[m][backend] = batch_size / tb[m][0]
    return {
        "size": [h, w],
        "latency_ms": lat,
        "throughput_ips": thr,
        "ratios": _ratios(lat, "torch"),
        "ratios_onnxruntime": _ratios(lat, "onnxruntime"),
        "latency_min_ms": lat_min,
        "ratios_min": _ratios(lat_min, "torch"),
        "ratios_min_onnxruntime": _ratios(lat_min, "onnxruntime"),
    }


def format_table(result: dict) -> str:
    lines = [
        f"device {result['device']}, {result['threads']} thread(s), torch {result['torch_version']}, "
        f"onnxruntime {result['onnxruntime_version']}; median of {result['repeats']} runs (latency, batch 1) / "
        f"{result['throughput_repeats']} runs (throughput, batch {result['batch_size']})"
    ]

    def f(v, fmt):
        return format(v, fmt) if v is not None else "-"

    for key, r in result["by_size"].items():
        lines.append("")
        lines.append(f"size {key}")
        lines.append(f"{'model':<14}{'torch ms':>11}{'ort ms':>11}{'torch img/s':>13}{'ort img/s':>11}")
        for m in MODELS:
            lat, thr = r["latency_ms"][m], r["throughput_ips"][m]
            lines.append(
                f"{m:<14}{f(lat['torch'], '.1f'):>11}{f(lat['onnxruntime'], '.1f'):>11}"
                f"{f(thr['torch'], '.2f'):>13}{f(thr['onnxruntime'], '.2f'):>11}"
            )
        for label, rk in (("torch", "ratios"), ("onnxruntime", "ratios_onnxruntime")):
            parts = [f"{k.replace('_over_', '/')} {f(v, '.3f')}" for k, v in r[rk].items()]
            lines.append(f"ratios ({label}, median): " + ", ".join(parts))
        for label, rk in (("torch", "ratios_min"), ("onnxruntime", "ratios_min_onnxruntime")):
            parts = [f"{k.replace('_over_', '/')} {f(v, '.3f')}" for k, v in r[rk].items()]
            lines.append(f"ratios ({label}, fastest run): " + ", ".join(parts))
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    """What ``udistill benchmark`` was asked (one field per flag; ``cli.py`` builds it)."""

    config: str | None = None
    overrides: list[str] = dataclasses.field(default_factory=list)
    json: str | None = None
    device: str | None = None
    sizes: list | None = None
    repeats: int = 20
    throughput_repeats: int | None = None
    batch_size: int = 8
    warmup: int = 3
    threads: int | None = None
    models: list[str] | None = None
    backends: list[str] | None = None
    classes: int | None = None


def run_benchmark_cli(opts: BenchmarkOptions) -> dict:
    """``udistill benchmark``: build the config, measure, print the table, save the JSON."""
    cfg = load_config(ExperimentConfig, opts.config, list(opts.overrides or []))
    result = run_benchmark(
        cfg,
        sizes=opts.sizes,
        repeats=opts.repeats,
        throughput_repeats=opts.throughput_repeats,
        batch_size=opts.batch_size,
        warmup=opts.warmup,
        threads=opts.threads,
        models=opts.models,
        backends=opts.backends,
        num_classes=opts.classes,
        device=opts.device,
    )
    print(format_table(result))
    path = Path(opts.json or "benchmark.json")
    atomic_write_json(path, result)
    print(f"wrote {path}")
    return result
