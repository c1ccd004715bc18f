"""Planted faults: each kind is what it says, each lands where it is recorded, and the score counts them."""

import numpy as np
import pytest

from fmnist.auditing import neighbours as nb
from fmnist.auditing.planted import (HARD_KINDS, NEAR_KINDS, OUTLIER_KINDS, outlier_image, perturb, plant_faults,
                                     score_audit)
from tests.auditing.conftest import garments


@pytest.mark.parametrize("kind", NEAR_KINDS + HARD_KINDS)
def test_each_perturbation_changes_the_image_as_it_says(kind):
    image = garments(np.array([4]), 0)[0]
    rng = np.random.default_rng(1)
    out = perturb(image, kind, rng)
    assert out.dtype == np.uint8 and out.shape == image.shape and not np.array_equal(out, image)
    if kind == "shift":
        assert nb.correlation_distance(out[None], image[None], 3)[0] < 1e-5
        assert nb.correlation_distance(out[None], image[None], 0)[0] > 1e-3
    if kind == "mirror":
        np.testing.assert_array_equal(out, image[:, ::-1])
    if kind == "contrast":
        assert nb.correlation_distance(out[None], image[None], 0)[0] < 0.01  # the same picture, re-lit
    if kind == "noise":
        assert 2 < np.abs(out.astype(float) - image).mean() < 20


@pytest.mark.parametrize("kind", OUTLIER_KINDS)
def test_each_outlier_kind_is_no_garment(kind):
    like = garments(np.array([2]), 0)[0]
    out = outlier_image(kind, like, np.random.default_rng(2))
    assert out.dtype == np.uint8 and out.shape == like.shape
    flat = out.max() == out.min()
    assert flat == (kind in ("blank", "constant"))
    if kind == "inverted":
        np.testing.assert_array_equal(out, 255 - like)
    if kind == "glyph":
        assert 20 < (out > 128).sum() < 300


def test_faults_land_where_they_are_recorded_and_nowhere_else():
    y_train, y_test = np.arange(200) % 10, np.arange(60) % 10
    x_train, x_test = garments(y_train, 0), garments(y_test, 1)
    p = plant_faults(x_train, y_train, x_test, y_test, seed=4, flips=5, test_flips=3, exact_leaks=2, near_leaks=6,
                     hard_leaks=2, duplicates=2, near_duplicates=6, outliers=10)
    for i, j in p.exact_leaks:
        assert np.array_equal(p.x_test[j], x_train[i]) and p.y_test[j] == y_train[i]
    for i, j, kind in p.near_leaks + p.hard_leaks:
        assert not np.array_equal(p.x_test[j], x_train[i]) and p.y_test[j] == y_train[i]
    assert [k for _, _, k in p.near_leaks] == list(NEAR_KINDS) and [k for *_, k in p.hard_leaks] == list(HARD_KINDS)
    for i, j in p.duplicates:
        assert np.array_equal(p.x_train[j], x_train[i])
    assert [k for *_, k in p.near_duplicates] == list(NEAR_KINDS)
    assert [s for s, *_ in p.outliers] == ["train", "test"] * 5
    assert [k for *_, k in p.outliers] == [k for k in OUTLIER_KINDS for _ in (0, 1)]
    for split, i, original in p.flips:
        assert (p.y_train if split == "train" else p.y_test)[i] != original
    touched_train = ({i for i, _ in p.exact_leaks} | {i for i, *_ in p.near_leaks + p.hard_leaks}
                     | {k for pair in p.duplicates for k in pair} | {k for i, j, _ in p.near_duplicates for k in (i, j)}
                     | {i for s, i, _ in p.outliers if s == "train"} | {i for s, i, _ in p.flips if s == "train"})
    assert len(touched_train) == 2 + 6 + 2 + 4 + 12 + 5 + 5  # all distinct places
    untouched = np.setdiff1d(np.arange(200), sorted(touched_train))
    assert np.array_equal(p.x_train[untouched], x_train[untouched])
    assert np.array_equal(p.y_train[untouched], y_train[untouched])
    with pytest.raises(ValueError, match="more faults"):
        plant_faults(x_train, y_train, x_test, y_test, seed=0, outliers=200)


def test_the_score_counts_what_a_result_names():
    y = np.arange(100) % 10
    p = plant_faults(garments(y, 0), y, garments(y[:50], 1), y[:50], seed=5, flips=4, exact_leaks=2, near_leaks=6,
                     duplicates=2, outliers=4)
    ref = lambda split, i: {"split": split, "index": int(i)}  # noqa: E731
    result = {"exact_duplicates": [{"a": ref("train", i), "b": ref("test", j)} for i, j in p.exact_leaks],
              "near_duplicates": [{"a": ref("test", j), "b": ref("train", i)} for i, j, k in p.near_leaks
                                  if k != "mirror"] + [{"a": ref("train", j), "b": ref("train", i)}
                                                       for i, j in p.duplicates[:1]],
              "label_issues": [{"split": "train", "index": i} for _, i, _ in p.flips[:3]] + [
                  {"split": "train", "index": 99 - n} for n in range(5)],
              "outliers": [{"split": s, "index": i} for s, i, k in p.outliers if k == "blank"]}
    found = score_audit(result, p)
    assert found["exact_leaks"] == 1.0 and found["near_leaks"] == 5 / 6 and found["near_leaks_mirror"] == 0.0
    assert found["near_leaks_shift"] == 1.0 and found["duplicates"] == 0.5  # either order of a pair counts
    assert found["outliers"] == 0.5 and found["outliers_blank"] == 1.0 and found["outliers_constant"] == 0.0
    assert found["flips_train"]["recall_first_n"] == 3 / 4 and found["flips_train"]["flagged"] == 8
    assert found["hard_leaks"] is None and "flips_test" not in found
