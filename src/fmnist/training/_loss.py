"""The training step's softmax cross-entropy on the CPU: one compiled pass over the logits.

Why: a training step ends in a handful of tiny ops on the (batch, classes) logits:
log-softmax, the loss, their backward passes, and the epoch's running metrics (the true class's
log-probability and the argmax). torch runs several of them on its OpenMP team even at 32 x 10
values, and with threads that sleep between ops (see ``fmnist._threads``) each wakes the other
thread: measured on 2 Xeon cores, log_softmax of a 32 x 10 tensor took 77 us with 2 threads and
6 us with 1, and the loss's forward and backward 266 us against 29 us, about 3% of the book
CNN's step. The kernels here run on the calling thread, in float32 like torch's (the
exponentials and sums per row; the batch's mean in float64).

The loss is the mean over the batch of ``-(1 - s) * log p[y] - s * mean_j log p[j]`` (label
smoothing ``s``); its gradient with respect to the logits is
``(softmax - (1 - s) * onehot(y) - s / classes) / n``, computed in the forward pass and scaled by
the incoming gradient in the backward one. Off the CPU, without numba, or for other dtypes:
torch's ops, the same formula.
"""

from __future__ import annotations

import numpy as np
import torch

from fmnist._numba import AVAILABLE
from fmnist._numba import jit as _jit


@_jit
def _xent_rows(h, y, smoothing, grad, picked, pred, count):  # pragma: no cover - compiled
    """Logits h (n, k) and labels y -> the summed loss; writes grad (of the mean over ``count``
    rows: h may be a slice of the batch), picked (log p[y]) and pred."""
    n, k = h.shape
    one = np.float32(1.0)
    s = np.float32(smoothing)
    keep = one - s
    spread = s / np.float32(k)
    fn = np.float32(count)
    total = 0.0
    for r in range(n):
        if y[r] < 0 or y[r] >= k:  # the loop reads h[r, y[r]]: unchecked, a bad label reads past the row
            raise IndexError("a label is outside the logits' classes (0 to classes - 1)")
        mx = h[r, 0]
        am = 0
        for j in range(1, k):
            if h[r, j] > mx:
                mx = h[r, j]
                am = j
        tot = np.float32(0.0)
        for j in range(k):
            tot += np.exp(h[r, j] - mx)
        lt = np.log(tot)
        mean_lp = np.float32(0.0)
        for j in range(k):
            lp = h[r, j] - mx - lt  # torch's log_softmax: x - max - log(sum(exp(x - max)))
            mean_lp += lp
            grad[r, j] = (np.exp(lp) - spread) / fn
        yr = y[r]
        grad[r, yr] -= keep / fn
        lpy = h[r, yr] - mx - lt
        picked[r] = lpy
        pred[r] = am
        total += -(keep * lpy) - s * (mean_lp / np.float32(k))
    return total


@_jit
def _xent_forward(h, y, smoothing, grad, picked, pred):  # pragma: no cover - compiled
    """Logits h (n, k) and labels y -> the mean loss; writes grad, picked (log p[y]) and pred."""
    n = h.shape[0]
    return _xent_rows(h, y, smoothing, grad, picked, pred, n) / n


def _usable(logits: torch.Tensor, y: torch.Tensor) -> bool:
    return (AVAILABLE and logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.dim() == 2
            and y.dtype == torch.int64)


def _xent(logits: torch.Tensor, y: torch.Tensor, smoothing: float, picked, pred) -> tuple[float, torch.Tensor]:
    """``_xent_forward`` on CPU tensors (or numpy scratch for picked and pred): (loss, gradient)."""
    h = logits.detach().contiguous()
    grad = torch.empty_like(h)
    loss = _xent_forward(h.numpy(), y.numpy(), smoothing, grad.numpy(), picked, pred)
    return loss, grad


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, y, smoothing: float, picked, pred):
        loss, grad = _xent(logits, y, smoothing, picked.numpy(), pred.numpy())
        ctx.save_for_backward(grad)
        return torch.tensor(loss, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None, None, None


def loss_gradient(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The mean cross-entropy's gradient with respect to ``logits``, ``(softmax - onehot(y)) / n``,
    in the one compiled pass; None where the kernel does not apply."""
    if not _usable(logits, y):
        return None
    return _xent(logits, y, 0.0, np.empty(len(y), np.float32), np.empty(len(y), np.int64))[1]


def softmax_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0,
                          picked: torch.Tensor | None = None, pred: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (n, classes) against labels ``y``, with ``smoothing``.

    ``picked`` (n,) float32 and ``pred`` (n,) int64, when given, receive each row's
    log-probability of its label and its argmax (the first of equal maxima), for the epoch's
    running loss and accuracy; they are written without autograd.
    """
    if _usable(logits, y):  # numpy views of any strides: the kernel writes picked and pred in place
        picked = torch.empty(len(y)) if picked is None else picked
        pred = torch.empty(len(y), dtype=torch.int64) if pred is None else pred
        if not (logits.requires_grad and torch.is_grad_enabled()):  # metrics only: no autograd node
            return torch.tensor(_xent(logits, y, float(smoothing), picked.numpy(), pred.numpy())[0], dtype=torch.float32)
        return _SoftmaxCrossEntropy.apply(logits, y, float(smoothing), picked, pred)
    log_proba = torch.log_softmax(logits, 1)
    loss = torch.nn.functional.nll_loss(log_proba, y)
    if smoothing:
        loss = (1 - smoothing) * loss - smoothing * log_proba.mean(1).mean()
    with torch.no_grad():
        if picked is not None:
            picked.copy_(log_proba.gather(1, y.view(-1, 1)).view(-1))
        if pred is not None:
            pred.copy_(logits.argmax(1))
    return loss
