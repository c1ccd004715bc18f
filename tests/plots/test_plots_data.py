import numpy as np
import pytest

from fmnist.plots import CLASS_NAMES, class_counts, class_grid, class_means, sample_row


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.mark.parametrize("n, expected", [(10, 10), (3, 3), (500, 12)])
def test_sample_row_shows_first_n_images_in_order(images, n, expected):
    fig = sample_row(images[:12], n=n)
    axes = _image_axes(fig)
    assert len(fig.axes) == len(axes) == expected
    for i, ax in enumerate(axes):
        assert np.array_equal(ax.images[0].get_array(), images[i])
        assert ax.images[0].get_cmap().name == "gray_r"
        assert not ax.axison


def test_sample_row_titles_each_image_with_its_label_and_class(images):
    labels = np.array([9, 0, 3])
    fig = sample_row(images[:3], labels=labels)
    assert [ax.get_title() for ax in _image_axes(fig)] == ["9\nAnkle boot", "0\nT-shirt/top", "3\nDress"]
    assert [ax.get_title() for ax in _image_axes(sample_row(images[:3]))] == ["", "", ""]
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        sample_row(images[:3], labels=labels[:2])


def test_sample_row_accepts_scaled_floats_and_rejects_unscaled(images):
    assert len(sample_row(images / 255.0).axes) == 10
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_row(images.astype(float))


@pytest.mark.parametrize("per_class", [1, 4, 8])
def test_class_grid_rows_are_classes_labelled_by_name(images, labels, per_class):
    fig = class_grid(images, labels, per_class=per_class)
    (ax,) = fig.axes
    grid = ax.images[0].get_array()
    assert grid.shape == (10 * 30, per_class * 30)  # 28-pixel tiles plus 2-pixel gaps
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    first_bag = np.flatnonzero(labels == 8)[0]
    assert np.array_equal(grid[8 * 30 : 8 * 30 + 28, :28], images[first_bag])
    if per_class > 5:  # only five images per class: the rest of each row stays blank
        assert not grid[:, 5 * 30 :].any()


def test_class_grid_only_present_classes_and_scaled_floats(images, labels):
    keep = labels >= 7
    fig = class_grid(images[keep] / 255.0, labels[keep], per_class=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES[7:])
    assert ax.images[0].get_array().dtype == np.float64


def test_class_counts_bars_and_labels_match_bincount(labels):
    counts = np.bincount(labels[:23], minlength=10)
    fig = class_counts(labels[:23])
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == list(counts)
    assert [t.get_text() for t in ax.texts] == [str(c) for c in counts]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)


def test_class_counts_shows_absent_classes_and_extra_labels():
    fig = class_counts(np.array([0, 0, 11]), class_names=("a", "b"))
    ax = fig.axes[0]
    assert len(ax.patches) == 12
    assert ax.get_xticklabels()[11].get_text() == "11"


def test_class_means_are_the_per_class_means(images, labels):
    fig = class_means(images, labels)
    assert len(fig.axes) == len(_image_axes(fig)) == 10
    for c, ax in enumerate(fig.axes):
        assert ax.get_title().startswith(CLASS_NAMES[c])
        np.testing.assert_allclose(ax.images[0].get_array(), images[labels == c].mean(axis=0))


def test_class_means_uses_only_present_classes(images, labels):
    keep = labels < 3
    fig = class_means(images[keep], labels[keep])
    assert len(fig.axes) == 3
