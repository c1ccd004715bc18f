"""Tiny synthetic data for the figure tests: 50 random 28x28 images, every class present."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def images(rng):
    """uint8 (50, 28, 28)."""
    return rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels(rng):
    """int (50,): each class 0..9 five times, shuffled."""
    return rng.permutation(np.arange(50) % 10)


@pytest.fixture
def proba(rng):
    """float (50, 10) rows summing to 1."""
    p = rng.random((50, 10))
    return p / p.sum(axis=1, keepdims=True)

