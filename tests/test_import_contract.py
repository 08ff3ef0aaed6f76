"""The import contract (pyproject.toml ``[tool.importlinter]``, docs/architecture.md) holds
on this tree, and ``lint-imports`` fails, naming the contract, when a forbidden direction or
a cycle is added to a copy of it: the check ``make lint`` runs is not vacuous."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[test]')")

REPO = Path(__file__).resolve().parents[1]
LAYERS = "Rooms are layered: each imports only rooms below it"
CORE = "core and metrics import nothing of pipeline, evaluation or deploy"
CYCLES = "No import cycles between the package's rooms and modules"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contract against the package under ``root/src``."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports is not installed next to this Python")
    env = dict(os.environ, PYTHONPATH=str(root / "src"), COLUMNS="200")  # no wrapped contract names
    return subprocess.run(
        [str(exe), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of ``src/udistill`` with ``line`` appended to ``module`` (a path inside it)."""
    shutil.copytree(
        REPO / "src" / "udistill", tmp_path / "src" / "udistill", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "src" / "udistill" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return tmp_path


def test_the_tree_keeps_the_contract():
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_core_importing_the_pipeline_is_refused(tmp_path):
    r = lint_imports(copy_with(tmp_path, "core/scores.py", "from ..pipeline import distill  # noqa: E402,F401"))
    assert r.returncode != 0
    assert f"{CORE} BROKEN" in r.stdout
    assert f"{LAYERS} BROKEN" in r.stdout
    assert "udistill.core.scores -> udistill.pipeline.distill" in r.stdout


def test_a_cycle_inside_a_room_is_refused(tmp_path):
    # deploy.export already imports deploy.predict; the way back closes a cycle within one room
    r = lint_imports(copy_with(tmp_path, "deploy/predict/geometry.py", "from .. import export  # noqa: E402,F401"))
    assert r.returncode != 0
    assert f"{CYCLES} BROKEN" in r.stdout
    assert f"{LAYERS} KEPT" in r.stdout
