"""Compiled kernels run on slices of a batch, one slice per torch thread, concurrently.

The numba kernels of ``_fused`` and ``_winograd`` are single-threaded loops that release the
GIL: run one after another on the whole batch they would leave torch's other threads idle, so
each call hands all but the first slice of images to a small thread pool and computes the
first on the calling thread. Kernels that work image by image can also be chained (a
:class:`Chain` of several jobs): each thread then takes its slice through all of them with no
wait in between, where separate calls would wait for the slowest slice, and hand the pool its
work, once per kernel. A chain binds each slice's arguments once, so one planned over buffers
that outlive it can run again, step after step.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import NamedTuple

import numpy as np
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


class Job(NamedTuple):
    """``kernel(*batched, *shared)`` over slices ``parts`` of the arrays in ``batched`` (image axis
    first); ``per_slice`` arrays have one row per slice (accumulators). ``blas``: the kernel calls
    MKL's sgemm (``fmnist._blas.mm``), which must then run on its calling thread alone."""

    kernel: Callable
    batched: tuple
    shared: tuple
    parts: list[slice]
    per_slice: tuple = ()
    blas: bool = False

    def arguments(self, i: int) -> tuple:
        """The kernel's arguments for slice ``i``."""
        part = self.parts[i]
        return (*(a[part] for a in self.batched), *self.shared, *(a[i] for a in self.per_slice))


class Chain:
    """Jobs whose kernels run slice by slice, the first slice on the calling thread and the rest
    on the pool. Each slice runs every job in order, with no wait between them: a job may read
    what the one before it wrote for the same images, and nothing else (the jobs share their
    ``parts``). Each slice's arguments are bound once: a chain can run again, on whatever its
    arrays hold by then."""

    def __init__(self, jobs: list[Job]):
        assert all(job.parts == jobs[0].parts for job in jobs), "chained jobs need the same slices"
        self.calls = [[(job.kernel, job.arguments(i)) for job in jobs] for i in range(len(jobs[0].parts))]
        # MKL confined to one thread for a whole slice, not kernel by kernel: each switch is two
        # foreign calls, a few microseconds each inside a training step.
        self._slice = self._calls
        if any(job.blas for job in jobs):
            from fmnist import _blas  # loaded with the kernels that call it

            self._slice = functools.partial(_blas.one_thread, self._calls)

    def _calls(self, i: int) -> None:
        for kernel, arguments in self.calls[i]:
            kernel(*arguments)

    def run(self) -> None:
        count = len(self.calls)
        futures = [_pool(count - 1).submit(self._slice, i) for i in range(1, count)]
        try:
            self._slice(0)
        finally:  # an error in this slice returns only once the others have stopped writing
            wait(futures)
        for future in futures:
            future.result()


def run(*jobs: Job) -> None:
    """Run the jobs once as a :class:`Chain`."""
    Chain(list(jobs)).run()


def sum_slices(shares: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The sum of the slices' shares (of a gradient; slice first) into ``out``: ``np.add`` of
    one share after another, about twice as fast as ``np.sum`` along the first axis (48 against
    112 us for two of cnn-book's 100 x 3136 dense weights)."""
    if len(shares) == 1:
        if out is None:
            return shares[0].copy()
        np.copyto(out, shares[0])
        return out
    out = np.add(shares[0], shares[1], out=out)
    for share in shares[2:]:
        out += share
    return out


class JobFunction(torch.autograd.Function):
    """An autograd Function whose passes are jobs: ``forward_job(ctx, *args)`` gives ``(job,
    output)`` and ``backward_job(ctx, grad)`` gives ``(job, input_grad, finish)``, where the job
    is planned, not yet run, and the output or input gradient is the tensor it will write.
    ``forward`` and ``backward`` run the one job; a caller that chains several kernels per slice
    (``run``) plans the jobs itself, and calls ``finish()`` for the pass's return value."""

    @classmethod
    def forward(cls, ctx, *args):
        job, output = cls.forward_job(ctx, *args)
        run(job)
        return output

    @classmethod
    def backward(cls, ctx, grad):
        job, _, finish = cls.backward_job(ctx, grad)
        run(job)
        return finish()
