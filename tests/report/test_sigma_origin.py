"""The shipped distillation recipe is the one whose σ was shown, on faded and blank frames,
to take its out-of-distribution response from the teacher and not from its bias
(benchmarks/sigma_origin.py, udistill.metrics.fade)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from udistill.config import DistillConfig, ExperimentConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "sigma-origin-synthetic.json"
PRESET = ROOT / "src" / "udistill" / "presets" / "synthetic.yaml"


def _distill(overrides: list[str]) -> DistillConfig:
    return load_config(ExperimentConfig, PRESET, overrides).distill


def test_the_shipped_recipe_is_the_one_whose_sigma_follows_the_teacher():
    results = {r["variant"]: r for r in json.loads(RESULTS.read_text())["results"]}
    shipped = load_config(ExperimentConfig, PRESET, []).distill
    keys = ("recipe", "sigma_init", "sigma_loss", "views", "auxiliary", "auxiliary_ratio", "alpha", "temperature")
    same = [
        name
        for name, r in results.items()
        if all(getattr(_distill(r["overrides"]), k) == getattr(shipped, k) for k in keys)
    ]
    assert same, "the shipped demo recipe was never put through benchmarks/sigma_origin.py"
    for name in same:
        v = results[name]["verdict"]
        assert v["verdict"] == "teacher", f"{name}: σ on faded frames follows its initialisation"
        assert v["follows_teacher"] and v["origin"] == "teacher"
    # the probe tells the designs apart: σ started at the teacher's scale falls back to it
    assert results["bias"]["verdict"]["verdict"] == "initialisation"


def test_the_camvid_configs_use_the_recipe_chosen_on_the_demo():
    shipped = load_config(ExperimentConfig, PRESET, []).distill
    for name in ("camvid-cpu.yaml", "camvid-gpu.yaml"):
        d = yaml.safe_load((ROOT / "configs" / name).read_text())["distill"]
        assert d.get("alpha") == shipped.alpha and d.get("auxiliary_ratio") == shipped.auxiliary_ratio
        assert set(shipped.auxiliary) <= set(d.get("auxiliary", [])), name
        assert not d.get("light_student", False) and d.get("sigma_init") in (None, "none"), name
