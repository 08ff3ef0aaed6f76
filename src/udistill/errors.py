"""One exception family for every problem a user can fix.

The CLI turns a :class:`UdistillError` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UdistillError(Exception):
    """A problem with the user's input, files or configuration (not a bug)."""


class DataError(UdistillError):
    """A dataset file is missing, unreadable or inconsistent. The message names the file."""


class ConfigError(UdistillError):
    """A configuration key is unknown or has the wrong type. The message names the key."""


class CheckpointError(UdistillError):
    """A checkpoint is missing, tampered, or does not fit the requested model."""


class TrainingError(UdistillError):
    """Training cannot go on (for example a non-finite loss)."""


class StaleStageError(CheckpointError):
    """A finished stage was built from inputs that have changed since."""
