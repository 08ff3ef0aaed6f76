"""Where each stage's outputs live in a run folder: the one place that spells the paths.

:class:`RunLayout` names every path of a run once (members, students, the control, the
teacher cache, the single-pass stages, the evaluation, the config copy, the stale corner and
the lock files); everyone else asks it. The functions below it (``member_dir``,
``member_paths``, ``student_dir``, ``control_dir``) are the older spelling of the same
answers, kept because evaluation and outside code call them.

Why a leaf of its own: the pipeline writes these folders, while the core (``Ensemble.from_run``),
evaluation and deployment (``udistill calibrate``) read them; none of those may import the
pipeline, so the names live here and everyone imports them from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import ExperimentConfig

MODEL_FILE = "model.safetensors"  # every finished stage's weights
CONFIG_FILE = "config.yaml"  # the run's config copy, and each stage's config beside its weights
PARTIAL_FILE = "built_from.partial.json"  # what an unfinished stage is being built from
TEMPERATURE_FILE = "temperature.json"
DENSITY_FILE = Path("feature-density") / "density.safetensors"  # relative to the run folder
MULTI_HEAD_FILE = Path("multi-head") / MODEL_FILE  # relative to the run folder
LOCK_NAME = ".udistill.lock"  # the run's lock file
STAGE_LOCKS = ".locks"  # one lock file per stage in here
STALE_DIR = ".stale"  # stale stages and states are moved here, never deleted


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Every path of the run folder ``out_dir``, named once."""

    out_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> RunLayout:
        return cls(Path(cfg.out_dir))

    # --- stages trained on labels or distilled -----------------------------------------------
    @property
    def members(self) -> Path:
        return self.out_dir / "members"

    def member(self, k: int) -> Path:
        return self.members / f"member-{k}"

    def member_model(self, k: int) -> Path:
        return self.member(k) / MODEL_FILE

    def finished_members(self) -> list[Path]:
        """The checkpoints of the finished members, in index order."""
        found = []
        for d in self.members.glob("member-*"):
            try:
                k = int(d.name.split("-", 1)[1])
            except ValueError:
                continue
            if (d / MODEL_FILE).exists():
                found.append((k, d / MODEL_FILE))
        return [p for _, p in sorted(found)]

    def student(self, heads: str = "paper") -> Path:
        """The student of ``heads`` (``student`` for the paper's heads, else ``student-<heads>``)."""
        return self.out_dir / ("student" if heads == "paper" else f"student-{heads}")

    @property
    def student_light(self) -> Path:
        return self.student("light")

    @property
    def control(self) -> Path:
        """The CE-only control (member 0 trained on for the student's epochs)."""
        return self.out_dir / "control"

    def teacher_cache(self, name: str = "teacher-cache") -> Path:
        """A teacher-target cache; every student of the run shares the one beside the paper student."""
        return self.student("paper") / name

    # --- single-pass stages --------------------------------------------------------------------
    @property
    def temperature(self) -> Path:
        return self.out_dir / TEMPERATURE_FILE

    @property
    def feature_density(self) -> Path:
        """The feature-density stage's folder (its file: :attr:`density_file`)."""
        return self.out_dir / DENSITY_FILE.parent

    @property
    def density_file(self) -> Path:
        return self.out_dir / DENSITY_FILE

    @property
    def multi_head(self) -> Path:
        """The multi-head stage's folder (its checkpoint: :attr:`multi_head_model`)."""
        return self.out_dir / MULTI_HEAD_FILE.parent

    @property
    def multi_head_model(self) -> Path:
        return self.out_dir / MULTI_HEAD_FILE

    # --- the rest of the run -------------------------------------------------------------------
    @property
    def evaluation(self) -> Path:
        return self.out_dir / "evaluation"

    @property
    def config(self) -> Path:
        """The run's copy of its config."""
        return self.out_dir / CONFIG_FILE

    @property
    def stale(self) -> Path:
        return self.out_dir / STALE_DIR

    @property
    def lock(self) -> Path:
        return self.out_dir / LOCK_NAME

    @property
    def stage_locks(self) -> Path:
        """The folder of the stage locks."""
        return self.out_dir / STAGE_LOCKS

    def stage_lock(self, stage: str) -> Path:
        return self.stage_locks / f"{stage}.lock"

    # --- inside any stage folder ---------------------------------------------------------------
    @staticmethod
    def model_in(folder: str | Path) -> Path:
        return Path(folder) / MODEL_FILE

    @staticmethod
    def config_in(folder: str | Path) -> Path:
        """A stage's config, saved beside its weights."""
        return Path(folder) / CONFIG_FILE

    @staticmethod
    def partial_record_in(folder: str | Path) -> Path:
        return Path(folder) / PARTIAL_FILE


def member_dir(run_dir: str | Path, k: int) -> Path:
    return RunLayout(run_dir).member(k)


def member_paths(run_dir: str | Path) -> list[Path]:
    """Finished members in index order."""
    return RunLayout(run_dir).finished_members()


def student_dir(cfg: ExperimentConfig, heads: str | None = None) -> Path:
    return RunLayout.of(cfg).student(heads or cfg.model.uncertainty_head)


def control_dir(cfg: ExperimentConfig) -> Path:
    """Where the CE-only control (member 0 trained on for the student's epochs) lives."""
    return RunLayout.of(cfg).control
