"""The cluster recipes run the plan's commands in the right order, with the right launcher:
``examples/torchrun-one-node.sh`` and ``examples/slurm/submit.sh`` against stand-ins for the
cluster's tools (nvidia-smi, torchrun, sbatch) and for the training commands, which only
record how they were called; the dry run that the scripts read the plan from is the real one."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the torchrun and Slurm scripts run end to end

ROOT = Path(__file__).parents[2]
CONFIG = """
name: cluster
data: {dataset: synthetic, size: [32, 48], train_options: {length: 8}, test_options: {length: 4}}
model: {encoder: tu-mobilenetv3_small_100, encoder_weights: null, decoder_channels: 16, head_channels: 16}
teacher: {members: 3}
distill: {control: true}
evaluate: {false_alarm_rate: 0.25}  # 4 calibration images: a conformal 5 % would need 19
"""


def _tool(folder: Path, name: str, body: str) -> None:
    p = folder / name
    p.write_text("#!/usr/bin/env bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def cluster(tmp_path):
    """A PATH whose udistill runs the real dry run and records every other call."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    real = f"{sys.executable} -m udistill"
    _tool(
        bin_,
        "udistill",
        f"""
for a in "$@"; do [ "$a" = --dry-run ] && exec {real} "$@"; done
echo "udistill gpu=${{CUDA_VISIBLE_DEVICES:-all}} $*" >> {log}
[ "$1" = train-teacher ] && echo "member ready: x"
exit 0
""",
    )
    _tool(bin_, "torchrun", f'echo "torchrun $*" >> {log}\n')
    _tool(bin_, "nvidia-smi", 'echo "GPU 0: x"; echo "GPU 1: y"\n')
    _tool(bin_, "sbatch", f'echo "sbatch $*" >> {log}; echo $((RANDOM + 100))\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    env = dict(os.environ, PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    return cfg, log, env


def test_one_node_script_trains_members_per_gpu_then_runs_the_rest_under_torchrun(cluster, tmp_path):
    cfg, log, env = cluster
    subprocess.run(
        ["bash", str(ROOT / "examples" / "torchrun-one-node.sh"), str(cfg), "--set", "out_dir=/tmp/x"],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        capture_output=True,
    )
    calls = log.read_text().splitlines()
    members = sorted((c for c in calls if "train-teacher" in c), key=lambda c: int(c.split()[-1]))
    assert members == [
        f"udistill gpu={k % 2} train-teacher --config {cfg} --set out_dir=/tmp/x --member {k}" for k in range(3)
    ]
    rest = [c for c in calls if "train-teacher" not in c]
    assert rest == [
        f"torchrun --standalone --nproc_per_node 2 -m udistill distill --config {cfg} --set out_dir=/tmp/x",
        f"torchrun --standalone --nproc_per_node 2 -m udistill distill --config {cfg} --set out_dir=/tmp/x --control",
        f"udistill gpu=all calibrate --config {cfg} --set out_dir=/tmp/x",
        f"torchrun --standalone --nproc_per_node 2 -m udistill evaluate --config {cfg} --set out_dir=/tmp/x",
    ]


def test_slurm_submit_makes_the_student_job_wait_for_the_member_array(cluster, tmp_path):
    cfg, log, env = cluster
    out = subprocess.run(
        ["bash", str(ROOT / "examples" / "slurm" / "submit.sh"), str(cfg)],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        capture_output=True,
        text=True,
    ).stdout
    first, second = log.read_text().splitlines()
    assert "--array=0-2" in first and first.endswith("members.sbatch")
    member_job = out.split("members: job ")[1].split()[0]
    assert f"--dependency=afterok:{member_job}" in second and second.endswith("student.sbatch")
