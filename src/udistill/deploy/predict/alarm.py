"""The OOD alarm as a checkpoint stores it (``meta["ood"]``, written by ``udistill calibrate``):
which image score, its threshold, the heat-map display range, and which weights it was
fitted on. One place reads that record, so every consumer (predictor, ood-report) agrees."""

from __future__ import annotations

import math
from pathlib import Path

from ...errors import CheckpointError, StaleStageError
from ...metrics.image import IMAGE_SCORES
from ...models.checkpoint import weights_digest

DEFAULT_SCORE = "median_plus_min_over_max"  # the paper's; checkpoints calibrated before a score was recorded


def _record(meta: dict) -> dict:
    ood = meta.get("ood")
    return ood if isinstance(ood, dict) else {}


def alarm_score(meta: dict) -> str:
    """The image score the alarm was calibrated with (chosen on validation shifts)."""
    score = _record(meta).get("score")
    return score if score in IMAGE_SCORES else DEFAULT_SCORE


def stored_threshold(meta: dict, score: str, source: str | None = None) -> float | None:
    """The calibrated threshold of ``score``, if any. A stored threshold that is not a finite
    number (NaN would never raise the alarm) is a CheckpointError telling to calibrate again."""
    thresholds = _record(meta).get("thresholds") or {}
    value = thresholds.get(score) if isinstance(thresholds, dict) else None
    if value is None:
        return None
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number):
        where = f"{source}: " if source else ""
        raise CheckpointError(
            f"{where}the stored OOD threshold of score '{score}' is {value!r}, not a finite number; "
            "run `udistill calibrate` again"
        )
    return number


def stored_display_range(meta: dict) -> tuple[float, float] | None:
    """The heat-map scale stored at calibration ([0, p99 of in-distribution U]), if valid."""
    rng = _record(meta).get("display_range")
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)):
        return None
    if not all(math.isfinite(v) for v in rng):
        return None
    return (float(rng[0]), float(rng[1])) if rng[1] > rng[0] else None


def check_calibration(path: Path, meta: dict) -> None:
    """StaleStageError when the stored alarm was fitted on other weights than the
    checkpoint's (its ``built_from`` record, see :mod:`udistill.train.provenance`)."""
    made_for = (_record(meta).get("built_from") or {}).get("student")
    if made_for:
        now = weights_digest(path)
        if now and now != made_for:
            raise StaleStageError(
                f"{path}: the OOD calibration is stale (fitted on weights {made_for}, these are {now}); "
                "run `udistill calibrate` again"
            )


def calibration_inputs(student_path: str | Path) -> dict:
    """For the ``ood`` record: the weights it was calibrated on."""
    return {"student": weights_digest(student_path)}
