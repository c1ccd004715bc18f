"""Errors meant for people.

Every exception a user can cause (a missing file, a corrupt download, a bad argument) is a
``FmnistError``: its message is one line naming the thing that is wrong, what is wrong with it
and what to do. The command line prints that line and exits 1 with no traceback; anything
else that escapes is a bug and keeps its traceback.
"""


class FmnistError(Exception):
    """A user-facing error: ``str(err)`` is one complete, actionable line."""

    exit_code = 1


class DataError(FmnistError):
    """Dataset files are missing, corrupt, truncated, altered or not what they claim to be."""


class ModelError(FmnistError):
    """A model spec, preset name, or saved model file is invalid."""


class RunError(FmnistError):
    """A run folder is missing, incomplete or inconsistent."""


class UsageError(FmnistError):
    """A command-line argument is invalid (exit status 2, like argparse)."""

    exit_code = 2


class TrainingError(FmnistError):
    """Training cannot go on: the loss diverged to NaN/inf, or a run cannot be resumed."""
