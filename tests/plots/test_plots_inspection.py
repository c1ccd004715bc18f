import sys

import numpy as np
import pytest

from fmnist.errors import FmnistError
from fmnist.plots import CLASS_NAMES, conv_filters, embed_2d, embedding_2d, feature_maps


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.mark.parametrize("out_ch", [1, 20])  # 20: a full row of 16 and a partial one
def test_conv_filters_one_tile_per_filter_symmetric_limits(rng, out_ch):
    w = rng.normal(0, 0.2, size=(out_ch, 3, 3, 3))
    fig = conv_filters(w)
    tiles = _image_axes(fig)
    assert len(tiles) == out_ch
    assert len(fig.axes) == out_ch + 1  # plus the colour bar
    lim = np.abs(w[:, 0]).max()
    assert tiles[0].images[0].get_clim() == pytest.approx((-lim, lim))
    np.testing.assert_array_equal(tiles[-1].images[0].get_array(), w[-1, 0])


def test_conv_filters_other_channel_and_bad_channel(rng):
    w = rng.normal(size=(4, 2, 3, 3))
    np.testing.assert_array_equal(_image_axes(conv_filters(w, in_channel=1))[0].images[0].get_array(), w[0, 1])
    with pytest.raises(ValueError, match="in_channel=2"):
        conv_filters(w, in_channel=2)


def test_conv_filters_accepts_a_torch_conv_layer():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv2d(1, 8, kernel_size=3)
    assert len(_image_axes(conv_filters(conv))) == 8


@pytest.mark.parametrize("shape, n", [((32, 14, 14), 32), ((1, 5, 7, 7), 5)])
def test_feature_maps_one_tile_per_channel_shared_scale(rng, shape, n):
    maps = rng.random(shape)
    fig = feature_maps(maps)
    tiles = _image_axes(fig)
    assert len(fig.axes) == len(tiles) == n
    assert {ax.images[0].get_clim() for ax in tiles} == {(maps.min(), maps.max())}


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_2d_returns_n_by_2(images, method):
    xy = embed_2d(images, method=method)
    assert xy.shape == (50, 2) and xy.dtype == np.float64
    np.testing.assert_array_equal(xy, embed_2d(images, method=method))  # random_state fixes it


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_embed_2d_of_one_feature_is_the_line_it_spans(rng, method):
    """A one-unit layer (a bottleneck) is drawn too, by any method: its values, centred, on a line."""
    x = rng.random((40, 1))
    np.testing.assert_allclose(embed_2d(x, method=method), np.column_stack([x[:, 0] - x.mean(), np.zeros(40)]))


def test_embed_2d_umap_missing_says_how_to_install(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` raise ImportError
    with pytest.raises(FmnistError, match="pip install umap-learn") as err:
        embed_2d(images, method="umap")
    assert "\n" not in str(err.value)


def test_embed_2d_unknown_method(images):
    with pytest.raises(FmnistError, match="pca, tsne, umap"):
        embed_2d(images, method="lda")


def test_embedding_2d_subsamples_and_labels_classes(images, labels):
    fig = embedding_2d(images.reshape(50, -1), labels, max_points=20)
    (ax,) = fig.axes
    assert sum(len(c.get_offsets()) for c in ax.collections) == 20
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) <= set(CLASS_NAMES) and legend == sorted(legend, key=CLASS_NAMES.index)
    assert ax.get_title() == "PCA of 20 points"


@pytest.mark.parametrize("classes", [10, 12, 26])
def test_every_class_of_an_embedding_has_its_own_colour(rng, classes):
    labels = np.arange(6 * classes) % classes
    fig = embedding_2d(rng.random((len(labels), 5)), labels, class_names=[f"c{i}" for i in range(classes)])
    colours = [tuple(np.round(c.get_facecolor()[0][:3], 4)) for c in fig.axes[0].collections]
    assert len(colours) == classes and len(set(colours)) == classes
