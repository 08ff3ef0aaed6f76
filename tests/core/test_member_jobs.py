"""Members as parallel one-thread processes (teacher.parallel_jobs): the same weights as
training them one after another in one thread, finished members skipped, a failing job named."""

from __future__ import annotations

import pytest
import torch

from udistill.config import ExperimentConfig, load_config
from udistill.errors import TrainingError
from udistill.models import load_model
from udistill.pipeline.member_jobs import member_job_count, train_members_in_parallel
from udistill.pipeline.runlock import run_lock
from udistill.pipeline.teacher import train_member

pytestmark = pytest.mark.slow  # starts child processes that train

MODEL = "{encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16, dropout: 0.1}"


def _cfg(out, **extra) -> ExperimentConfig:
    sets = [
        f"out_dir={out}",
        "data.size=[32,48]",
        "data.train_options={length: 8}",
        "data.test_options={length: 4}",
        f"model={MODEL}",
        "train.epochs=1",
        "train.batch_size=4",
        "train.progress=false",
        "train.deterministic=true",
        "teacher.members=2",
        "device=cpu",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(ExperimentConfig, None, sets)


def test_parallel_member_jobs_give_the_one_thread_weights_and_skip_finished_members(tmp_path):
    cfg = _cfg(tmp_path / "par")
    paths = train_members_in_parallel(cfg, jobs=2, log=lambda _: None)
    assert all(p.exists() for p in paths)
    assert (tmp_path / "par" / "members" / "member-1" / "job.log").exists()
    ref_cfg = _cfg(tmp_path / "ref")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each job ran with on this 2-core machine
    try:
        refs = [train_member(ref_cfg, k) for k in range(2)]
    finally:
        torch.set_num_threads(threads)
    for p, r in zip(paths, refs):
        got, want = load_model(p)[0].state_dict(), load_model(r)[0].state_dict()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    stamps = [p.stat().st_mtime_ns for p in paths]
    train_members_in_parallel(cfg, jobs=2, log=lambda _: None)  # finished: skipped by the jobs
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_a_failing_member_job_is_named_with_its_log(tmp_path):
    cfg = _cfg(tmp_path / "run")
    busy = run_lock(cfg.out_dir, stage="member-1")  # another writer holds member 1
    with busy, pytest.raises(TrainingError, match=r"member 1 failed .*log: .*member-1/job.log"):
        train_members_in_parallel(cfg, jobs=2, log=lambda _: None)


def test_job_count_is_one_off_the_cpu_and_capped_by_members(tmp_path):
    cfg = _cfg(tmp_path / "c", **{"teacher.parallel_jobs": 0})
    assert member_job_count(cfg, torch.device("cuda", 0)) == 1
    assert 1 <= member_job_count(cfg, torch.device("cpu")) <= 2
    assert member_job_count(_cfg(tmp_path / "d", **{"teacher.parallel_jobs": 5}), torch.device("cpu")) == 2
    assert member_job_count(_cfg(tmp_path / "e"), torch.device("cpu")) == 1  # the default: in this process
