"""Compiled kernels run on slices of a batch, one slice per torch thread, concurrently.

The numba kernels of ``_fused`` and ``_winograd`` are single-threaded loops that release the
GIL: run one after another on the whole batch they would leave torch's other threads idle, so
each call hands all but the first slice of images to a small thread pool and computes the
first on the calling thread.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import torch


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in any layout -> (N, H, W, C) contiguous: a view when x is channels-last."""
    return x.permute(0, 2, 3, 1).contiguous()


# A slice of fewer images than this is not worth a thread's hand-off: with
# 16, cnn-book's batch of 32 splits in two, and its float32 step on 2 Zen 3 cores took 8.8 ms
# (median of 6 rounds, taking turns in one process) against 9.3 ms in one slice; slices of 8
# gained nothing more.
min_slice_images: int = 16


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="fmnist-slices")


# A forked child has the parent's pool object but none of its threads: work sent to it would
# wait forever. The child starts a pool of its own on first use.
os.register_at_fork(after_in_child=_pool.cache_clear)


def slices(n: int) -> list[slice]:
    """The image ranges the kernels split ``n`` images into: one per torch thread, if big enough."""
    count = max(1, min(torch.get_num_threads(), n // min_slice_images))
    bounds = [n * i // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def by_images(kernel, batched, shared, parts=None, per_slice=()):
    """``kernel(*batched, *shared)`` over slices of the arrays in ``batched`` (image axis first),
    the first slice on this thread and the rest on the pool. ``per_slice`` arrays have one row per
    slice (accumulators)."""
    parts = parts or slices(len(batched[0]))
    calls = [(*(a[part] for a in batched), *shared, *(a[i] for a in per_slice)) for i, part in enumerate(parts)]
    if len(calls) == 1:
        kernel(*calls[0])
        return
    futures = [_pool(len(calls) - 1).submit(kernel, *args) for args in calls[1:]]
    kernel(*calls[0])
    for future in futures:
        future.result()
