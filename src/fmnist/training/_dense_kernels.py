"""The numba kernels of a dense layer's forward and backward passes, on rows of a batch.

The compiled epoch (``_fast_epoch``) runs them on whole batches, one step after another; the
per-batch step of a conv network (``_fast_dense``) runs them as jobs on each thread's slice of
the batch, chained with the convolutions' kernels (see ``_batches.Chain``): the arrays a job
slices come first in each signature, then the shared ones, then each slice's own. The products call
the ``sgemm_`` torch's ``mm`` uses (``_blas.mm``); the activations are written as the loops
torch's ops compute (ReLU keeps NaN). Activation codes: 0 none, 1 ReLU, 2 tanh, 3 sigmoid.
"""

import numpy as np

from fmnist._blas import mm
from fmnist._numba import jit
from fmnist.training._loss import _xent_rows


@jit
def activate(out, act):  # pragma: no cover - compiled
    """``out = act(out)``, in place."""
    if act == 1:
        for r in range(out.shape[0]):
            for j in range(out.shape[1]):
                if out[r, j] < 0:  # noqa: PLR1730 - keeps NaN as torch's relu does
                    out[r, j] = 0
    elif act == 2:
        out[:] = np.tanh(out)
    elif act == 3:
        one = np.float32(1.0)
        for r in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[r, j] = one / (one + np.exp(-out[r, j]))


@jit
def activation_grad(g, out, act):  # pragma: no cover - compiled
    """``g *= act'`` in place, from the activation's output ``out``."""
    if act == 1:
        for r in range(g.shape[0]):
            for j in range(g.shape[1]):
                if not out[r, j] > 0:
                    g[r, j] = 0
    elif act == 2:
        g *= np.float32(1.0) - out * out
    elif act == 3:
        g *= (np.float32(1.0) - out) * out


@jit
def linear_forward(h, w, b, act, out, ints, chars, flts):  # pragma: no cover - compiled
    """``out = act(h @ w.T + b)`` (``b`` empty: no bias); ints/chars/flts are ``mm``'s scratch."""
    if b.shape[0]:
        for r in range(out.shape[0]):  # torch.addmm: bias rows, then sgemm with beta = 1
            out[r, :] = b
    mm(h, False, w, True, out, 1.0 if b.shape[0] else 0.0, ints, chars, flts)
    activate(out, act)


@jit
def linear_backward(g, x, gx, out, mask, w, act, dropout, input_grad, gw, gb,
                    ints, chars, flts):  # pragma: no cover - compiled
    """From the output gradient ``g``: ``gw = g.T @ x``, ``gb`` = g's column sums (``gb`` empty:
    no bias) and, with ``input_grad``, ``gx = act'(out) * mask * (g @ w)``: the gradient of the
    layer below, whose activation ``act`` wrote ``out`` and whose dropout (``dropout``)
    multiplied it by ``mask``."""
    mm(g, True, x, False, gw, 0.0, ints, chars, flts)
    if gb.shape[0]:
        gb[:] = 0
        for r in range(g.shape[0]):
            gb += g[r]
    if input_grad:
        mm(g, False, w, False, gx, 0.0, ints, chars, flts)
        if dropout:
            for r in range(gx.shape[0]):
                gx[r] *= mask[r]
        activation_grad(gx, out, act)


# The per-slice jobs of the conv step. Arrays sliced by the job are its rows; the rest follow.

@jit
def transpose_rows(src, dst):  # pragma: no cover - compiled
    """dst[n] = src[n].T for (n, a, b) -> (n, b, a): torch's flatten of NHWC maps, (n, H*W, C) ->
    (n, C, H*W), and its gradient's way back."""
    for n in range(src.shape[0]):
        for i in range(dst.shape[1]):
            row = dst[n, i]
            for j in range(dst.shape[2]):
                row[j] = src[n, j, i]


@jit
def forward_rows(x, out, dropped, mask, w, b, act, dropout, ints, chars, flts):  # pragma: no cover - compiled
    """One dense layer on a slice's rows, then (``dropout``) ``dropped = out * mask``."""
    linear_forward(x, w, b, act, out, ints, chars, flts)
    if dropout:
        for r in range(out.shape[0]):
            dropped[r] = out[r] * mask[r]


@jit
def loss_rows(logits, y, g, picked, pred, count):  # pragma: no cover - compiled
    """``g`` = the gradient of the batch's mean cross-entropy (``count`` images) for a slice's
    logits; ``picked`` (log p[y]) and ``pred`` (the argmax) for each row, the epoch's metrics."""
    _xent_rows(logits, y, 0.0, g, picked, pred, count)
