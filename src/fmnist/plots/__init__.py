"""Figures for Fashion-MNIST studies, as pure functions that return matplotlib Figures.

Every function takes numpy arrays (torch tensors work too) and returns a
:class:`matplotlib.figure.Figure` built without pyplot, so it touches no global state:
it shows itself as a notebook cell's value and renders headless with Agg.
:func:`save_figure` writes one to disk atomically.

Images are uint8 (N, 28, 28), or float in [0, 1]; labels are int (N,).

Example::

    from fmnist.plots import sample_row, confusion_matrix, save_figure
    save_figure(sample_row(x_train), "samples.png")
    save_figure(confusion_matrix(y_test, y_pred, normalize="true"), "confusion.png")
"""

from fmnist.plots._common import CLASS_NAMES, save_figure
from fmnist.plots.audit import distance_histogram, finding_counts
from fmnist.plots.data import class_counts, class_grid, class_means, sample_row
from fmnist.plots.evaluation import (
    confusion_matrix,
    misclassified_gallery,
    misclassified_order,
    per_class_metrics,
    per_class_metrics_figure,
    probability_bars,
)
from fmnist.plots.inspection import (
    EMBED_METHODS,
    conv_filters,
    embed_2d,
    embedding_2d,
    feature_maps,
)
from fmnist.plots.sweep import metric_vs_params
from fmnist.plots.training import learning_curves

__all__ = [
    "CLASS_NAMES",
    "EMBED_METHODS",
    "save_figure",
    # data
    "sample_row",
    "class_grid",
    "class_counts",
    "class_means",
    # training
    "learning_curves",
    "metric_vs_params",
    # evaluation
    "confusion_matrix",
    "per_class_metrics",
    "per_class_metrics_figure",
    "misclassified_order",
    "misclassified_gallery",
    "probability_bars",
    # inspection
    "conv_filters",
    "feature_maps",
    "embed_2d",
    "embedding_2d",
    # data audit
    "distance_histogram",
    "finding_counts",
]
