"""Figures of a hyperparameter sweep: the chosen metric against each searched option."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fmnist.plots._common import new_figure

__all__ = ["metric_vs_params"]


def metric_vs_params(trials: Sequence[Mapping[str, Any]], metric: str = "val_accuracy",
                     names: Sequence[str] | None = None, log: Sequence[str] = (),
                     points: Sequence[Mapping[str, Any]] | None = None) -> Figure:
    """One panel per searched option: each trial's ``metric`` against its value of the option.

    ``trials`` are leaderboard rows (``{"params": {...}, metric: float, "status": ...}``);
    failed trials (no metric) are left out, trials a scheduler stopped early are drawn hollow,
    the best (the first row with a metric) in red. Numeric options get a numeric axis (log for
    the ``names`` in ``log``, and for positive values spanning two decades or more), others one
    position per value. ``points``: a sweep over seeds' points (``{"params", metric,
    metric + "_sd", "status"}``, best first): each trial is then a faint dot, and each point its
    mean ± standard deviation over the seeds, the best in red. Returns the Figure.
    """
    rows = [t for t in trials if t.get(metric) is not None]
    if not rows:
        raise ValueError(f"metric_vs_params needs at least one trial with {metric}")
    names = list(names) if names is not None else list(rows[0]["params"])
    if not names:
        raise ValueError("metric_vs_params needs at least one searched option")
    fig = new_figure(min(4.0 * len(names), 16.0), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    y = np.array([float(t[metric]) for t in rows])
    stopped = np.array([t.get("status") == "stopped" for t in rows])
    means = [p for p in points or () if p.get(metric) is not None]
    for ax, name in zip(axes, names):
        values = [t["params"].get(name) for t in rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            def position(v):
                return float(v)
        else:
            labels = sorted({str(v) for v in values})

            def position(v):
                return float(labels.index(str(v)))
            ax.set_xticks(range(len(labels)), labels)
        x = np.array([position(v) for v in values])
        if means:
            ax.scatter(x, y, color="C0", alpha=0.35, s=14, label="each seed", zorder=2)
            px = [position(p["params"].get(name)) for p in means]
            py = [p[metric] for p in means]
            sd = [p[f"{metric}_sd"] for p in means]
            ax.errorbar(px[1:], py[1:], yerr=sd[1:], fmt="o", color="C0", capsize=3, label="mean ± sd", zorder=3)
            ax.errorbar(px[:1], py[:1], yerr=sd[:1], fmt="o", color="C3", capsize=3, label="best", zorder=4)
        else:
            ax.scatter(x[~stopped], y[~stopped], color="C0", label="finished", zorder=2)
            if stopped.any():
                ax.scatter(x[stopped], y[stopped], facecolors="none", edgecolors="C0", label="stopped early",
                           zorder=2)
            ax.scatter(x[:1], y[:1], color="C3", s=60, label="best", zorder=3)
        # Rates and decays are searched over decades: on a linear axis all but the largest crowd at 0.
        if numeric and (name in log or (x.min() > 0 and x.max() >= 100 * x.min())):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
