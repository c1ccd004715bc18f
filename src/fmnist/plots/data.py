"""Figures of the dataset itself: sample images, examples per class, class balance, means."""

from __future__ import annotations

from collections.abc import Sequence

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
)

__all__ = ["sample_row", "class_grid", "class_counts", "class_means"]


def sample_row(images, n: int = 10, labels=None, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """The first ``n`` images in one row, ``gray_r``, axes off: the study's first figure.

    ``images``: uint8 (N, 28, 28), or float in [0, 1]; (N, 784) rows are reshaped.
    ``labels``: int (N,), optional; each image is then titled with its label and class name
    (``9 Ankle boot``), as the study prints them beside its row.
    Returns a Figure with ``min(n, N)`` axes, one image each.

    Example::

        fig = sample_row(x_train, labels=y_train)   # shows in a notebook
        save_figure(fig, "samples.png")
    """
    imgs = as_images(images)[:n]
    if n < 1 or len(imgs) == 0:
        raise ValueError(f"sample_row needs at least one image (n={n}, {len(as_images(images))} given)")
    labs = as_labels(labels, len(as_images(images)))[:n] if labels is not None else None
    vmin, vmax = pixel_limits(imgs)
    fig = new_figure(len(imgs), 1.2 if labs is None else 1.5)
    for i, (ax, img) in enumerate(zip(tile_axes(fig, 1, len(imgs)), imgs)):
        ax.imshow(img, cmap="gray_r", vmin=vmin, vmax=vmax)
        if labs is not None:
            # Two lines: long names ("T-shirt/top") stay within their own image's width.
            ax.set_title(f"{int(labs[i])}\n{class_name(int(labs[i]), class_names)}", fontsize=7)
    return fig


def _montage(rows: list[np.ndarray], cols: int, tile_shape: tuple[int, int], blank: np.generic, pad: int) -> np.ndarray:
    """Lay ``rows`` (each (k <= cols, h, w)) into one (len(rows)*(h+pad), cols*(w+pad)) array.

    ``blank`` (a numpy scalar of the images' dtype) fills the gaps and the missing tiles.
    """
    h, w = tile_shape
    out = np.full((len(rows) * (h + pad), cols * (w + pad)), blank)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return out


def class_grid(images, labels, per_class: int = 8, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """The first ``per_class`` images of every class present, one row per class.

    ``images``: uint8 (N, H, W) or float in [0, 1]; ``labels``: int (N,).
    The tiles are laid into one montage image with thin blank gaps, drawn in a single
    axes whose y tick labels are the class names; a class with fewer than ``per_class``
    images leaves the rest of its row blank. Returns a Figure with one axes holding one
    image of shape ``(n_classes_present * (H + 2), per_class * (W + 2))``.
    """
    imgs = as_images(images)
    labs = as_labels(labels, len(imgs))
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    classes = np.unique(labs)
    # The first examples rather than a random draw: the figure is the same on every run,
    # as the study's "first ten" row is.
    rows = [imgs[np.flatnonzero(labs == c)[:per_class]] for c in classes]
    vmin, vmax = pixel_limits(np.concatenate(rows) if rows else imgs[:0])
    h, w = imgs.shape[1:]
    pad = 2
    # One image instead of an axes per tile: 80 axes take seconds to build and render,
    # a montage milliseconds; vmin is white in gray_r, so gaps and blanks read as paper.
    grid = _montage(rows, per_class, (h, w), imgs.dtype.type(vmin), pad=pad)

    fig = new_figure(1.6 + 0.8 * per_class, 0.3 + 0.8 * max(1, len(classes)))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(
        np.arange(len(classes)) * (h + pad) + (h - 1) / 2,
        [class_name(int(c), class_names) for c in classes],
    )
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"First {per_class} images of each class")
    return fig


def class_counts(labels, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Bar chart of images per class, each bar labelled with its count.

    ``labels``: int (N,). Every named class gets a bar, even with zero images, so a
    missing class shows instead of silently disappearing. Returns a Figure with one axes.
    """
    labs = as_labels(labels)
    k = n_classes(class_names, labs)
    counts = np.bincount(labs, minlength=k)
    fig = new_figure(max(6.0, 0.7 * k), 4.0)
    ax = fig.add_subplot()
    bars = ax.bar(np.arange(k), counts, color="tab:blue")
    ax.bar_label(bars, labels=[str(c) for c in counts], fontsize=8, padding=2)
    ax.set_xticks(np.arange(k), [class_name(i, class_names) for i in range(k)], rotation=45, ha="right")
    ax.set_ylabel("images")
    ax.set_title(f"Images per class ({len(labs)} in all)")
    ax.margins(y=0.12)  # room above the tallest bar for its label
    return fig


def class_means(images, labels, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """The mean image of each class present, titled with the class name and count.

    ``images``: uint8 (N, 28, 28) or float in [0, 1]; ``labels``: int (N,).
    Returns a Figure with one axes (one image) per class present, five to a row.
    """
    imgs = as_images(images)
    labs = as_labels(labels, len(imgs))
    classes = np.unique(labs)
    vmin, vmax = pixel_limits(imgs)  # the means are drawn on the inputs' own scale
    rows, cols = grid_shape(len(classes), 5)
    fig = new_figure(2.0 * cols, 2.2 * rows)
    if not len(classes):
        return fig
    axes = tile_axes(fig, rows, cols)
    for ax, c in zip(axes, classes):
        members = labs == c
        # float64 accumulation per class: averaging 6,000 uint8 images in uint8 would
        # overflow, and converting the whole set to float at once costs ~400 MB.
        mean = imgs[members].mean(axis=0, dtype=np.float64)
        ax.imshow(mean, cmap="gray_r", vmin=vmin, vmax=vmax)
        ax.set_title(f"{class_name(int(c), class_names)}\n(n={int(members.sum())})", fontsize=9)
    remove_unused(axes, len(classes))
    return fig
