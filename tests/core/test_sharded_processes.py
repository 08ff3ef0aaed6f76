"""Cache building and evaluation split across two processes (gloo, as under ``torchrun``)
give the bytes and the numbers of one process."""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from processes import torchrun_cmd, udistill_cmd

from tests.core.shard_worker import build, tiny_ensemble
from tests.toy import ToyDataset
from udistill.pipeline.targets import build_cache

pytestmark = pytest.mark.slow  # two gloo processes build a cache and evaluate

CACHE_FILES = ("mean.f16", "std.f16", "crc.u32", "done.u8")


def test_two_processes_build_the_same_cache_bytes(tmp_path):
    n = 7  # four batches of two (the last short): rank 0 computes two, rank 1 two
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same kernels, the same rounding
    try:
        build_cache(tiny_ensemble(), ToyDataset(n), tmp_path / "one", batch_size=2, progress=False, reduction=4)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(build, args=(2, str(tmp_path / "init"), str(tmp_path / "two"), n, 4), nprocs=2, join=True)
    for name in CACHE_FILES:
        one, two = (tmp_path / "one" / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        assert one == two, f"{name} differs between one and two processes"
    assert set((tmp_path / "two" / "done.u8").read_bytes()) == {1}
    assert any((tmp_path / "two" / "mean.f16").read_bytes())  # not two empty files


CONFIG = """
name: shard
device: cpu
data:
  dataset: synthetic
  size: [32, 48]
  test_options: {length: 6}
  shifts: [fog]
model: {encoder: tu-mobilenetv3_small_100, encoder_weights: null, decoder_channels: 16, head_channels: 16, dropout: 0.1}
teacher: {members: 2}
evaluate: {batch_size: 2, mc_samples: 2, bins: 256, examples: 2}
"""


def _make_run(cfg_path: Path, run: Path) -> None:
    """Members and student with seeded random weights, written as the pipeline writes them."""
    from udistill.config import ExperimentConfig, load_config
    from udistill.data.from_config import dataset_for
    from udistill.models import build_model, save_model, to_student
    from udistill.pipeline.teacher import data_meta

    cfg = load_config(ExperimentConfig, str(cfg_path), [f"out_dir={run}"])
    meta = data_meta(dataset_for(cfg.data, "test"))
    for k in range(2):
        torch.manual_seed(10 + k)
        (run / "members" / f"member-{k}").mkdir(parents=True)
        save_model(build_model(cfg.model, 11), run / "members" / f"member-{k}" / "model.safetensors", **meta)
    torch.manual_seed(20)
    (run / "student").mkdir()
    save_model(
        to_student(build_model(cfg.model, 11), "prediction+uncertainty"), run / "student" / "model.safetensors", **meta
    )


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    return env


def _compare(a, b, path="results"):
    """Equal structure; numbers equal to 1e-6; returns how many numbers were compared."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        return sum(_compare(a[k], b[k], f"{path}.{k}") for k in a)
    if isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        return sum(_compare(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, float) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), f"{path}: {a} != {b}"
        return 1
    assert a == b, f"{path}: {a!r} != {b!r}"
    return 1


def test_two_process_evaluation_writes_the_one_process_results(tmp_path):
    two_processes = torchrun_cmd(2, "evaluate")  # skips without torchrun
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    _make_run(cfg, tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    args = ["--config", str(cfg)]
    subprocess.run(
        [*udistill_cmd("evaluate"), *args, "--set", f"out_dir={tmp_path / 'one'}"],
        check=True,
        env=_env(),
        timeout=600,
        capture_output=True,
    )
    res = subprocess.run(
        [*two_processes, *args, "--set", f"out_dir={tmp_path / 'two'}"],
        env=_env(),
        timeout=600,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "evaluation" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "evaluation" / "results.json").read_text())
    for r in (one, two):
        r.pop("latency_ms")  # timings (measured on rank 0 only)
        r["headline"] = [h for h in r["headline"] if "latency" not in h["what"]]
        r["config"].pop("out_dir")
    assert one["images"] == two["images"] == 6 and two["shifts"]["fog"]["images"] == 6
    assert "mc_dropout" in two["miou"]  # MC dropout was sharded too
    assert two["agreement"]["n_sampled"] > 0
    assert _compare(one, two) > 1000
    assert res.stdout.count("report:") == 1  # one rank reports
