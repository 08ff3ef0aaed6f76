"""How long `udistill demo` takes, stage by stage, and how busy the machine was meanwhile.

    python benchmarks/demo_time.py                 # a fresh run folder, then the files below
    python benchmarks/demo_time.py --no-commit     # print only

Runs ``udistill demo`` in a new, empty run folder with this interpreter (the venv already
installed, as after `make install`), samples the 1-minute load average every two seconds,
and writes:

- ``benchmarks/results/demo-time.json``: ``total_s`` (wall time of the command),
  ``stages_s`` (per stage, from the demo's own clock), ``load_average_1min`` (before, mean,
  max while it ran), the machine (cores, CPU model, torch threads) and the commit;
- ``src/udistill/presets/demo-time.json``: the same, shipped so that ``udistill demo`` and the
  help texts quote the measured time;
- ``benchmarks/results/demo-synthetic/``: the demo's report.md, results.json and printed output.

A loaded machine makes every stage slower: the load average says whether a figure is fair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import commit, cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def member_epoch_seconds(members: Path) -> float:
    """Mean seconds per epoch over every member's metrics.csv."""
    values = []
    for csv_path in sorted(members.glob("member-*/metrics.csv")):
        rows = csv_path.read_text().splitlines()[1:]
        values += [float(r.split(",")[2]) for r in rows if r]
    return round(sum(values) / len(values), 3) if values else None


def serial_member_epoch(folder: Path) -> float:
    """Member 0 alone, in one process with every core, for 2 epochs: the per-epoch time the
    parallel jobs are compared with."""
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "udistill", "train-teacher", "--config", str(ROOT / "configs" / "synthetic.yaml")]
    cmd += ["--member", "0", "--set", f"out_dir={folder}", "--set", "train.epochs=2", "--set", "train.progress=false"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
    return member_epoch_seconds(folder / "members")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-commit", action="store_true", help="print the figures, write no file")
    ap.add_argument("--keep", type=Path, help="keep the run folder here instead of a temporary one")
    args = ap.parse_args()

    run = args.keep or Path(tempfile.mkdtemp(prefix="udistill-demo-")) / "demo"
    if run.exists():
        shutil.rmtree(run)
    samples: list[float] = []
    done = threading.Event()

    def sample():
        while not done.wait(2.0):
            samples.append(os.getloadavg()[0])

    before = os.getloadavg()[0]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "udistill", "demo", "--out", str(run)],
        cwd=ROOT,
        env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
        capture_output=True,
        text=True,
    )
    total = time.time() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        return proc.returncode
    own = json.loads((run / "demo-time.json").read_text())
    parallel_epoch = member_epoch_seconds(run / "members")
    serial_epoch = serial_member_epoch(run.parent / "serial")
    record = {
        "total_s": round(total, 1),
        "stages_s": own["stages_s"],
        "load_average_1min": {
            "before": round(before, 2),
            "mean": round(sum(samples) / len(samples), 2) if samples else None,
            "max": round(max(samples), 2) if samples else None,
        },
        "member_epoch_s": {
            "parallel_one_thread_jobs": parallel_epoch,
            "one_job_all_cores": serial_epoch,
            "note": "mean seconds per member epoch: in the demo (one-thread jobs side by side) and member 0 "
            "trained alone in one process with every core, 2 epochs",
        },
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "commit": commit(),
        "command": "udistill demo --out <fresh folder>",
    }
    print(json.dumps(record, indent=2))
    if args.no_commit:
        return 0
    for path in (RESULTS / "demo-time.json", ROOT / "src" / "udistill" / "presets" / "demo-time.json"):
        path.write_text(json.dumps(record, indent=2) + "\n")
    out = RESULTS / "demo-synthetic"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "results.json"):
        shutil.copy(run / "evaluation" / name, out / name)
    figures = run / "evaluation" / "figures"
    if figures.is_dir():
        shutil.rmtree(out / "figures", ignore_errors=True)
        shutil.copytree(figures, out / "figures")
    (out / "demo-output.txt").write_text(proc.stdout)
    print(f"wrote {RESULTS / 'demo-time.json'} and {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
