"""The OOD alarm as a checkpoint stores it (``meta["ood"]``, written by ``udistill calibrate``):
which image score, its threshold, the heat-map display range, and which weights it was
fitted on. One place reads that record, so every consumer (predictor, ood-report) agrees."""

from __future__ import annotations

from pathlib import Path

from ..metrics.image import IMAGE_SCORES

DEFAULT_SCORE = "median_plus_min_over_max"  # the paper's; checkpoints calibrated before a score was recorded


def _record(meta: dict) -> dict:
    ood = meta.get("ood")
    return ood if isinstance(ood, dict) else {}


def alarm_score(meta: dict) -> str:
    """The image score the alarm was calibrated with (chosen on validation shifts)."""
    score = _record(meta).get("score")
    return score if score in IMAGE_SCORES else DEFAULT_SCORE


def stored_threshold(meta: dict, score: str) -> float | None:
    """The calibrated threshold of ``score``, if any."""
    value = (_record(meta).get("thresholds") or {}).get(score)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stored_display_range(meta: dict) -> tuple[float, float] | None:
    """The heat-map scale stored at calibration ([0, p99 of in-distribution U]), if valid."""
    rng = _record(meta).get("display_range")
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)):
        return None
    return (float(rng[0]), float(rng[1])) if rng[1] > rng[0] else None


def check_calibration(path: Path, meta: dict) -> None:
    """StaleStageError when the stored alarm was fitted on other weights than the
    checkpoint's (its ``built_from`` record, see :mod:`udistill.provenance`)."""
    from ..provenance import StaleStageError, weights_digest

    made_for = (_record(meta).get("built_from") or {}).get("student")
    if made_for:
        now = weights_digest(path)
        if now and now != made_for:
            raise StaleStageError(
                f"{path}: the OOD calibration is stale (fitted on weights {made_for}, these are {now}); "
                "run `udistill calibrate` again"
            )
