"""Where a training run's numbers go: a progress bar per epoch, ``metrics.csv`` after every
epoch, and TensorBoard scalars (``train.tensorboard``). Only rank 0 writes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..config import TrainConfig
from ..io import atomic_write_text
from ..progress import progress

METRICS_FILE = "metrics.csv"


class Logbook:
    """The run's logging; ``close`` it at the end."""

    def __init__(self, out_dir: Path, cfg: TrainConfig, desc: str, rank: int):
        self.out_dir, self.cfg, self.desc, self.rank = Path(out_dir), cfg, desc, rank
        self.writer = _tensorboard(self.out_dir) if cfg.tensorboard and rank == 0 else None

    def bar(self, loader, epoch: int, steps: int):
        """``loader`` with this epoch's progress bar (silent on other ranks or with ``progress: false``)."""
        return progress(
            loader,
            f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}",
            steps,
            enabled=self.cfg.progress and self.rank == 0,
        )

    def scalars(self, row: dict) -> None:
        """One epoch's row to TensorBoard."""
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.writer.add_scalar(k, v, row["epoch"])

    def write_csv(self, history: list[dict]) -> None:
        """The whole history to ``metrics.csv`` (atomically; columns: every key seen, in order)."""
        if self.rank == 0:
            write_metrics_csv(self.out_dir / METRICS_FILE, history)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed; pip install tensorboard to log there")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def write_metrics_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for row in history:
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())
