"""Latency is timed in one place (:mod:`udistill.models.latency`): ``udistill benchmark`` and
evaluation's ``latency_ms`` both call :func:`time_calls`, and nothing else in the package
reads a performance clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from udistill.config import ModelConfig
from udistill.core.ensemble import Ensemble
from udistill.deploy import benchmark
from udistill.evaluation import models as evaluated
from udistill.evaluation.evaluate import EvaluatedModels, measure_latency
from udistill.models import build_model, latency, to_student

SRC = Path(latency.__file__).resolve().parents[1]


def test_time_calls_warms_up_then_interleaves_the_models_round_by_round():
    calls = []
    runners = {name: (lambda x, name=name: calls.append(name)) for name in ("a", "ensemble", "b")}
    out = latency.time_calls(runners, lambda: 0, warmup=2, repeats=3, sync=lambda: None)
    warm, timed = calls[:5], calls[5:]
    assert warm == ["a", "a", "ensemble", "b", "b"]  # one warm-up call for the heavy ensemble
    assert timed == ["a", "ensemble", "b"] * 3
    assert set(out) == set(runners)
    for median, fastest in out.values():
        assert median >= fastest >= 0


def test_benchmark_and_evaluation_use_the_one_timing_function():
    assert benchmark.time_calls is latency.time_calls
    assert evaluated.time_calls is latency.time_calls
    clocks = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "perf_counter" in p.read_text(encoding="utf-8") and p != Path(latency.__file__).resolve()
    ]
    assert clocks == []


def test_evaluation_latency_keeps_its_keys():
    cfg = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)
    torch.manual_seed(0)
    members = [build_model(cfg, 3).eval() for _ in range(2)]
    student = to_student(build_model(cfg, 3), "prediction+uncertainty").eval()
    light = to_student(build_model(cfg, 3), "prediction+uncertainty-light").eval()
    models = EvaluatedModels(members[0], Ensemble(members), student, "toy3", [], student_light=light)
    lat = measure_latency(models, (32, 48), torch.device("cpu"), repeats=2)
    assert list(lat) == [
        "baseline",
        "student",
        "ensemble",
        "student_light",
        "student_light_over_baseline",
        "student_over_baseline",
        "ensemble_over_student",
        "size",
    ]
    assert lat["size"] == [32, 48]
    assert lat["student_over_baseline"] == pytest.approx(lat["student"] / lat["baseline"])
