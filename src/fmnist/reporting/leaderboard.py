"""The one table renderer, and the leaderboard every command shows runs in.

``render_table`` draws any table as aligned text (the terminal), Markdown (``.md`` files) or
HTML (the report); the study's results, ``fmnist compare`` and ``fmnist report`` all draw
through it. ``leaderboard`` ranks runs by validation accuracy (test accuracy, t10k, is shown
apart and never ranks) with the columns that tell two runs of one preset apart: the run's
name, its optimizer and learning rate.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

FORMATS = ("text", "markdown", "html")
TEST_COLUMN = "test accuracy (reported apart)"
LEADERBOARD_COLUMNS = ("rank", "run", "model", "optimizer", "lr", "parameters", "epochs", "train time (s)",
                       "val accuracy", "val loss", TEST_COLUMN)
# A model trained once per seed: means ± standard deviations, and the gap to the leader.
REPLICATE_COLUMNS = ("rank", "run", "model", "optimizer", "lr", "parameters", "seeds", "epochs", "train time (s)",
                     "val accuracy", "gap to #1", "beyond noise", TEST_COLUMN)
# Left-aligned in text; the rest are numbers, right-aligned.
_WORDS = {"run", "model", "optimizer", "experiment", "metric", "in band", "test note", "beyond noise"}


def render_table(header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "text", *,
                 words: set[str] | frozenset[str] = frozenset(_WORDS)) -> str:
    """``rows`` under ``header`` as ``fmt``: ``"text"`` (aligned), ``"markdown"`` or ``"html"`` (escaped).

    Columns named in ``words`` read left-aligned (text) and unmarked (HTML); the others are
    numbers: right-aligned, and ``class="num"`` in HTML (the test column also ``test``).
    """
    cells = [[str(c) for c in row] for row in rows]
    head = [str(h) for h in header]
    if fmt == "markdown":
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                          *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)])
    if fmt == "html":
        def cls(name: str) -> str:
            kinds = [k for k, on in (("num", name not in words), ("test", name == TEST_COLUMN)) if on]
            return f' class="{" ".join(kinds)}"' if kinds else ""

        top = "<tr>" + "".join(f"<th{cls(h)}>{html.escape(h)}</th>" for h in head) + "</tr>"
        body = "".join("<tr>" + "".join(f"<td{cls(h)}>{html.escape(c)}</td>" for h, c in zip(head, row)) + "</tr>"
                       for row in cells)
        return f"<table>{top}{body}</table>"
    if fmt != "text":
        raise ValueError(f"unknown table format {fmt!r}; choose {', '.join(FORMATS)}")
    widths = [max(len(c) for c in col) for col in zip(head, *cells)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if h in words else c.rjust(w) for h, c, w in zip(head, row, widths)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def rank(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best first: highest validation accuracy, then lowest validation loss; runs without one last."""
    def key(r: Mapping[str, Any]):
        acc, loss = r.get("val_accuracy"), r.get("val_loss")
        return (acc is None, -(acc or 0.0), float("inf") if loss is None else loss)

    return sorted(rows, key=key)


def _num(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def leaderboard_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One line of :data:`LEADERBOARD_COLUMNS` per run, in the given order (rank = position).

    Each row: ``name`` (the run), ``model``, ``optimizer``, ``lr`` (None where the model has no
    learning rate), ``parameters``, ``epochs``, ``train_time_s``, ``val_accuracy``, ``val_loss``,
    ``test_accuracy``; any may be None where a run lacks it.
    """
    return [[str(i), str(r["name"]), str(r.get("model") or "–"), str(r.get("optimizer") or "–"),
             _num(r.get("lr"), "g"), _num(r.get("parameters"), ","), _num(r.get("epochs"), ""),
             _num(r.get("train_time_s"), ".1f"), _num(r.get("val_accuracy"), ".4f"), _num(r.get("val_loss"), ".4f"),
             _num(r.get("test_accuracy"), ".4f")] for i, r in enumerate(rows, 1)]


def leaderboard(rows: Sequence[Mapping[str, Any]], fmt: str = "text") -> str:
    """The runs ranked best first (see :func:`rank`), as a table in ``fmt``."""
    return render_table(LEADERBOARD_COLUMNS, leaderboard_rows(rank(rows)), fmt)


def spread(mean: float | None, pm: float | None) -> str:
    """A score over seeds, ``0.9123 ± 0.0021`` (``–`` when there is none)."""
    return "–" if mean is None else f"{mean:.4f} ± {pm:.4f}"


def verdict(beyond_noise: bool | None) -> str:
    """A paired t-test's verdict on a gap: ``yes``, ``no``, or ``–`` (the leader, or no gap)."""
    return {None: "–", True: "yes", False: "no"}[beyond_noise]


def replicate_leaderboard(rows: Sequence[Mapping[str, Any]], fmt: str = "text") -> str:
    """Models each trained over several seeds, best mean first, as a table in ``fmnist compare --seeds``.

    Each row as :func:`leaderboard_rows` takes, its scores the means over ``runs`` (one per
    seed), plus ``val_accuracy_sd``, ``test_accuracy_sd``, and the paired gap to the leader:
    ``val_gap``, ``val_gap_se`` and ``beyond_noise`` (None on the leader's row).
    """
    ranked, lines = rank(rows), []
    # The columns up to "parameters" are a single run's; the rest are over the seeds.
    for head, r in zip(leaderboard_rows(ranked), ranked):
        epochs = r.get("epochs")
        lines.append(head[:LEADERBOARD_COLUMNS.index("parameters") + 1] + [
            str(len(r["runs"])), _num(epochs, "" if isinstance(epochs, int) else ".1f"),
            _num(r.get("train_time_s"), ".1f"), spread(r["val_accuracy"], r["val_accuracy_sd"]),
            spread(r.get("val_gap"), r.get("val_gap_se")), verdict(r.get("beyond_noise")),
            spread(r.get("test_accuracy"), r.get("test_accuracy_sd"))])
    return render_table(REPLICATE_COLUMNS, lines, fmt)


def optimizer_and_lr(config: Mapping[str, Any] | None) -> tuple[str | None, float | None]:
    """A torch run's optimizer and the learning rate it trained with (the optimizer's default when unset)."""
    if not config:
        return None, None
    name, lr = config.get("optimizer"), config.get("lr")
    if lr is None and name:  # run folders that recorded "not given" rather than the rate used
        from fmnist.training.config import DEFAULT_LR

        lr = DEFAULT_LR.get(name)
    return name, lr
