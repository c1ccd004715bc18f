import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from fmnist.plots import (
    CLASS_NAMES,
    confusion_matrix,
    misclassified_gallery,
    misclassified_order,
    per_class_metrics,
    per_class_metrics_figure,
    probability_bars,
)


@pytest.fixture
def y_pred(labels, rng):
    """Right about 60% of the time."""
    wrong = rng.random(len(labels)) < 0.4
    return np.where(wrong, (labels + rng.integers(1, 10, len(labels))) % 10, labels)


@pytest.mark.parametrize("normalize", [False, "true"])
def test_confusion_matrix_matches_sklearn_and_annotates_every_cell(labels, y_pred, normalize):
    fig = confusion_matrix(labels, y_pred, normalize=normalize)
    ax, colorbar = fig.axes
    expected = sk_confusion_matrix(labels, y_pred, normalize="true" if normalize else None)
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert len(ax.texts) == 100
    assert ax.texts[0].get_text() == (f"{expected[0, 0]:.2f}" if normalize else str(expected[0, 0]))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)


def test_confusion_matrix_keeps_absent_classes_so_runs_line_up():
    fig = confusion_matrix([0, 1], [1, 1])
    assert fig.axes[0].images[0].get_array().shape == (10, 10)


def test_confusion_matrix_rejects_other_normalisations(labels):
    with pytest.raises(ValueError, match="normalize"):
        confusion_matrix(labels, labels, normalize="all")


def test_per_class_metrics_match_sklearn_and_are_json(labels, y_pred):
    m = per_class_metrics(labels, y_pred)
    p, r, f, s = precision_recall_fscore_support(labels, y_pred, labels=np.arange(10), zero_division=0)
    assert m["class"] == list(CLASS_NAMES)
    np.testing.assert_allclose(m["precision"], p)
    np.testing.assert_allclose(m["recall"], r)
    np.testing.assert_allclose(m["f1"], f)
    assert m["support"] == list(s)
    assert json.loads(json.dumps(m)) == m


def test_a_class_with_no_images_scores_undefined_not_zero():
    # Class 3 has no images but is predicted once; classes 4..9 are neither.
    y_true, y_pred = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 3])
    m = per_class_metrics(y_true, y_pred)
    assert m["support"][3:] == [0] * 7
    assert m["recall"][3:] == [None] * 7 and m["f1"][3:] == [None] * 7
    assert m["precision"][3:] == [0.0] + [None] * 6  # its one prediction was wrong: a real 0
    assert m["recall"][:3] == [0.5, 1.0, 0.5] and m["precision"][:3] == pytest.approx([1.0, 2 / 3, 1.0])
    assert json.loads(json.dumps(m)) == m  # null in JSON, never NaN
    per_class_metrics_figure(m)  # drawn without bars for what is undefined

    ax = confusion_matrix(y_true, y_pred, normalize="true").axes[0]
    cells = np.ma.getdata(ax.images[0].get_array())  # imshow masks the NaNs
    assert np.isnan(cells[3:]).all() and not np.isnan(cells[:3]).any()
    assert cells[1, 1] == 1.0
    texts = [t.get_text() for t in ax.texts]
    assert texts[30:] == ["–"] * 70 and texts[:3] == ["0.50", "0.50", "0.00"]


def test_per_class_metrics_figure_has_three_bars_per_class(labels, y_pred):
    fig = per_class_metrics_figure(per_class_metrics(labels, y_pred))
    (ax,) = fig.axes
    assert len(ax.patches) == 30
    assert ax.get_xticklabels()[0].get_text() == f"{CLASS_NAMES[0]}\n(n=5)"


def test_misclassified_order_most_confident_first_ties_by_index():
    y_true = np.array([0, 1, 2, 3, 4, 5])
    y_pred = np.array([1, 1, 0, 0, 0, 0])  # index 1 is right; the rest are wrong
    proba = np.zeros((6, 10))
    proba[np.arange(6), y_pred] = [0.6, 0.99, 0.9, 0.6, 0.95, 0.3]
    assert misclassified_order(y_true, y_pred, proba).tolist() == [4, 2, 0, 3, 5]


def test_misclassified_order_checks_proba_shape():
    with pytest.raises(ValueError, match="proba of shape"):
        misclassified_order([0, 1], [1, 0], np.zeros((3, 10)))


@pytest.mark.parametrize("n", [1, 7, 100])
def test_gallery_titles_in_confidence_order(images, labels, y_pred, proba, n):
    order = misclassified_order(labels, y_pred, proba)
    fig = misclassified_gallery(images, labels, y_pred, proba, n=n)
    shown = order[:n]
    assert len(fig.axes) == len(shown)
    i = shown[0]
    assert fig.axes[0].get_title() == (
        f"{CLASS_NAMES[labels[i]]} → {CLASS_NAMES[y_pred[i]]} (p={proba[i, y_pred[i]]:.2f})"
    )
    assert np.array_equal(fig.axes[-1].images[0].get_array(), images[shown[-1]])


def test_gallery_without_mistakes_says_so(images, labels, proba):
    fig = misclassified_gallery(images, labels, labels, proba)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no misclassified images"]


def test_probability_bars_highlight_argmax(proba):
    fig = probability_bars(proba[0])
    (ax,) = fig.axes
    assert len(ax.patches) == 10
    best = int(np.argmax(proba[0]))
    colours = [tuple(p.get_facecolor()) for p in ax.patches]
    assert sum(c == colours[best] for c in colours) == 1
    assert CLASS_NAMES[best] in ax.get_title()
    assert probability_bars(proba[:1], title="x").axes[0].get_title() == "x"
