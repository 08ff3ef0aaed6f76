"""``udistill demo``: the whole pipeline on built-in synthetic data while you watch: teacher
members (side by side, one thread each), baseline (member 0), student, the alarm's
calibration, evaluation on validation and test sets and every shift, the report and its
headline. Measured in a clean clone on a quiet 2-core CPU: 230 s (:func:`measured_duration`
reads ``benchmarks/results/demo-time.json``, written by ``benchmarks/demo_time.py``; a test
keeps this figure equal to it). Rerunning reuses finished stages.

The settings are ``configs/synthetic.yaml`` (shipped inside the package as
``udistill/presets/synthetic.yaml``) with :data:`DEMO_OVERRIDES`: the CE-only control is left
to ``udistill experiment``. ``--set`` overrides any key.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

from ..config import ExperimentConfig, load_config
from ..io import atomic_write_json
from ..progress import StageClock
from .experiment import run_experiment

# stages the demo leaves to `udistill experiment --config configs/synthetic.yaml`
DEMO_OVERRIDES = ["distill.control=false"]
TIMINGS_FILE = "demo-time.json"


def preset_path(name: str = "synthetic") -> Path:
    return Path(str(resources.files("udistill") / "presets" / f"{name}.yaml"))


def measured_timings() -> dict:
    """The demo's measured timings shipped with the package (``presets/demo-time.json``, a
    copy of ``benchmarks/results/demo-time.json``); {} when none was measured."""
    path = Path(str(resources.files("udistill") / "presets" / TIMINGS_FILE))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def measured_duration() -> str:
    """The demo's measured wall time as the help texts quote it."""
    t = measured_timings()
    if not t.get("total_s"):
        return "a few minutes (not yet measured)"
    cores = t.get("machine", {}).get("cores", "?")
    return f"{t['total_s']:.0f} s on a {cores}-core CPU (measured, benchmarks/results/demo-time.json)"


def demo_config(out: str | Path, overrides: list[str] | None = None, device: str | None = None) -> ExperimentConfig:
    extra = [f"out_dir={out}", *DEMO_OVERRIDES, *(overrides or [])]
    if device:
        extra.append(f"device={device}")
    return load_config(ExperimentConfig, preset_path("synthetic"), extra)


def run_demo(out: str | Path = "runs/demo", overrides: list[str] | None = None, device: str | None = None) -> dict:
    """Run the demo; writes ``<out>/demo-time.json`` (total and per-stage seconds, load)."""
    cfg = demo_config(out, overrides, device)
    expected = measured_timings().get("stages_s") or {}
    print(
        f"udistill demo: {cfg.teacher.members} teacher members, student, calibration, evaluation -> {cfg.out_dir}"
        f" (takes {measured_duration()})"
    )
    clock = StageClock(expected)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    results = run_experiment(cfg, clock=clock)
    total = time.time() - t0
    atomic_write_json(
        Path(cfg.out_dir) / TIMINGS_FILE,
        {
            "total_s": round(total, 1),
            "stages_s": {k: round(v, 1) for k, v in clock.times.items()},
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
    )
    print(f"demo finished in {total:.0f} s; report: {Path(cfg.out_dir) / 'evaluation' / 'report.html'}")
    return results
