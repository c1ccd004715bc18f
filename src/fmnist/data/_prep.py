"""Small array preparation steps: train/validation split and scaling."""

from __future__ import annotations

import numpy as np

from fmnist._text import plural
from fmnist.errors import DataError

# The study's validation split, train_test_split(test_size=0.2, random_state=42): every model
# trained on a split (runs, compare, sweeps, the classical benchmark) holds out these 12,000.
VAL_SIZE, SPLIT_SEED = 0.2, 42


def split_indices(n: int, test_size: float = VAL_SIZE, random_state: int = SPLIT_SEED):
    """Return ``(train_idx, val_idx)``, int arrays partitioning ``range(n)``.

    Identical to the indices ``sklearn.model_selection.train_test_split`` picks for
    ``n`` samples with the same ``test_size`` and ``random_state`` (it is called).
    """
    # Imported here: scikit-learn costs ~1 s to import and most loads never split.
    from sklearn.model_selection import train_test_split

    if n < 2:
        raise DataError(f"{plural(n, 'training image')}: too few to hold out a validation split; "
                        "give the data more images (or train with --no-holdout)")
    return tuple(train_test_split(np.arange(n), test_size=test_size, random_state=random_state))


def train_val_split(x, y, test_size: float = VAL_SIZE, random_state: int = SPLIT_SEED):
    """Split ``(x, y)`` into ``(x_tr, x_val, y_tr, y_val)`` along the first axis.

    Same rows as ``train_test_split(x, y, test_size=test_size, random_state=random_state)``;
    for Fashion-MNIST's 60000 training images the defaults give 48000/12000.
    """
    x, y = np.asarray(x), np.asarray(y)
    tr, val = split_indices(len(x), test_size, random_state)
    return x[tr], x[val], y[tr], y[val]


def scale(x) -> np.ndarray:
    """Return ``x / 255.0`` as float32, same shape (uint8 pixels -> [0, 1])."""
    # Dividing in float32 avoids a float64 temporary twice the size of the result.
    return np.asarray(x, dtype=np.float32) / np.float32(255.0)
