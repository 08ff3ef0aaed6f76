"""``udistill demo``: the whole pipeline on built-in synthetic data in about ten minutes on a
2-core CPU: teacher members, baseline (member 0), student, evaluation on the clean test set
and every shift, the report, and a short table. Rerunning reuses finished stages.

The settings are ``configs/synthetic.yaml`` (shipped inside the package as
``udistill/presets/synthetic.yaml``); ``--set`` overrides any key.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from .config import ExperimentConfig, load_config


def preset_path(name: str = "synthetic") -> Path:
    return Path(str(resources.files("udistill") / "presets" / f"{name}.yaml"))


def demo_config(out: str | Path, overrides: list[str] | None = None, device: str | None = None) -> ExperimentConfig:
    extra = [f"out_dir={out}"] + list(overrides or [])
    if device:
        extra.append(f"device={device}")
    return load_config(ExperimentConfig, preset_path("synthetic"), extra)


def run_demo(out: str | Path = "runs/demo", overrides: list[str] | None = None, device: str | None = None) -> dict:
    from .experiment import run_experiment

    cfg = demo_config(out, overrides, device)
    t0 = time.time()
    print(f"udistill demo: {cfg.teacher.members} teacher members, student, evaluation -> {cfg.out_dir}")
    results = run_experiment(cfg)
    print(f"demo finished in {time.time() - t0:.0f} s")
    return results
