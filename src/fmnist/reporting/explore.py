"""The study's data exploration: the facts it prints and the figures it shows, as files.

The tutorial loads Fashion-MNIST, prints the four arrays' shapes and
``np.unique(train_target, return_counts=True)``, lists the first ten labels and shows the
first ten images in a row. :func:`explore` computes the same facts as plain data and
writes those figures (plus a grid of examples per class, the class balance and the class
means) as PNGs; :func:`format_explore` renders the facts as the lines the study printed.

Example::

    result = explore(x_train, y_train, x_test, y_test, "runs/explore")
    print(format_explore(result))
    json.dump(result.to_dict(), open("runs/explore/facts.json", "w"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist._files import check_free, check_other_work, claim, staged
from fmnist._text import plural
from fmnist.errors import DataError
from fmnist.plots import (
    CLASS_NAMES,
    class_counts,
    class_grid,
    class_means,
    sample_row,
    save_figure,
)

__all__ = ["ExploreResult", "explore", "format_explore", "FIGURES"]

# File name of each figure, in the order they are written and listed.
FIGURES = ("samples.png", "class_grid.png", "class_counts.png", "class_means.png")

# The study's names for the four arrays, in its order.
_ARRAYS = ("train_input", "train_target", "test_input", "test_target")


@dataclass
class ExploreResult:
    """What the exploration found, as plain Python data.

    ``shapes``/``dtypes``: per array name (``train_input``, ``train_target``,
    ``test_input``, ``test_target``), e.g. ``(60000, 28, 28)`` / ``"uint8"``.
    ``classes``/``counts``: ``np.unique(train_target, return_counts=True)`` as lists.
    ``first_labels``: the first ten training labels. ``class_names``: the name of each
    class index. ``files``: the figures written, as path strings.
    """

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    classes: list[int]
    counts: list[int]
    first_labels: list[int]
    class_names: list[str]
    files: list[str]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        return d


def explore(
    x_train,
    y_train,
    x_test,
    y_test,
    out_dir: str | Path,
    class_names: Sequence[str] = CLASS_NAMES,
    dpi: int = 100,
    overwrite: bool = False,
) -> ExploreResult:
    """Compute the study's printed facts and write its exploration figures into ``out_dir``.

    ``x_train``/``x_test``: uint8 (N, 28, 28) (or float in [0, 1]); ``y_train``/``y_test``:
    int (N,). Writes :data:`FIGURES` into ``out_dir`` (created if needed); earlier ones
    there are refused (:class:`~fmnist.errors.OutputExistsError`) unless ``overwrite``.
    Returns an :class:`ExploreResult`; prints nothing.
    """
    arrays = dict(zip(_ARRAYS, (np.asarray(a) for a in (x_train, y_train, x_test, y_test))))
    train_x, train_y = arrays["train_input"], arrays["train_target"]
    if not len(train_x):
        raise DataError("no training images to explore: the data's training files hold 0 images")
    classes, counts = np.unique(train_y, return_counts=True)

    out = Path(out_dir)
    figures = {
        "samples.png": lambda: sample_row(train_x, n=10, labels=train_y, class_names=class_names),
        "class_grid.png": lambda: class_grid(train_x, train_y, class_names=class_names),
        "class_counts.png": lambda: class_counts(train_y, class_names=class_names),
        "class_means.png": lambda: class_means(train_x, train_y, class_names=class_names),
    }
    # Claimed, then checked: a second exploration given the same folder is refused, not mixed in.
    with claim(out):
        check_other_work(out, "class_grid.png")
        check_free([out / name for name in FIGURES], overwrite=overwrite, what="an earlier exploration")
        # Staged: an interrupted --overwrite leaves the earlier exploration whole, not half replaced.
        # Each figure is built just before it is saved, so only one is held in memory at a time.
        with staged(out, last="class_grid.png") as stage:
            for name in FIGURES:
                save_figure(figures[name](), stage / name, dpi=dpi)
        files = [str(out / name) for name in FIGURES]

    return ExploreResult(
        shapes={k: tuple(int(d) for d in a.shape) for k, a in arrays.items()},
        dtypes={k: str(a.dtype) for k, a in arrays.items()},
        classes=[int(c) for c in classes],
        counts=[int(n) for n in counts],
        first_labels=[int(v) for v in train_y[:10]],
        class_names=list(class_names),
        files=files,
    )


def format_explore(result: ExploreResult) -> str:
    """The exploration as the lines the study printed, then the files written.

    Example output (real data)::

        train_input  (60000, 28, 28) uint8
        train_target (60000,) uint8
        ...
        np.unique(train_target, return_counts=True)
        (array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=uint8), array([6000, 6000, ...]))
        first ten labels: [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
          9 Ankle boot
          0 T-shirt/top
          ...
        wrote 4 figures:
          runs/explore/samples.png
          ...
    """
    width = max(len(k) for k in result.shapes)
    # tuple(): shapes read back from to_dict() JSON are lists, and should print as numpy does.
    lines = [f"{k:<{width}} {tuple(result.shapes[k])} {result.dtypes[k]}" for k in result.shapes]
    # Written out rather than numpy's repr: the repr depends on global print options and
    # wraps long arrays, and this line should read the same wherever it is printed.
    # numpy names the dtype only when it is not the default int64; so does this line.
    label_dtype = result.dtypes.get("train_target", "int64")
    dtype_part = "" if label_dtype == "int64" else f", dtype={label_dtype}"
    lines.append("np.unique(train_target, return_counts=True)")
    lines.append(f"(array({result.classes}{dtype_part}), array({result.counts}))")
    lines.append(f"first ten labels: {result.first_labels}")
    for label in result.first_labels:
        name = result.class_names[label] if 0 <= label < len(result.class_names) else "?"
        lines.append(f"  {label} {name}")
    lines.append(f"wrote {plural(len(result.files), 'figure')}:")
    lines.extend(f"  {f}" for f in result.files)
    return "\n".join(lines)
