"""Provenance (stale stages refused or rebuilt) and the run-folder lock.

No training here: members and students are random models saved with the ``built_from``
record the stages write, so the skip points are exercised exactly as in a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from udistill.cli import main
from udistill.config import ExperimentConfig, ModelConfig, load_config
from udistill.models.build import build_model, to_student
from udistill.models.checkpoint import read_metadata, save_model
from udistill.pipeline.distill import run_distill
from udistill.pipeline.runlock import LOCK_NAME, RunLockedError, run_lock
from udistill.pipeline.teacher import train_member
from udistill.train import provenance, stage

MODEL = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 16, "head_channels": 16}
META = {"classes": ["c"] * 11, "label_scheme": "camvid11"}


def _config(tmp_path: Path) -> tuple[ExperimentConfig, Path]:
    raw = {
        "out_dir": str(tmp_path / "run"),
        "data": {
            "dataset": "synthetic",
            "size": [32, 48],
            "train_options": {"length": 8},
            "test_options": {"length": 4},
        },
        "model": MODEL,
        "train": {"epochs": 1, "batch_size": 4, "progress": False},
        "teacher": {"members": 2},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(ExperimentConfig, str(path), []), path


def _finished_run(cfg: ExperimentConfig) -> Path:
    """Members and a student on disk, each with the provenance its stage records."""
    run = Path(cfg.out_dir)
    mcfg = ModelConfig(**MODEL)
    for k in range(cfg.teacher.members):
        torch.manual_seed(k)
        save_model(
            build_model(mcfg, 11),
            run / "members" / f"member-{k}" / "model.safetensors",
            **META,
            built_from=provenance.member_inputs(cfg, k),
        )
    student = to_student(build_model(mcfg, 11), "prediction+uncertainty")
    built = provenance.student_inputs(cfg, cfg.model, provenance.init_path_of(cfg))
    save_model(student, run / "student" / "model.safetensors", **META, built_from=built)
    return run


def _retrain_member(run: Path, k: int, cfg: ExperimentConfig, seed: int = 99) -> None:
    torch.manual_seed(seed)
    save_model(
        build_model(ModelConfig(**MODEL), 11),
        run / "members" / f"member-{k}" / "model.safetensors",
        **META,
        built_from=provenance.member_inputs(cfg, k),
    )


def test_fresh_stages_are_reused(tmp_path):
    cfg, _ = _config(tmp_path)
    run = _finished_run(cfg)
    stamp = (run / "student" / "model.safetensors").stat().st_mtime_ns
    assert run_distill(cfg) == run / "student" / "model.safetensors"
    assert train_member(cfg, 1) == run / "members" / "member-1" / "model.safetensors"
    assert (run / "student" / "model.safetensors").stat().st_mtime_ns == stamp
    assert not (run / LOCK_NAME).exists()  # released and removed


def test_a_student_of_a_retrained_member_is_refused_by_distill_and_evaluate(tmp_path, capsys):
    cfg, cfg_path = _config(tmp_path)
    run = _finished_run(cfg)
    _retrain_member(run, 1, cfg)
    with pytest.raises(provenance.StaleStageError, match=r"student is stale \(member 1 changed"):
        run_distill(cfg)
    for command in ("distill", "evaluate"):
        assert main([command, "--config", str(cfg_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("udistill: error: ") and "member 1 changed" in err[0], err
    assert (run / "student" / "model.safetensors").exists()  # refused, not deleted
    assert not (run / "evaluation").exists()


def test_experiment_mode_sets_a_stale_student_aside(tmp_path):
    cfg, _ = _config(tmp_path)
    run = _finished_run(cfg)
    _retrain_member(run, 0, cfg)
    inputs = provenance.student_inputs(cfg, cfg.model, provenance.init_path_of(cfg))
    lines = []
    with stage.rebuilding_stale():
        assert stage.reusable(run / "student" / "model.safetensors", inputs, "student", log=lines.append) is False
    assert not (run / "student").exists()
    moved = list((run / ".stale").iterdir())
    assert len(moved) == 1 and (moved[0] / "model.safetensors").exists()
    assert "member 0 changed" in lines[0] and "initial model changed" in lines[0]


def test_a_member_trained_with_another_recipe_is_stale(tmp_path, capsys):
    cfg, cfg_path = _config(tmp_path)
    _finished_run(cfg)
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=5))
    with pytest.raises(provenance.StaleStageError, match="member 1 is stale .*config changed"):
        train_member(more, 1)
    # progress bars do not change weights: not stale
    quiet = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=True))
    assert train_member(quiet, 1).exists()


def test_checkpoints_without_provenance_are_reused(tmp_path):
    cfg, _ = _config(tmp_path)
    run = Path(cfg.out_dir)
    save_model(build_model(ModelConfig(**MODEL), 11), run / "members" / "member-0" / "model.safetensors", **META)
    assert stage.reusable(
        run / "members" / "member-0" / "model.safetensors", provenance.member_inputs(cfg, 0), "member 0"
    )


def test_the_student_records_what_it_was_built_from(tmp_path):
    cfg, _ = _config(tmp_path)
    run = _finished_run(cfg)
    rec = read_metadata(run / "student" / "model.safetensors")["built_from"]
    assert rec["members"]["0"] == provenance.weights_digest(run / "members" / "member-0" / "model.safetensors")
    assert rec["members"]["0"] != rec["members"]["1"]


# --- the lock -----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from udistill.pipeline.runlock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def _hold(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    cfg, cfg_path = _config(tmp_path)
    run = _finished_run(cfg)
    proc = _hold(run)
    try:
        with (
            pytest.raises(RunLockedError, match=rf"in use by pid {proc.pid} on host {os.uname().nodename}"),
            run_lock(run),
        ):
            pass
        assert main(["distill", "--config", str(cfg_path)]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    proc = _hold(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_NAME).exists()  # left behind by the killed process
    messages = []
    with run_lock(run, log=messages.append):
        assert f"pid {proc.pid}" in messages[0] and "no longer running" in messages[0]
        assert f'"pid": {os.getpid()}' in (run / LOCK_NAME).read_text()
    assert not (run / LOCK_NAME).exists()


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with run_lock(tmp_path / "run"):
        with run_lock(tmp_path / "run"):
            assert (tmp_path / "run" / LOCK_NAME).exists()
        assert (tmp_path / "run" / LOCK_NAME).exists()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_two_processes_racing_for_a_free_lock_get_one_winner(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = textwrap.dedent("""
        import sys, time
        from udistill.pipeline.runlock import run_lock, RunLockedError
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        try:
            with run_lock(sys.argv[1]):
                time.sleep(1.5)
            print("won")
        except RunLockedError:
            print("refused")
    """)
    start = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(run), str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused", "refused", "won"]


def test_member_jobs_run_side_by_side_but_not_beside_a_run_writer(tmp_path):
    """Two jobs training different members share the run; the same member, or a member
    beside an experiment (which holds the whole run), is refused naming the holder."""
    run = tmp_path / "run"
    code = textwrap.dedent("""
        import sys, time
        from udistill.pipeline.runlock import run_lock
        stage = sys.argv[2] if sys.argv[2] != "-" else None
        with run_lock(sys.argv[1], stage=stage):
            print("locked", flush=True)
            time.sleep(120)
    """)

    def hold(stage):
        proc = subprocess.Popen([sys.executable, "-c", code, str(run), stage or "-"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    member2 = hold("member-2")
    try:
        with run_lock(run, stage="member-3"):  # another member: fine
            pass
        with (
            pytest.raises(RunLockedError, match=rf"stage member-2 is being written by pid {member2.pid}"),
            run_lock(run, stage="member-2"),
        ):
            pass
        with (
            pytest.raises(RunLockedError, match=rf"run folder is in use by pid {member2.pid} .*stage member-2"),
            run_lock(run),
        ):  # experiment / distill / evaluate
            pass
    finally:
        member2.kill()
        member2.wait()
    experiment = hold(None)
    try:
        with (
            pytest.raises(RunLockedError, match=rf"run folder is in use by pid {experiment.pid}"),
            run_lock(run, stage="member-0"),
        ):
            pass
    finally:
        experiment.kill()
        experiment.wait()
    messages = []
    with run_lock(run, stage="member-0", log=messages.append):  # the killed holders' locks are free again
        pass
    assert f"pid {experiment.pid}" in messages[0] and "no longer running" in messages[0]
    assert not (run / LOCK_NAME).exists()
    assert [p.name for p in (run / ".locks").iterdir()] == ["member-2.lock"]  # the killed member job's, free to take


def test_an_unfinished_state_of_other_inputs_is_not_resumed(tmp_path):
    """A training state left by a run of another recipe is moved aside, not continued; the
    same inputs resume; the marker records what the state is being built from."""
    from udistill.train.provenance import PARTIAL_FILE
    from udistill.train.stage import start_stage

    stage = tmp_path / "run" / "control"
    start_stage(stage, {"config": "aaa"}, "control", log=lambda m: None)
    (stage / "last.state.safetensors").write_bytes(b"state of recipe a")
    (stage / "metrics.csv").write_text("epoch\n1\n")
    start_stage(stage, {"config": "aaa"}, "control", log=lambda m: None)  # same inputs: kept for resuming
    assert (stage / "last.state.safetensors").read_bytes() == b"state of recipe a"
    said = []
    start_stage(stage, {"config": "bbb"}, "control", log=said.append)
    assert not (stage / "last.state.safetensors").exists() and not (stage / "metrics.csv").exists()
    moved = list((tmp_path / "run" / ".stale").glob("control-partial-*/last.state.safetensors"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"state of recipe a"
    assert "not resumed" in said[0] and "config" in said[0]
    assert json.loads((stage / PARTIAL_FILE).read_text()) == {"config": "bbb"}
