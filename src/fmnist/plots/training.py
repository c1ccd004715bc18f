"""Figures of a training run: loss and accuracy per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from fmnist.plots._common import new_figure

__all__ = ["learning_curves"]

History = Sequence[Mapping[str, float]]


def _runs(history) -> dict[str, History]:
    """Normalise the accepted shapes of ``history`` to ``{label: [epoch dicts]}``."""
    if isinstance(history, Mapping):
        return {str(k): list(v) for k, v in history.items()}
    history = list(history)
    if history and all(isinstance(h, Mapping) for h in history):
        return {"": history}  # one run: no legend entry needed for its name
    if all(not isinstance(h, Mapping) for h in history):
        return {f"run {i + 1}": list(h) for i, h in enumerate(history)}
    raise TypeError("history must be a list of per-epoch dicts, a list of such lists, or {label: list}")


def _series(epochs: History, key: str) -> np.ndarray:
    """Values of ``key`` per epoch as floats, NaN where an epoch lacks it (a gap in the line)."""
    return np.array([np.nan if e.get(key) is None else float(e[key]) for e in epochs], dtype=float)


def learning_curves(history) -> Figure:
    """Loss and accuracy per epoch, train solid and validation dashed (the book's 7-3 plots).

    ``history`` is the list of per-epoch dicts a training run returns, e.g.
    ``[{"epoch": 1, "loss": 0.53, "accuracy": 0.81, "val_loss": 0.44, "val_accuracy": 0.84}, ...]``
    (``val_*`` keys optional), or several runs to compare: ``{"mlp-200": hist1,
    "softmax": hist2}`` or a list of such lists (labelled "run 1", "run 2", ...). Each run
    keeps one colour across both panels. The x axis is each dict's ``"epoch"`` (1, 2, ...
    when absent). Returns a Figure with two axes: loss, then accuracy.
    """
    runs = _runs(history)
    if not runs or not any(runs.values()):
        raise ValueError("learning_curves needs at least one epoch of history")
    fig = new_figure(11.0, 4.0)
    ax_loss, ax_acc = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for (label, epochs), colour in zip(runs.items(), colours):
        if not epochs:
            continue
        x = np.array([e.get("epoch", i + 1) for i, e in enumerate(epochs)], dtype=float)
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            for key, style, split in ((metric, "-", "train"), (f"val_{metric}", "--", "val")):
                y = _series(epochs, key)
                if np.isnan(y).all():
                    continue
                name = f"{label} {split}" if label else split
                # A marker as well as a line: a one-epoch run would otherwise draw nothing.
                ax.plot(x, y, linestyle=style, marker="o", markersize=3, color=colour, label=name)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    # One legend for both panels, below them: inside an axes, several runs' entries would
    # cover the very curves they name (accuracy rises into the corner a legend sits in).
    entries = {line.get_label(): line for ax in (ax_loss, ax_acc) for line in ax.lines}
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", fontsize=8,
                   ncols=min(len(entries), 4), frameon=False)
    # Epochs are whole numbers; without this a 3-epoch run gets ticks at 1.5, 2.5.
    ax_loss.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.xaxis.get_major_locator().set_params(integer=True)
    return fig
