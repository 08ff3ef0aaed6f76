"""Training as users run it: a separate process killed with SIGKILL and rerun; torchrun DDP."""

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from processes import child_env, torchrun_cmd, udistill_cmd

from udistill.models import load_model, read_metadata

pytestmark = pytest.mark.slow  # child processes: SIGKILL during training, torchrun with two gloo ranks

CONFIG = """
name: proc
data:
  dataset: synthetic
  size: [32, 48]
  train_options: {length: 24}
  test_options: {length: 4}
model: {encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16, dropout: 0.1}
train: {epochs: 4, batch_size: 4, lr: 0.05, deterministic: true, progress: false}
teacher: {members: 1}
"""


def _env():
    return child_env()


def _cmd(cfg, out):
    return udistill_cmd("train-teacher", "--config", cfg, "--member", "0", "--set", f"out_dir={out}")


def _weights(out):
    return load_model(Path(out) / "members" / "member-0" / "model.safetensors")[0].state_dict()


def test_sigkill_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    subprocess.run(_cmd(cfg, tmp_path / "ref"), check=True, env=_env(), timeout=300)
    run = tmp_path / "run"
    state = run / "members" / "member-0" / "last.state.safetensors"
    rng = random.Random(0)
    kills = 0
    for _ in range(2):  # kill twice at random moments after an epoch checkpoint exists
        proc = subprocess.Popen(_cmd(cfg, run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        before = state.stat().st_mtime if state.exists() else 0
        while time.time() < deadline and proc.poll() is None:
            if state.exists() and state.stat().st_mtime > before:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    subprocess.run(_cmd(cfg, run), check=True, env=_env(), timeout=300)
    ref, got = _weights(tmp_path / "ref"), _weights(run)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=k)


def test_torchrun_two_gloo_processes_end_with_equal_weights(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("epochs: 4", "epochs: 2"))
    out = tmp_path / "ddp"
    cmd = torchrun_cmd(
        2, "train-teacher", "--config", cfg, "--member", "0", "--set", f"out_dir={out}", "--set", "device=cpu"
    )
    subprocess.run(cmd, check=True, env=_env(), timeout=300, capture_output=True)
    meta = read_metadata(out / "members" / "member-0" / "model.safetensors")
    assert meta["ddp"]["world_size"] == 2
    assert len(set(meta["ddp"]["rank_digests"])) == 1
