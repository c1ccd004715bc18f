import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmnist.data import scale, split_indices, train_val_split


@pytest.mark.parametrize("n, test_size, seed", [(100, 0.2, 42), (57, 0.3, 0), (10, 3, 1)])
def test_split_matches_sklearn(n, test_size, seed):
    x = np.arange(n * 4).reshape(n, 2, 2)
    y = np.arange(n) % 3
    ours = train_val_split(x, y, test_size=test_size, random_state=seed)
    theirs = train_test_split(x, y, test_size=test_size, random_state=seed)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    tr, val = split_indices(n, test_size, seed)
    assert sorted(np.concatenate([tr, val])) == list(range(n))
    np.testing.assert_array_equal(x[val], ours[1])


def test_scale():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = scale(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, (x / 255.0).astype(np.float32))
    assert out.min() == 0.0 and out.max() == 1.0
