"""How long the two test tiers take, on this machine, with its load.

    python benchmarks/test_time.py            # both tiers, writes benchmarks/results/test-time.json

Runs ``pytest -q -m "not slow"`` (``make test-fast``) and ``pytest -q`` (``make test``, what CI
runs) one after the other with this interpreter, from the repository root, and records each
wall time, pass/fail counts, the 1-minute load average before each, the machine and the commit.
Run it in a clean clone on an otherwise idle machine for figures worth quoting.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "test-time.json"
TIERS = {"test-fast": ["-m", "not slow"], "test": []}


def run_tier(args: list[str]) -> dict:
    load = os.getloadavg()[0]
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
    )
    wall = time.time() - t0
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", tail)}
    return {"wall_s": round(wall, 1), "exit_code": proc.returncode, "counts": counts, "load_before": round(load, 2)}


def main() -> int:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    record = {name: run_tier(args) for name, args in TIERS.items()}
    record["machine"] = {"cores": os.cpu_count(), "python": platform.python_version()}
    record["camvid"] = bool(os.environ.get("UDISTILL_CAMVID"))
    record["commit"] = commit.strip()
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0 if all(record[t]["exit_code"] == 0 for t in TIERS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
