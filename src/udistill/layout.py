"""Where each stage's outputs live in a run folder: the one place that spells the paths.

Why a leaf of its own: the pipeline writes these folders, while the core (``Ensemble.from_run``),
evaluation and deployment (``udistill calibrate``) read them; none of those may import the
pipeline, so the names live here and everyone imports them from here.
"""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentConfig

MODEL_FILE = "model.safetensors"  # every finished stage's weights


def member_dir(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / "members" / f"member-{k}"


def member_paths(run_dir: str | Path) -> list[Path]:
    """Finished members in index order."""
    root = Path(run_dir) / "members"
    found = []
    for d in root.glob("member-*"):
        try:
            k = int(d.name.split("-", 1)[1])
        except ValueError:
            continue
        if (d / MODEL_FILE).exists():
            found.append((k, d / MODEL_FILE))
    return [p for _, p in sorted(found)]


def student_dir(cfg: ExperimentConfig, heads: str | None = None) -> Path:
    kind = heads or cfg.model.uncertainty_head
    return Path(cfg.out_dir) / ("student" if kind == "paper" else f"student-{kind}")


def control_dir(cfg: ExperimentConfig) -> Path:
    """Where the CE-only control (member 0 trained on for the student's epochs) lives."""
    return Path(cfg.out_dir) / "control"
