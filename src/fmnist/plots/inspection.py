"""Figures that look inside a model: conv filters, feature maps, 2-D embeddings of features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from fmnist.errors import FmnistError
from fmnist.plots._common import (
    CLASS_NAMES,
    as_labels,
    class_colours,
    class_name,
    grid_shape,
    n_classes,
    new_figure,
    remove_unused,
    tile_axes,
    to_numpy,
)

__all__ = ["conv_filters", "feature_maps", "embed_2d", "embedding_2d", "EMBED_METHODS"]

EMBED_METHODS = ("pca", "tsne", "umap")


def _symmetric_limit(values: np.ndarray) -> float:
    """The largest magnitude, so a diverging map puts 0 at its neutral middle colour."""
    lim = float(np.nanmax(np.abs(values))) if values.size else 0.0
    return lim if lim > 0 else 1.0  # an all-zero layer still needs a valid colour range


def conv_filters(weight, in_channel: int = 0, max_cols: int = 16) -> Figure:
    """The kernels of a conv layer for one input channel, in a diverging colour map (book 8-3).

    ``weight``: float (out_ch, in_ch, kh, kw), e.g. ``conv.weight``; a torch tensor or an
    ``nn.Conv2d`` (anything with a 4-D ``.weight``) is accepted too. Colours run
    symmetrically from ``-m`` (blue) to ``+m`` (red), ``m`` the largest magnitude among the
    kernels shown, so white means zero in every tile. Returns a Figure with one axes per
    output channel (``max_cols`` to a row) plus one colour bar.
    """
    w = to_numpy(getattr(weight, "weight", weight))
    if w.ndim != 4:
        raise ValueError(f"conv weight of shape {w.shape}: expected (out_ch, in_ch, kh, kw)")
    if not 0 <= in_channel < w.shape[1]:
        raise ValueError(f"in_channel={in_channel} but the layer has {w.shape[1]} input channels")
    kernels = w[:, in_channel]
    lim = _symmetric_limit(kernels)
    rows, cols = grid_shape(len(kernels), max_cols)
    fig = new_figure(0.75 * cols + 1.0, 0.8 * rows + 0.5)
    axes = tile_axes(fig, rows, cols)
    im = None
    for ax, k in zip(axes, kernels):
        im = ax.imshow(k, cmap="RdBu_r", vmin=-lim, vmax=lim)
    remove_unused(axes, len(kernels))
    if im is not None:
        fig.colorbar(im, ax=axes[: len(kernels)], shrink=0.8)
    fig.suptitle(f"{len(kernels)} filters {w.shape[2]}x{w.shape[3]}, input channel {in_channel}")
    return fig


def feature_maps(maps, max_cols: int = 8, title: str | None = None) -> Figure:
    """The activations of every channel of a layer for one image, in a grid (book 8-3).

    ``maps``: float (C, H, W), or (1, C, H, W) straight from a batch of one. All channels
    share one colour scale: a channel that stayed near zero looks dark instead of being
    stretched into noise, as per-tile autoscaling would do. Returns a Figure with one
    axes per channel, ``max_cols`` to a row.
    """
    m = to_numpy(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3 or not len(m):
        raise ValueError(f"feature maps of shape {m.shape}: expected (C, H, W) for one image")
    vmin, vmax = float(np.nanmin(m)), float(np.nanmax(m))
    if vmin == vmax:
        vmax = vmin + 1.0
    rows, cols = grid_shape(len(m), max_cols)
    fig = new_figure(1.2 * cols, 1.2 * rows + 0.4)
    axes = tile_axes(fig, rows, cols)
    for ax, channel in zip(axes, m):
        ax.imshow(channel, cmap="viridis", vmin=vmin, vmax=vmax)
    remove_unused(axes, len(m))
    fig.suptitle(title if title is not None else f"{len(m)} feature maps {m.shape[1]}x{m.shape[2]}")
    return fig


def check_method(method: str):
    """Refuse (:class:`FmnistError`) an embedding ``method`` that cannot run here, before any
    work: an unknown one, or umap without umap-learn. Returns the umap module for ``"umap"``."""
    if method not in EMBED_METHODS:
        raise FmnistError(f"embedding method {method!r} is unknown: use one of {', '.join(EMBED_METHODS)}")
    if method != "umap":
        return None
    try:
        import umap  # optional: heavy (numba) and not needed for PCA or t-SNE
    except ImportError:
        raise FmnistError("embedding method 'umap' needs the umap-learn package: pip install umap-learn "
                          "(or use method 'pca' or 'tsne')") from None
    return umap


def embed_2d(
    features,
    method: Literal["pca", "tsne", "umap"] = "pca",
    random_state: int = 0,
) -> np.ndarray:
    """Project ``features`` to two dimensions.

    ``features``: float (N, D), or images (N, H, W) which are flattened. ``method``:
    ``"pca"`` (fast, linear), ``"tsne"`` (sklearn's t-SNE; slow beyond a few thousand
    points) or ``"umap"`` (needs ``umap-learn``). Returns float64 (N, 2); one feature is
    returned as its centred values beside zeros, whatever the method.
    Raises FmnistError for an unknown method or when umap-learn is missing.
    """
    if method not in EMBED_METHODS:
        check_method(method)
    x = to_numpy(features)
    x = x.reshape(len(x), -1).astype(np.float64, copy=False)
    if len(x) < 2:
        raise ValueError(f"a 2-D embedding needs at least 2 points, got {len(x)}")
    if x.shape[1] < 2:  # one feature (a one-unit layer) spans a line: drawn as it is, centred, by every method
        return np.column_stack([x[:, 0] - x[:, 0].mean(), np.zeros(len(x))])

    if method == "umap":
        umap = check_method(method)
        return np.asarray(umap.UMAP(n_components=2, random_state=random_state).fit_transform(x), dtype=np.float64)

    from sklearn.decomposition import PCA

    if method == "pca":
        return PCA(n_components=2, random_state=random_state).fit_transform(x)

    from sklearn.manifold import TSNE

    # Reduce to 50 dimensions first, as the t-SNE authors advise: it removes pixel noise
    # and makes the neighbour search several times faster on 784-pixel inputs.
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=random_state).fit_transform(x)
    # sklearn requires perplexity < N; 30 is its default, scaled down for small samples.
    perplexity = min(30.0, max(1.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    return tsne.fit_transform(x).astype(np.float64, copy=False)


def embedding_2d(
    features,
    labels,
    method: Literal["pca", "tsne", "umap"] = "pca",
    class_names: Sequence[str] = CLASS_NAMES,
    max_points: int = 5000,
    random_state: int = 0,
) -> Figure:
    """Scatter of a 2-D embedding of ``features``, coloured by class, with a legend.

    ``features``: float (N, D) (e.g. a hidden layer's activations) or images (N, H, W);
    ``labels``: int (N,). At most ``max_points`` points are embedded, drawn at random with
    ``random_state`` (t-SNE is quadratic in N). Returns a Figure with one axes.
    """
    x = to_numpy(features)
    labs = as_labels(labels, len(x))
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(random_state).choice(len(x), max_points, replace=False))
        x, labs = x[keep], labs[keep]
    xy = embed_2d(x, method=method, random_state=random_state)

    fig = new_figure(8.0, 6.5)
    ax = fig.add_subplot()
    colours = class_colours(n_classes(class_names, labs))
    for c in np.unique(labs):
        pts = xy[labs == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=5, alpha=0.7, color=colours[int(c)], label=class_name(int(c), class_names))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    label = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}[method]
    ax.set_title(f"{label} of {len(xy)} points")
    return fig
