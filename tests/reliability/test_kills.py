"""SIGKILL at random moments in every long stage, then the same command again.

Teacher training, teacher-cache building and distillation are each killed at >= 3 random
moments (counted only when the kill really interrupted the running stage) and rerun; the
interrupted run must end with bit-identical member and student weights to an uninterrupted
run (deterministic mode), every model/state file must load (checksums verified), the cache
must load with every entry's CRC verified, and no temporary file may be left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from udistill.models import load_model, load_state
from udistill.pipeline.targets import CachedTargets

pytestmark = pytest.mark.slow  # kill-and-resume: SIGKILL during every stage, then reruns

MIN_KILLS = 3
MAX_ATTEMPTS = 12  # per stage
POLL = 0.004
TRAIN_LENGTH = 192  # cache: 48 batches of 4, long enough to be hit 3 times; training is capped below
CONFIG = """\
name: kills
out_dir: {out}
device: cpu
data:
  dataset: synthetic
  size: [32, 48]
  train_options: {{length: {length}}}
  test_options: {{length: 4}}
model: {{encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16, dropout: 0.1}}
train: {{epochs: 3, batch_size: 4, max_iters_per_epoch: 6, deterministic: true, progress: false}}
teacher: {{members: 2}}
distill: {{targets: cached}}
evaluate: {{mc_samples: 2}}
"""
MEMBERS = (0, 1)
EPOCHS = 3


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    return env


def _cmd(cfg: Path, stage: str) -> list[str]:
    base = [sys.executable, "-m", "udistill"]
    if stage == "teacher":
        return base + ["train-teacher", "--config", str(cfg), "--members", "0-1"]
    return base + ["distill", "--config", str(cfg)]


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _epochs_done(folder: Path) -> int:
    """Finished epochs of the training in ``folder`` (rows of metrics.csv; all when the model exists)."""
    if (folder / "model.safetensors").exists():
        return EPOCHS
    try:
        return max(0, len((folder / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _done_flags(cache: Path) -> np.ndarray | None:
    try:
        return np.fromfile(cache / "done.u8", dtype=np.uint8)
    except (FileNotFoundError, ValueError):
        return None


class Layout:
    def __init__(self, out: Path):
        self.out = out
        self.members = [out / "members" / f"member-{k}" for k in MEMBERS]
        self.student = out / "student"

    @property
    def cache(self) -> Path:
        """The run's teacher cache (``teacher-cache``, or ``teacher-cache-views<K>`` for the
        default recipe's perturbed views: see udistill.pipeline.distill.cache_folder)."""
        found = sorted(self.student.glob("teacher-cache*"))
        return found[0] if found else self.student / "teacher-cache"

    def teacher_done(self) -> bool:
        return all((m / "model.safetensors").exists() for m in self.members)

    def teacher_remaining(self) -> float:
        return 1.0 - sum(_epochs_done(m) for m in self.members) / (EPOCHS * len(self.members))

    def cache_done(self) -> bool:
        flags = _done_flags(self.cache)
        return flags is not None and (self.cache / "meta.json").exists() and flags.size > 0 and bool(flags.all())

    def cache_remaining(self) -> float:
        flags = _done_flags(self.cache)
        if flags is None or flags.size == 0:
            return 1.0
        return 1.0 - float(flags.mean())

    def distill_done(self) -> bool:
        return (self.student / "model.safetensors").exists()

    def distill_remaining(self) -> float:
        return 1.0 - _epochs_done(self.student) / EPOCHS


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 300) -> bool:
    """Poll until ``condition()`` or the process exits; True if the condition came first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(POLL)
    proc.kill()  # leave no training process behind on a failure
    proc.wait()
    raise TimeoutError("stage did not start in time")


# --- the reference run: also measures how long each stage takes -------------------------------


def _reference(cfg: Path, lay: Layout) -> dict[str, float]:
    durations = {}
    proc = subprocess.Popen(_cmd(cfg, "teacher"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(proc, lambda: (lay.members[0] / "config.yaml").exists())
    t0 = time.time()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    durations["teacher"] = time.time() - t0

    proc = subprocess.Popen(_cmd(cfg, "distill"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(proc, lambda: (lay.cache / "meta.json").exists())
    t0 = time.time()
    _wait_for(proc, lay.cache_done)
    durations["cache"] = time.time() - t0
    _wait_for(proc, lambda: (lay.student / "config.yaml").exists())
    t0 = time.time()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    durations["distill"] = time.time() - t0
    return durations


# --- one kill ----------------------------------------------------------------------------------


def _attempt(cfg: Path, lay: Layout, stage: str, duration: float, rng: random.Random, log: list) -> str | None:
    """Start the stage's command, wait until it is working on the stage, sleep a random time
    (a fraction of what is left of the stage), SIGKILL it. Returns the stage the kill
    interrupted ("teacher", "cache", "distill") or None when the process had already finished."""
    if stage == "teacher":
        marks = {m: _mtime(m / "config.yaml") for m in lay.members}
        started = lambda: any(_mtime(m / "config.yaml") > t for m, t in marks.items())  # noqa: E731
        remaining = lay.teacher_remaining()
    elif stage == "cache":
        flags = _done_flags(lay.cache)
        before = -1 if flags is None or not (lay.cache / "meta.json").exists() else int(flags.sum())
        # first run: the cache's meta.json appears; rerun: the first batch of this process lands
        started = (
            (lambda: (lay.cache / "meta.json").exists())
            if before < 0
            else (lambda: _done_flags(lay.cache) is not None and int(_done_flags(lay.cache).sum()) > before)
        )
        remaining = lay.cache_remaining()
    else:
        mark = _mtime(lay.student / "config.yaml")  # written when training starts (cache complete)
        started = lambda: _mtime(lay.student / "config.yaml") > mark  # noqa: E731
        remaining = lay.distill_remaining()
    proc = subprocess.Popen(_cmd(cfg, stage), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(proc, started)
    if stage == "cache":
        # a resumed cache signals its start only after its first batch: what is left now
        remaining = lay.cache_remaining()
    delay = rng.uniform(0.0, 0.6 * remaining * duration)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    killed = proc.returncode == -signal.SIGKILL
    if not killed:
        assert proc.returncode == 0, err.decode()
    hit = None
    if killed:
        if stage == "teacher" and not lay.teacher_done():
            hit = "teacher"
        elif stage != "teacher" and not lay.cache_done():
            hit = "cache"
        elif stage != "teacher" and not lay.distill_done():
            hit = "distill"
    log.append(
        {
            "command": stage if stage == "teacher" else "distill",
            "aimed_at": stage,
            "delay_s": round(delay, 3),
            "interrupted": hit,
            "returncode": proc.returncode,
            "state": {
                "teacher_epochs": [_epochs_done(m) for m in lay.members],
                "cache_done": None if _done_flags(lay.cache) is None else int(_done_flags(lay.cache).sum()),
                "student_epochs": _epochs_done(lay.student),
            },
        }
    )
    print(f"kill {len(log)}: aimed at {stage}, after {delay:.2f}s -> interrupted {hit}; {log[-1]['state']}")
    return hit


def _plant_stale_tmp(folder: Path, name: str) -> None:
    """What a SIGKILL between atomic_path's mkstemp and os.replace leaves behind."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".{name}.planted.tmp").write_bytes(b"half-written")


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def test_sigkill_every_stage_then_rerun_gives_the_uninterrupted_result(tmp_path, capsys):
    a, b = Layout(tmp_path / "A"), Layout(tmp_path / "B")
    cfg_a, cfg_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    cfg_a.write_text(CONFIG.format(out=a.out, length=TRAIN_LENGTH))
    cfg_b.write_text(CONFIG.format(out=b.out, length=TRAIN_LENGTH))
    started = time.time()
    durations = _reference(cfg_a, a)
    print(f"reference stage durations (s): {durations}")

    rng = random.Random(20240611)
    kills = {"teacher": 0, "cache": 0, "distill": 0}
    log: list = []
    for stage, done in (("teacher", b.teacher_done), ("cache", b.cache_done), ("distill", b.distill_done)):
        attempts = 0
        while kills[stage] < MIN_KILLS:
            assert not done(), f"{stage} finished after only {kills[stage]} kill(s); see {log}"
            attempts += 1
            assert attempts <= MAX_ATTEMPTS, f"could not interrupt {stage} {MIN_KILLS} times: {log}"
            hit = _attempt(cfg_b, b, stage, durations[stage], rng, log)
            if hit is not None:
                kills[hit] += 1
        if stage == "cache":
            if not b.cache_done():
                _plant_stale_tmp(b.cache, "meta.json")
            continue  # the distill attempts below resume the cache first, then train
        # a kill inside an atomic write leaves a temp file (rarely hit at random): plant one
        for folder in b.members if stage == "teacher" else [b.student]:
            if not (folder / "model.safetensors").exists():
                _plant_stale_tmp(folder, "last.state.safetensors")
        # the same command, to completion
        proc = subprocess.run(_cmd(cfg_b, stage), env=_env(), capture_output=True, timeout=600)
        assert proc.returncode == 0, proc.stderr.decode()
        assert done()

    summary = {
        "kills": kills,
        "attempts": len(log),
        "log": log,
        "reference_durations_s": durations,
        "seconds": round(time.time() - started, 1),
    }
    (tmp_path / "kills.json").write_text(json.dumps(summary, indent=2))
    line = f"kills survived: teacher {kills['teacher']}, cache {kills['cache']}, distill {kills['distill']}"
    print(f"kill log: {tmp_path / 'kills.json'}")
    print(line)
    with capsys.disabled():  # visible without -s, for quoting
        print(f"\n{line} ({len(log)} attempts, {summary['seconds']} s; log: {tmp_path / 'kills.json'})")

    # bit-identical weights
    for ma, mb in zip(a.members + [a.student], b.members + [b.student]):
        ref, got = _tensors(ma / "model.safetensors"), _tensors(mb / "model.safetensors")
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.equal(ref[k], got[k]), f"{mb.name}: {k} differs from the uninterrupted run"
    # every checkpoint loads, checksums verified
    models = sorted(b.out.rglob("model.safetensors"))
    states = sorted(b.out.rglob("last.state.safetensors"))
    assert len(models) == len(states) == 3
    for p in models:
        load_model(p)
    for p in states:
        assert load_state(p)["epoch"] == EPOCHS
    # the cache loads, every entry's CRC checks, and it equals the uninterrupted one
    cache_b, cache_a = CachedTargets(b.cache), CachedTargets(a.cache)
    assert len(cache_b) == TRAIN_LENGTH
    for i in range(len(cache_b)):
        mb, sb = cache_b.get(i)
        ma, sa = cache_a.get(i)
        assert torch.equal(ma, mb) and torch.equal(sa, sb), f"cache entry {i} differs"
    # nothing half-written anywhere
    assert [str(p) for p in b.out.rglob("*") if p.name.endswith(".tmp")] == []
    assert kills["teacher"] >= MIN_KILLS and kills["cache"] >= MIN_KILLS and kills["distill"] >= MIN_KILLS
