"""Nearest neighbours: chunked search equals brute force; pixel and cosine distances; shifts."""

import numpy as np
import pytest

from fmnist.auditing import neighbours as nb
from tests.auditing.conftest import garments


def brute(q, b, same=False):
    d = np.sqrt(((q[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    if same:
        np.fill_diagonal(d, np.inf)
    return d


@pytest.mark.parametrize("same", [False, True])
def test_knn_in_chunks_equals_brute_force(same):
    rng = np.random.default_rng(0)
    b = rng.normal(size=(53, 6)).astype(np.float32)
    q = b if same else rng.normal(size=(29, 6)).astype(np.float32)
    dist, index = nb.knn(q, b, 4, same=same, chunk=7)  # several chunks, the last one short
    full = brute(q, b, same)
    expected = np.argsort(full, axis=1)[:, :4]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(dist, np.take_along_axis(full, expected, 1), rtol=1e-4, atol=1e-5)
    if same:
        assert not (index == np.arange(len(q))[:, None]).any()  # never its own neighbour


def test_pixel_knn_reports_exact_rms_and_finds_a_noisy_copy():
    x = garments(np.arange(60) % 10, 0)
    rng = np.random.default_rng(1)
    query = np.clip(x[17] + rng.normal(0, 6, (28, 28)), 0, 255).astype(np.uint8)[None]
    dist, index = nb.pixel_knn(query, x, 3)
    assert index[0, 0] == 17
    rms = np.sqrt(((query[0] / 255.0 - x[index[0]] / 255.0) ** 2).mean((1, 2)))
    np.testing.assert_allclose(dist[0], rms, rtol=1e-5)
    assert (np.diff(dist[0]) >= 0).all() and dist[0, 0] < 0.03 < dist[0, 1]


def test_embedding_distance_is_cosine():
    f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    dist, index = nb.embedding_knn(f[:1], f[1:], 3)
    assert index[0].tolist() == [0, 2, 1]  # the scaled copy first: length does not count
    np.testing.assert_allclose(dist[0], [0.0, 1 - np.sqrt(0.5), 1.0], atol=1e-6)


def test_shifted_rms_matches_a_moved_copy_and_only_within_reach():
    x = garments(np.array([3]), 2)
    moved = np.zeros_like(x)
    moved[:, 1:, :-2] = x[:, :-1, 2:]  # one down, two left
    far = np.zeros_like(x)
    far[:, 3:, :] = x[:, :-3, :]
    assert nb.shifted_rms(moved, x, 2)[0] == 0.0
    assert nb.shifted_rms(moved, x, 1)[0] > 0.05  # two pixels left are out of a one-pixel reach
    assert nb.shifted_rms(far, x, 2)[0] > 0.05
    np.testing.assert_allclose(nb.shifted_rms(x, moved, 0), nb.exact_rms(x, moved, np.array([[0]]))[:, 0], rtol=1e-5)


def test_shifted_knn_finds_a_moved_copy_that_pixels_miss():
    x = garments(np.arange(80) % 10, 3)
    moved = np.zeros((1, 28, 28), np.uint8)
    moved[0, 2:, 1:] = x[41, :-2, :-1]  # two down, one right
    px_dist, px_index = nb.pixel_knn(moved, x, 1)
    assert px_dist[0, 0] > 0.05  # by plain pixels the copy is no nearer than another garment
    dist, index = nb.shifted_knn(moved, x, 3)
    assert index[0, 0] == 41 and dist[0, 0] == 0.0 and dist[0, 1] > 0.05
