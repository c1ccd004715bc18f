"""Figures of a data audit: nearest-neighbour distance histograms, findings per class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from fmnist.plots._common import CLASS_NAMES, class_name, new_figure, to_numpy

__all__ = ["distance_histogram", "finding_counts"]


def distance_histogram(distances: Mapping[str, np.ndarray], threshold: float, *, xlabel: str,
                       flagged_below: bool = True, flagged: Mapping[str, int] | None = None, bins: int = 80,
                       title: str | None = None) -> Figure:
    """Histograms of nearest-neighbour distances, one per series, and the threshold as a line.

    ``distances``: label -> float (N,), e.g. ``{"test -> train": ..., "train -> train": ...}``.
    The count axis is logarithmic so the few flagged images in the tail stay visible beside
    the bulk. ``flagged_below``: the flagged side of the threshold (left for duplicates,
    right for outliers), shaded. ``flagged``: label -> the images flagged, for the legend, where
    more than this one distance decides (an outlier by any of its scores, or of one grey level);
    by default those beyond the threshold. Returns a Figure with one axes.
    """
    series = {label: to_numpy(d).astype(np.float64).ravel() for label, d in distances.items()}
    values = np.concatenate([d for d in series.values() if d.size] or [np.zeros(1)])
    top = max(float(values.max()), threshold) * 1.05 or 1.0
    edges = np.linspace(0.0, top, bins + 1)
    fig = new_figure(7.5, 3.4)
    ax = fig.add_subplot()
    for label, d in series.items():
        n = (flagged or {}).get(label, int((d <= threshold).sum() if flagged_below else (d > threshold).sum()))
        ax.hist(d, bins=edges, histtype="step", linewidth=1.4, label=f"{label} ({len(d):,}; {n:,} flagged)")
    ax.axvline(threshold, color="crimson", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.4g}")
    lo, hi = (0.0, threshold) if flagged_below else (threshold, top)
    ax.axvspan(lo, hi, color="crimson", alpha=0.08)
    ax.set_yscale("log")
    ax.set_xlim(0.0, top)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images (log scale)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def finding_counts(counts: Mapping[str, Sequence[int]], class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Grouped bars: for each finding (label -> counts per class), how many images of each class.

    Returns a Figure with one axes; classes along x, one bar colour per finding.
    """
    k = max((len(c) for c in counts.values()), default=len(class_names))
    names = [class_name(i, class_names) for i in range(k)]
    fig = new_figure(max(6.0, 0.8 * k + 2), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(counts))
    for n, (label, c) in enumerate(counts.items()):
        c = np.zeros(k) if len(c) == 0 else np.asarray(c, dtype=float)
        ax.bar(np.arange(k) + (n - (len(counts) - 1) / 2) * width, c, width, label=label)
    ax.set_xticks(np.arange(k), names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    return fig
