"""Machinery shared by the figure modules: class names, array coercion, grids, saving.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: pyplot keeps a global registry of open figures and a process-wide backend, so
a library that used it would leak figures in long runs and fight a notebook's own backend.
A bare ``Figure`` renders to PNG with the Agg canvas on a machine with no display, and
Jupyter displays it when it is the value of a cell.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fmnist._files import atomic_write
from fmnist.data import CLASS_NAMES  # noqa: F401 (re-exported: the plots' default class names)

__all__ = ["CLASS_NAMES", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically and return the path.

    The image goes to a temporary file in the same folder, which is then renamed over
    ``path``: a reader never sees half a PNG, and an interrupted run leaves the old figure
    in place. The format follows the suffix (``.png`` unless it is another format
    matplotlib writes, such as ``.svg`` or ``.pdf``); missing parent folders are created.

    Example::

        save_figure(sample_row(x_train), "runs/explore/samples.png", dpi=150)
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with warnings.catch_warnings():
        # A title in a script the font lacks (a file named in Chinese) is drawn as boxes; matplotlib's
        # warning about it, with its source line, would be noise on the user's terminal.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with constrained layout (labels never overlap neighbours)."""
    return Figure(figsize=(width, height), layout="constrained")


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array; torch tensors (even on a GPU, even needing grad) included.

    Duck-typed on ``.detach`` so this module never imports torch, which costs seconds.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_images(images) -> np.ndarray:
    """Images as an (N, H, W) array, accepting (N, H*W) rows and (N, 1, H, W) tensors.

    The study flattens images to (N, 784) for its dense networks and torch convolutions
    use (N, 1, 28, 28); both come back here as (N, 28, 28) views, without copying.
    """
    arr = to_numpy(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ValueError(f"images of shape {arr.shape}: rows of {arr.shape[1]} pixels are not square")
        arr = arr.reshape(-1, side, side)
    if arr.ndim != 3:
        raise ValueError(f"images of shape {arr.shape}: expected (N, H, W), (N, H*W) or (N, 1, H, W)")
    return arr


def as_labels(labels, n: int | None = None) -> np.ndarray:
    """Labels as a 1-D int64 array of non-negative class indices (length ``n`` if given)."""
    arr = to_numpy(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels of shape {arr.shape}: expected a 1-D array of class indices")
    if n is not None and len(arr) != n:
        raise ValueError(f"{len(arr)} labels for {n} images: they must match one to one")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise ValueError("labels must be non-negative integer class indices")
    return arr.astype(np.int64, copy=False)


def pixel_limits(shown: np.ndarray) -> tuple[float, float]:
    """imshow's (vmin, vmax) for the images actually drawn.

    Fixed limits, not imshow's per-image autoscale: a faint image must look faint and
    a class mean must be comparable with its neighbours. Integers are 0..255; floats must
    already be scaled to [0, 1] (the study divides by 255), and a float array beyond that
    fails loudly rather than drawing a saturated black square.
    """
    if np.issubdtype(shown.dtype, np.integer):
        return 0.0, 255.0
    if shown.size and (np.nanmax(shown) > 1.0 or np.nanmin(shown) < 0.0):
        raise ValueError(
            f"float images range over [{np.nanmin(shown):g}, {np.nanmax(shown):g}]: "
            "scale them to [0, 1] (divide by 255) or pass uint8"
        )
    return 0.0, 1.0


def class_name(index: int, class_names: Sequence[str]) -> str:
    """The name of class ``index``, or its number when the names list is shorter."""
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def n_classes(class_names: Sequence[str], *label_arrays: np.ndarray) -> int:
    """How many classes to draw: every named class, plus any label beyond the names."""
    top = max((int(a.max()) + 1 for a in label_arrays if a.size), default=0)
    return max(len(class_names), top)


def class_colours(n: int) -> list:
    """A distinct colour for each of ``n`` classes, by class index: tab10's for ten or fewer (a
    class keeps its colour across figures and runs), tab20's up to twenty, then an even spread."""
    from matplotlib import colormaps

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return list(colormaps["tab20"].colors[:n])
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """(rows, cols) for ``n`` tiles, at most ``max_cols`` wide."""
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def tile_axes(fig: Figure, rows: int, cols: int) -> list[Axes]:
    """A rows x cols grid of image axes, flattened in reading order, all axes off."""
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes:
        ax.axis("off")
    return axes


def remove_unused(axes: Sequence[Axes], used: int) -> None:
    """Delete the grid's trailing empty tiles so they take no space and count as no axes."""
    for ax in axes[used:]:
        ax.remove()
