"""Slices of a batch on the pool: how a chain of jobs runs and fails."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fmnist._threads import torch_threads
from fmnist.models import _batches


def test_a_chain_whose_first_slice_fails_returns_after_the_other_slices_stop(monkeypatch):
    """The caller's slice raising must not leave the pool's slice writing into buffers that the
    caller may reuse at once (a planned chain runs again on the same arrays)."""
    finished = threading.Event()

    def kernel(rows):
        if rows[0] == 0:
            raise IndexError("bad label")
        finished.wait(0.3)  # still running when the first slice has failed
        rows[:] = -1
        finished.set()

    monkeypatch.setattr(_batches, "min_slice_images", 1)
    with torch_threads(2):
        rows = np.arange(2.0)
        parts = _batches.slices(2)
        assert len(parts) == 2
        with pytest.raises(IndexError, match="bad label"):
            _batches.Chain([_batches.Job(kernel, (rows,), (), parts)]).run()
        assert finished.is_set() and rows[1] == -1
