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


@pytest.mark.parametrize("same", [False, True])
def test_knn_over_several_views_takes_each_base_rows_smallest_distance(same):
    rng = np.random.default_rng(1)
    b = rng.normal(size=(53, 6)).astype(np.float32)
    views = [b + rng.normal(scale=0.5, size=b.shape).astype(np.float32) for _ in range(3)] if same else \
        [rng.normal(size=(29, 6)).astype(np.float32) for _ in range(3)]
    dist, index = nb.knn(views, b, 4, same=same, chunk=7)
    full = np.minimum.reduce([brute(v, b) for v in views])
    if same:
        np.fill_diagonal(full, np.inf)
    expected = np.argsort(full, axis=1)[:, :4]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(dist, np.take_along_axis(full, expected, 1), rtol=1e-4, atol=1e-5)


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


def _pearson_brute(a, b, max_shift):
    """1 - the best Pearson correlation over the shared pixels, one move at a time, in float64."""
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        best = -1.0
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                p = x[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)].ravel()
                q = y[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)].ravel()
                best = max(best, 0.0 if p.std() == 0 or q.std() == 0 else np.corrcoef(p, q)[0, 1])
        out.append(1 - best)
    return np.array(out)


def test_correlation_distance_equals_brute_force_over_the_shared_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    b = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    b[0] = np.roll(a[0], (2, -3), (0, 1))  # what wraps round lies outside the shared pixels
    b[1] = np.clip(a[1] * 0.7 + 30, 0, 255).astype(np.uint8)
    b[2] = 0  # no contrast: correlates with nothing
    got = nb.correlation_distance(a, b, 3)
    np.testing.assert_allclose(got, _pearson_brute(a, b, 3), atol=1e-5)
    assert got[0] < 1e-5 and got[1] < 1e-3 and got[2] == 1.0 and (got[3:] > 0.8).all()


def test_correlation_distance_forgives_a_move_only_within_reach():
    x = garments(np.array([3]), 2)
    moved = nb.move(x, np.array([[3, -2]]))  # rows lost at the border do not count against it
    assert nb.correlation_distance(moved, x, 3)[0] < 1e-5
    assert nb.correlation_distance(moved, x, 2)[0] > 0.05


def test_register_brings_a_moved_copy_to_its_original():
    # Compact textured patches near the middle: each has one best place against the mean.
    rng = np.random.default_rng(4)
    x = np.zeros((40, 28, 28), np.uint8)
    for image in x:
        r, c = rng.integers(8, 12, 2)
        image[r:r + 9, c:c + 9] = rng.integers(40, 255, (9, 9))
    template = x.mean(0) / 255
    moved = nb.move(x, np.array([[2, -1]] * len(x)))
    shift = nb.register(moved, template) - nb.register(x, template)
    np.testing.assert_array_equal(shift, np.broadcast_to([2, -1], shift.shape))
    np.testing.assert_array_equal(nb.move(x, np.zeros((len(x), 2), int)), x)


def test_centre_of_mass_follows_the_bright_pixels_not_a_dim_background():
    x = np.zeros((2, 28, 28), np.uint8)
    x[:, 9:13, 16:20] = 200  # centre (10.5, 17.5), the middle (13.5, 13.5)
    x[1] += 30  # a dim veil everywhere does not pull the centre
    np.testing.assert_array_equal(nb.centre_of_mass(x), [[-3, 4], [-3, 4]])
    moved = nb.move(x[:1], np.array([[3, -2]]))
    np.testing.assert_array_equal(nb.centre_of_mass(moved) - nb.centre_of_mass(x[:1]), [[3, -2]])


@pytest.mark.parametrize("change", ["moved", "re-lit", "mirrored"])
def test_aligned_knn_finds_a_changed_copy_that_pixels_miss(change):
    x = garments(np.arange(80) % 10, 3)
    original = x[41:42]
    copy = {"moved": nb.move(original, np.array([[3, -2]])),
            "re-lit": np.clip(original * 0.7 + 25, 0, 255).astype(np.uint8),
            "mirrored": original[:, :, ::-1]}[change]
    px_dist, _ = nb.pixel_knn(copy, x, 1)
    assert px_dist[0, 0] > 0.05  # by plain pixels the copy is no nearer than another garment
    dist, index = nb.aligned_knn(copy, x, 3)
    assert index[0, 0] == 41 and dist[0, 0] < 1e-3 and dist[0, 1] > 0.05
    assert (np.diff(dist[0]) >= 0).all() and len(set(index[0].tolist())) == 3


def test_aligned_knn_within_one_set_is_never_its_own_neighbour():
    x = garments(np.arange(60) % 10, 5)
    x[7] = x[30][:, ::-1]
    dist, index = nb.aligned_knn(x, x, 2, same=True)
    assert not (index == np.arange(len(x))[:, None]).any()
    assert index[7, 0] == 30 and index[30, 0] == 7 and dist[7, 0] < 1e-3


def test_reconstruction_error_is_high_for_an_inverted_image_even_among_a_few_others():
    x = garments(np.arange(300) % 10, 6)
    x[:4] = 255 - x[:4]  # a few odd images in the fitting set must not earn components of their own
    typical = nb.fit_typical_projection(x, components=16)
    error = nb.reconstruction_error(x, typical)
    assert error[:4].min() > 3 * np.median(error[4:])
    plain = nb.reconstruction_error(x, nb.fit_projection(x, components=16))
    assert plain[:4].min() < error[:4].min()


def test_roughness_tells_noise_from_a_garment():
    x = garments(np.arange(20) % 10, 7)
    noise = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    assert nb.roughness(noise).min() > 3 * nb.roughness(x).max()
    np.testing.assert_allclose(nb.roughness(np.zeros((1, 28, 28), np.uint8)), [0.0])


def test_correlation_distance_returns_the_move_that_matches():
    x = garments(np.array([2, 5]), 6)
    moved = nb.move(x, np.array([[2, -3], [-1, 0]]))
    dist, moves = nb.correlation_distance(moved, x, 3, return_moves=True)
    assert (dist < 1e-5).all()
    np.testing.assert_array_equal(moves, [[2, -3], [-1, 0]])


def test_residual_noise_tells_a_noisy_copy_from_another_garment(real_data):
    # Real garments: a copy moved and then made noisy (sd 16 grey levels) against its original;
    # each original against another garment of its class as far from it; and against itself
    # with a print (noise on the garment only, none on the black background).
    rng = np.random.default_rng(0)
    x, y = real_data.x_train[:400], real_data.y_train[:400]
    copies = np.clip(nb.move(x, np.array([[2, -1]] * len(x))) + rng.normal(0, 16, x.shape), 0, 255).astype(np.uint8)
    d_copy, m_copy = nb.correlation_distance(copies, x, 3, return_moves=True)
    shapeless, everywhere = nb.residual_noise(copies, x, m_copy)
    others = np.array([next(j for j in range(len(x)) if j != i and y[j] == y[i]) for i in range(len(x))])
    d_other, m_other = nb.correlation_distance(x, x[others], 3, return_moves=True)
    shaped, _ = nb.residual_noise(x, x[others], m_other)
    printed = np.where(x > 0, np.clip(x + rng.normal(0, 16, x.shape), 0, 255), 0).astype(np.uint8)
    _, m_print = nb.correlation_distance(printed, x, 3, return_moves=True)
    print_shapeless, on_garment = nb.residual_noise(printed, x, m_print)
    assert np.median(d_copy) > 0.006  # beyond the aligned threshold: distance alone would miss them
    assert ((shapeless < 0.1) & (everywhere > 0.4)).mean() >= 0.97
    assert (shaped[d_other <= np.quantile(d_copy, 0.9)] > 0.1).all()
    assert (print_shapeless < 0.1).mean() >= 0.9 and (on_garment < 0.1).all()


def test_aligned_knn_against_another_set_finds_copies_moved_past_registration(real_data):
    # Moved by up to 3 pixels each way, garments that fill the frame lose rows and columns,
    # which can throw registration off; the unaligned search at every move still finds them.
    rng = np.random.default_rng(1)
    base = real_data.x_train[:3000]
    picks = rng.choice(len(base), 40, replace=False)
    offsets = rng.integers(-3, 4, (40, 2))
    copies = nb.move(base[picks], offsets)
    _, index = nb.aligned_knn(copies, base, 6)
    assert (index == picks[:, None]).any(1).all()


def test_aligned_knn_within_one_set_finds_copies_moved_past_registration(real_data):
    # The same within the training set: a pair is found from either of its images.
    rng = np.random.default_rng(2)
    x = real_data.x_train[:3000].copy()
    picks = rng.choice(len(x), 60, replace=False)
    originals, copies = picks[:30], picks[30:]
    x[copies] = nb.move(x[originals], rng.integers(-3, 4, (30, 2)))
    _, index = nb.aligned_knn(x, x, 3, same=True)
    assert all(o in index[c] or c in index[o] for o, c in zip(originals, copies))
