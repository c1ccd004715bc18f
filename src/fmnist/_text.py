"""Small pieces of English for messages and figures: counts, articles and command lines."""

from __future__ import annotations

import shlex
from pathlib import Path


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``1 epoch``, ``3 epochs``, ``1,200 images``: the count and the noun that agrees with it."""
    word = noun if n == 1 else (plural_form or noun + "s")
    return f"{n:,} {word}"


def with_article(noun: str) -> str:
    """``a Sandal``, ``an Ankle boot``: the indefinite article a reader says before ``noun``.

    Chosen by the first letter, which is right for every class name fmnist ships; words whose
    sound differs from their spelling ("an hour", "a unit") are not class names here.
    """
    return f"{'an' if noun[:1].lower() in 'aeiou' and noun else 'a'} {noun}"


def signed(value: float, digits: int) -> str:
    """``+0.018``, ``-0.004``: a difference with its sign, never ``-0.000`` (a difference that rounds
    to nothing reads as none, whichever side it fell on)."""
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def shell(path: str | Path) -> str:
    """``path`` as a command a message suggests must spell it to be pasted into a shell: quoted
    where it holds spaces or other characters the shell would read ("'my runs/mlp'")."""
    return shlex.quote(str(path))
