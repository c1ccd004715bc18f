"""Tiny garment-like images for the audit: black background, a class band and a random patch."""

from __future__ import annotations

import numpy as np
import pytest


def garments(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 (N, 28, 28): class ``y`` lights rows 3+2y..5+2y; a random patch makes each image its own.

    The background is 0, as in Fashion-MNIST, so an image moved by a pixel or two is the same
    picture; images differ from one another by far more than noise or a re-encoding changes one.
    The patch is 3x3 random blocks of 3x3 pixels: like parts of a garment, two patches differ in
    shapes, not pixel by pixel as noise does (the audit tells noisy copies by that).
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((len(labels), 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 3 + 2 * int(y):5 + 2 * int(y), 4:24] = 220
        r, c = rng.integers(4, 16, 2)
        images[i, r:r + 9, c:c + 9] = np.kron(rng.integers(40, 255, (3, 3)), np.ones((3, 3), np.int64))
    return images


@pytest.fixture(scope="session")
def garment_arrays():
    """(x_train, y_train, x_test, y_test): 400 and 100 images, ten balanced classes."""
    y_train, y_test = np.arange(400) % 10, np.arange(100) % 10
    return garments(y_train, 0), y_train, garments(y_test, 1), y_test


def as_dataset(x_train, y_train, x_test, y_test):
    from fmnist.data import Dataset

    return Dataset(np.asarray(x_train), np.asarray(y_train, np.uint8), np.asarray(x_test), np.asarray(y_test, np.uint8),
                   source="memory", origin="argument", verified=False, dataset="custom", from_cache=False,
                   class_names=tuple(str(c) for c in range(10)))
