"""udistill benchmark: a tiny run has every documented key."""

from __future__ import annotations

import importlib.util
import json

from udistill.cli import main
from udistill.deploy.benchmark import MODELS, RATIOS


def test_benchmark_json_has_all_keys(tmp_path, capsys):
    has_ort = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    out = tmp_path / "bench.json"
    args = [
        "benchmark",
        "--set",
        "model.encoder=tu-mobilenetv3_small_100",
        "--set",
        "model.decoder_channels=32",
        "--set",
        "model.head_channels=32",
        "--set",
        "teacher.members=2",
        "--set",
        "evaluate.mc_samples=2",
        "--device",
        "cpu",
        "--size",
        "32",
        "48",
        "--repeats",
        "2",
        "--throughput-repeats",
        "1",
        "--batch-size",
        "2",
        "--warmup",
        "0",
        "--json",
        str(out),
    ]
    if not has_ort:
        args += ["--backends", "torch"]
    assert main(args) == 0
    res = json.loads(out.read_text())
    backends = ["torch", "onnxruntime"] if has_ort else ["torch"]
    for m in MODELS:
        for b in ("torch", "onnxruntime"):
            assert b in res["latency_ms"][m] and b in res["throughput_ips"][m]
        for b in backends:
            if (
                m == "mc_dropout" and b == "onnxruntime"
            ):  # PyTorch only: head-only samples (udistill.evaluation.mc_dropout)
                assert res["latency_ms"][m][b] is None
                continue
            assert res["latency_ms"][m][b] > 0 and res["throughput_ips"][m][b] > 0
    for key in RATIOS:
        assert res["ratios"][key] > 0
        assert key in res["ratios_onnxruntime"]
    for key in ("device", "size", "threads", "torch_version"):
        assert key in res
    assert res["size"] == [32, 48] and list(res["by_size"]) == ["32x48"]
    assert res["channels_last"] is False and res["compile"] is False  # the speed options measured (off)
    assert "student_light" in capsys.readouterr().out
