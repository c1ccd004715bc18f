"""Fused optimizer updates for the CPU: one pass over memory instead of five or six.

Why: with torch's element-wise ops an RMSprop update reads and writes the parameter-sized
buffers once per op (decay, square, add eps, sqrt, divide, apply), and at batch 32 on a
two-core machine those passes cost as much as the matrix products of the whole step. Each
kernel here is the optimizer's Keras formula written as one loop that LLVM vectorises (IEEE
arithmetic, no fast-math: results are exactly reproducible). Arguments are 1-D contiguous
arrays of one parameter tensor and its gradient and state; ``keep = 1 - lr * weight_decay`` is
Keras's decoupled decay, applied first.

numba is optional: :data:`AVAILABLE` is False without it (or with ``FMNIST_NO_NUMBA=1``, see
:mod:`fmnist._numba`) and the
optimizers then use torch ops with the same formulas.
"""

from __future__ import annotations

import numpy as np

from fmnist._numba import AVAILABLE  # noqa: F401 - optim.py asks here whether the kernels exist
from fmnist._numba import jit as _jit

# Every coefficient comes in precomputed and in the arrays' dtype: a Python literal in the loop
# would promote float32 arithmetic to float64 (slower, and not what torch's ops compute).

@_jit
def rmsprop(p, g, v, m, keep, lr, rho, one_minus_rho, eps, momentum):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        gi = g[i]
        vi = rho * v[i] + one_minus_rho * gi * gi
        v[i] = vi
        inc = lr * gi / np.sqrt(vi + eps)
        if momentum:
            inc = momentum * m[i] + inc
            m[i] = inc
        p[i] = p[i] * keep - inc


@_jit
def sgd(p, g, m, keep, lr, momentum, nesterov):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        step = -(lr * g[i])
        if momentum:
            mi = momentum * m[i] + step
            m[i] = mi
            step = momentum * mi + step if nesterov else mi
        p[i] = p[i] * keep + step


@_jit
def adagrad(p, g, acc, keep, lr, eps):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        gi = g[i]
        a = acc[i] + gi * gi
        acc[i] = a
        p[i] = p[i] * keep - lr * gi / np.sqrt(a + eps)


@_jit
def adam(p, g, m, v, keep, alpha, one_minus_beta1, one_minus_beta2, eps):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * keep - alpha * mi / (np.sqrt(vi) + eps)
