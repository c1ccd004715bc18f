import numpy as np
from matplotlib.patches import Rectangle

from fmnist.plots import distance_histogram, finding_counts


def test_distance_histogram_counts_each_series_and_marks_the_threshold(rng):
    near = np.concatenate([rng.uniform(0.1, 0.2, 200), [0.01, 0.02, 0.03]])
    fig = distance_histogram({"test -> train": near, "train -> train": rng.uniform(0.1, 0.3, 50)}, 0.05,
                             xlabel="RMS")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "test -> train (203; 3 flagged)" and labels[1] == "train -> train (50; 0 flagged)"
    assert labels[2] == "threshold 0.05"
    threshold = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(threshold) == 1 and threshold[0].get_xdata()[0] == 0.05
    assert ax.get_yscale() == "log"


def test_outlier_histogram_flags_the_right_side(rng):
    fig = distance_histogram({"x": np.array([0.1, 0.2, 0.9])}, 0.5, xlabel="d", flagged_below=False)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "x (3; 1 flagged)"


def test_finding_counts_bar_heights_are_the_counts():
    fig = finding_counts({"label issues": [3, 0, 5], "outliers": [1, 2, 0]}, ["a", "b", "c"])
    (ax,) = fig.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_height() for b in bars] == [3, 0, 5, 1, 2, 0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_the_legend_counts_what_the_caller_flags_where_more_than_the_distance_decides():
    fig = distance_histogram({"x": np.array([0.1, 0.2, 0.3]), "y": np.array([0.1, 0.9])}, 0.5, xlabel="d",
                             flagged_below=False, flagged={"x": 2})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2] == ["x (3; 2 flagged)", "y (2; 1 flagged)"]
