"""Ensemble members as parallel one-thread processes on a CPU.

Members are independent (:mod:`udistill.pipeline.teacher`), and one small network trains faster per
core on one thread than on two: two one-thread jobs side by side finish two members in about
the time one two-thread job needs for one and a half. ``teacher.parallel_jobs`` (0 = one job
per core on a CPU) runs ``udistill train-teacher --member K`` as that many child processes,
each with ``OMP_NUM_THREADS = cores // jobs``, its output in ``members/member-K/job.log``.
Finished members are skipped by the children themselves; a stale member is rebuilt as the
in-process path would (``UDISTILL_REBUILD_STALE=1``). A failing job stops the others and
its last error line is reported with the log's path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..config import ExperimentConfig, save_config
from ..errors import TrainingError
from ..layout import RunLayout
from ..sharding import launched_world_size

REBUILD_ENV = "UDISTILL_REBUILD_STALE"


def member_job_count(cfg: ExperimentConfig, device) -> int:
    """How many member processes to run side by side: 1 on a GPU, under torchrun, or for a
    single member; ``teacher.parallel_jobs`` otherwise (0 = the number of cores)."""
    if launched_world_size() > 1 or getattr(device, "type", str(device)) != "cpu":
        return 1
    jobs = cfg.teacher.parallel_jobs or (os.cpu_count() or 1)
    return max(1, min(int(jobs), cfg.teacher.members))


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("udistill:") or "Error" in ln]
    return (errors or lines or ["no output"])[-1]


def train_members_in_parallel(
    cfg: ExperimentConfig, jobs: int, device: str | None = None, log: Callable[[str], None] = print
) -> list[Path]:
    """Train every member of ``cfg`` with ``jobs`` child processes at a time; returns the
    members' checkpoint paths. Call it outside the run's exclusive lock (the children take
    the run shared and their member exclusively)."""
    layout = RunLayout.of(cfg)
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    config = layout.config
    save_config(cfg, config)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **{REBUILD_ENV: "1"})
    pending = list(range(cfg.teacher.members))
    running: dict[int, tuple[subprocess.Popen, Path, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                k = pending.pop(0)
                folder = layout.member(k)
                folder.mkdir(parents=True, exist_ok=True)
                job_log = folder / "job.log"
                cmd = [sys.executable, "-m", "udistill", "train-teacher", "--config", str(config), "--member", str(k)]
                cmd += ["--set", "train.progress=false"] + (["--device", str(device)] if device else [])
                with open(job_log, "w") as fh:
                    running[k] = (
                        subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env),
                        job_log,
                        time.time(),
                    )
            time.sleep(0.2)
            for k, (proc, job_log, t0) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[k]
                if code != 0:
                    raise TrainingError(f"member {k} failed (exit {code}): {_last_error(job_log)} (log: {job_log})")
                log(f"  member {k} ready in {time.time() - t0:.0f} s ({threads} thread(s), {jobs} jobs side by side)")
    finally:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
    return [layout.member_model(k) for k in range(cfg.teacher.members)]
