"""The run and stage locks live in :mod:`udistill.runlock` (a shared leaf, so that the stage
runner of :mod:`udistill.train.stage` can take them for every stage); this module re-exports
them under the name the pipeline, the cluster scripts and the tests have always imported."""

from ..runlock import LOCK_NAME, STAGE_LOCKS, RunLockedError, holder, locks_run, run_lock

__all__ = ["LOCK_NAME", "STAGE_LOCKS", "RunLockedError", "holder", "locks_run", "run_lock"]
