"""Errors meant for people.

Every exception a user can cause (a missing file, a corrupt download, a bad argument) is a
``FmnistError``: its message is one line naming the thing that is wrong, what is wrong with it
and what to do. The command line prints that line and exits 1 (2 for usage errors) with no
traceback; anything else that escapes is a bug and keeps its traceback.

A message names a setting with :func:`option`, so that each reader sees their own words: a
Python caller reads ``fetch=True`` and ``data_dir``, the command line ``--fetch`` and
``--data-dir``. ``str(err)`` is the Python wording, ``err.cli_message`` the command line's.
"""

from __future__ import annotations

import re

# Private-use characters delimit an option's two spellings inside a message: they never occur
# in a file name or a model name that a message quotes.
_OPEN, _SEP, _CLOSE = "\ue000", "\ue001", "\ue002"
_OPTION = re.compile(f"{_OPEN}([^{_SEP}]*){_SEP}([^{_CLOSE}]*){_CLOSE}")


def option(name: str, value: object = None, *, cli: str | None = None) -> str:
    """A setting named in an error message, spelled for whoever reads it.

    ``option("data_dir")`` reads ``data_dir`` in Python and ``--data-dir`` on the command line;
    ``option("fetch", True)``: ``fetch=True`` / ``--fetch``; ``option("top_k", 0)``: ``top_k=0`` /
    ``--top-k 0``. ``cli`` is the command-line flag where it is not the parameter's name
    (``option("out_dir", cli="--out")``).
    """
    flag = cli or "--" + name.replace("_", "-")
    python = name
    if value is not None:
        python = f"{name}={value!r}"
        if value is not True:
            flag = f"{flag} {value}"
    return spelled(python, flag)


def spelled(python: str, cli: str) -> str:
    """Text that reads ``python`` in Python and ``cli`` on the command line, inside a message."""
    return f"{_OPEN}{python}{_SEP}{cli}{_CLOSE}"


class FmnistError(Exception):
    """A user-facing error: ``str(err)`` is one complete, actionable line."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object):
        self.cli_message = _OPTION.sub(r"\2", message)
        super().__init__(_OPTION.sub(r"\1", message), *args)


class DataError(FmnistError):
    """Dataset files are missing, corrupt, truncated, altered or not what they claim to be."""


class ModelError(FmnistError):
    """A model spec, preset name, or saved model file is invalid."""


class RunError(FmnistError):
    """A run folder is missing, incomplete or inconsistent."""


class OutputExistsError(FmnistError):
    """The output asked for holds finished work that would be replaced; nothing was written."""


class UsageError(FmnistError):
    """A command-line argument is invalid (exit status 2, like argparse)."""

    exit_code = 2


class TrainingError(FmnistError):
    """Training cannot go on: the loss diverged to NaN/inf, or a run cannot be resumed."""
