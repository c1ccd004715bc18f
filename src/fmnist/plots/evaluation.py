"""Figures of a model's predictions: confusion matrix, per-class scores, mistakes, one image's probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from fmnist.plots._common import (
    CLASS_NAMES,
    as_images,
    as_labels,
    class_name,
    grid_shape,
    n_classes,
    new_figure,
    pixel_limits,
    remove_unused,
    tile_axes,
    to_numpy,
)

__all__ = [
    "confusion_matrix",
    "per_class_metrics",
    "per_class_metrics_figure",
    "misclassified_order",
    "misclassified_gallery",
    "probability_bars",
]


# sklearn is imported inside the functions that use it: importing it costs about two
# seconds, which every `fmnist` command that draws only data figures would otherwise pay.


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_labels(y_true)
    return t, as_labels(y_pred, len(t))


def confusion_matrix(
    y_true,
    y_pred,
    class_names: Sequence[str] = CLASS_NAMES,
    normalize: Literal[False, "true"] = False,
) -> Figure:
    """Confusion matrix with every cell annotated; true class down, predicted across.

    ``y_true``, ``y_pred``: int (N,). ``normalize=False`` shows counts; ``"true"`` divides
    each row by its class's size, so the diagonal is each class's recall. Every named class
    gets a row and a column even if absent, so matrices of different runs line up.
    A class absent from ``y_true`` has no row to divide: normalised, its row reads "–" (NaN,
    left blank), not 0, which would read as a class the model never recognised.
    Returns a Figure with two axes: the matrix and its colour bar.
    """
    if normalize not in (False, None, "true"):
        raise ValueError(f"normalize must be False or 'true', got {normalize!r}")
    from sklearn.metrics import (
        confusion_matrix as sk_confusion_matrix,  # lazy: see the note above _pair
    )

    t, p = _pair(y_true, y_pred)
    k = n_classes(class_names, t, p)
    cm = sk_confusion_matrix(t, p, labels=np.arange(k))
    if normalize:
        support = cm.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):  # 0 / 0 for a class with no images: NaN, as it should be
            cm = cm / support
    names = [class_name(i, class_names) for i in range(k)]

    fig = new_figure(1.0 + 0.75 * k, 0.6 + 0.7 * k)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(1, int(cm.max()))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8)
    for (i, j), v in np.ndenumerate(cm):
        text = "–" if np.isnan(v) else f"{v:.2f}" if normalize else str(int(v))
        # White on the dark half of the colour map, black on the light half: always legible.
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v > vmax / 2 else "black")
    ax.set_xticks(np.arange(k), names, rotation=45, ha="right")
    ax.set_yticks(np.arange(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    return fig


def per_class_metrics(y_true, y_pred, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, list]:
    """Precision, recall, F1 and support of each class, as plain JSON-ready lists.

    ``y_true``, ``y_pred``: int (N,). Returns ``{"class": [names], "precision": [float],
    "recall": [float], "f1": [float], "support": [int]}``, one entry per class in index
    order, from :func:`sklearn.metrics.precision_recall_fscore_support`. A class never
    predicted scores 0 precision (not a warning): a model that ignores a class should look
    bad, not noisy. A class with no images in ``y_true`` (support 0) has no recall and no F1:
    None there (JSON null), not 0, which would read as a class the model always missed; its
    precision is 0 where the model predicted it (every such prediction is wrong), else None.
    """
    from sklearn.metrics import (
        precision_recall_fscore_support,  # lazy: see the note above _pair
    )

    t, p = _pair(y_true, y_pred)
    k = n_classes(class_names, t, p)
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=np.arange(k), zero_division=0
    )
    absent = support == 0
    predicted = np.bincount(p, minlength=k) > 0  # k covers every label given

    def scores(values, undefined) -> list[float | None]:
        return [None if u else float(v) for v, u in zip(values, undefined)]

    return {
        "class": [class_name(i, class_names) for i in range(k)],
        "precision": scores(precision, absent & ~predicted),
        "recall": scores(recall, absent),
        "f1": scores(f1, absent),
        "support": [int(v) for v in support],
    }


def per_class_metrics_figure(metrics: Mapping[str, Sequence]) -> Figure:
    """Grouped bars of precision, recall and F1 per class, from :func:`per_class_metrics`.

    Takes the dict rather than predictions so a figure can be redrawn from a run's saved
    metrics without the model. Tick labels carry each class's support.
    Returns a Figure with one axes.
    """
    names = list(metrics["class"])
    k = len(names)
    x = np.arange(k)
    width = 0.27
    fig = new_figure(max(7.0, 0.9 * k), 4.5)
    ax = fig.add_subplot()
    for offset, key in zip((-width, 0.0, width), ("precision", "recall", "f1")):
        # An undefined score (None: a class with no images) draws no bar, not one of height 0.
        ax.bar(x + offset, np.array(metrics[key], dtype=float), width, label=key)
    support = metrics.get("support")
    ticks = [f"{n}\n(n={s})" for n, s in zip(names, support)] if support is not None else names
    ax.set_xticks(x, ticks, rotation=45, ha="right", fontsize=8)
    # Headroom above 1.0 holds the legend, so it never covers a bar however scores fall.
    ax.set_ylim(0, 1.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncols=3, fontsize=8, loc="upper center", frameon=False)
    return fig


def misclassified_order(y_true, y_pred, proba) -> np.ndarray:
    """Indices of the wrong predictions, most confident first.

    ``y_true``, ``y_pred``: int (N,); ``proba``: float (N, C). Confidence is the probability
    the model gave its own (wrong) prediction, ``proba[i, y_pred[i]]``. Ties keep index
    order, so the result is deterministic. Returns int64 (M,), M = number of mistakes.
    """
    t, p = _pair(y_true, y_pred)
    pr = to_numpy(proba)
    if pr.ndim != 2 or len(pr) != len(t):
        raise ValueError(f"proba of shape {pr.shape}: expected ({len(t)}, n_classes)")
    wrong = np.flatnonzero(t != p)
    confidence = pr[wrong, p[wrong]]
    # Stable sort on the negated confidence: descending, ties in index order.
    return wrong[np.argsort(-confidence, kind="stable")]


def misclassified_gallery(
    images,
    y_true,
    y_pred,
    proba,
    class_names: Sequence[str] = CLASS_NAMES,
    n: int = 25,
) -> Figure:
    """The ``n`` most confident mistakes, each titled ``"true → pred (p=0.97)"``.

    ``images``: uint8 (N, 28, 28) or float in [0, 1]; ``y_true``, ``y_pred``: int (N,);
    ``proba``: float (N, C). Order is :func:`misclassified_order`. Returns a Figure with
    one axes per mistake shown (five to a row), or a single axes saying there were none.
    """
    imgs = as_images(images)
    t = as_labels(y_true, len(imgs))
    p, pr = as_labels(y_pred, len(imgs)), to_numpy(proba)
    order = misclassified_order(t, p, pr)[:n]
    if not len(order):
        fig = new_figure(4.0, 1.5)
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", transform=ax.transAxes)
        return fig
    vmin, vmax = pixel_limits(imgs[order])
    rows, cols = grid_shape(len(order), 5)
    # Tiles wide enough for "T-shirt/top → Pullover (p=0.97)" at a small font.
    fig = new_figure(2.3 * cols, 2.3 * rows)
    axes = tile_axes(fig, rows, cols)
    for ax, i in zip(axes, order):
        ax.imshow(imgs[i], cmap="gray_r", vmin=vmin, vmax=vmax)
        title = f"{class_name(int(t[i]), class_names)} → {class_name(int(p[i]), class_names)} (p={pr[i, p[i]]:.2f})"
        ax.set_title(title, fontsize=7)
    remove_unused(axes, len(order))
    return fig


def probability_bars(proba, class_names: Sequence[str] = CLASS_NAMES, title: str | None = None) -> Figure:
    """Horizontal bars of one image's class probabilities, the argmax highlighted (book 8-2).

    ``proba``: float (C,) for one image (a (1, C) row is accepted). Class 0 is at the top,
    each bar is labelled with its value. Returns a Figure with one axes.
    """
    pr = to_numpy(proba).astype(float)
    if pr.ndim == 2 and pr.shape[0] == 1:
        pr = pr[0]
    if pr.ndim != 1 or not pr.size:
        raise ValueError(f"proba of shape {pr.shape}: expected the (n_classes,) probabilities of one image")
    k = len(pr)
    best = int(np.argmax(pr))
    colours = ["tab:orange" if i == best else "tab:gray" for i in range(k)]
    fig = new_figure(6.0, 0.9 + 0.35 * k)
    ax = fig.add_subplot()
    bars = ax.barh(np.arange(k), pr, color=colours)
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in pr], fontsize=8, padding=2)
    ax.set_yticks(np.arange(k), [class_name(i, class_names) for i in range(k)])
    ax.invert_yaxis()  # read top to bottom in class order, like the study's label list
    ax.set_xlim(0, 1.15)  # room right of a p=1.0 bar for its label
    ax.set_xlabel("probability")
    ax.set_title(title if title is not None else f"Predicted: {class_name(best, class_names)} ({pr[best]:.2f})")
    return fig
