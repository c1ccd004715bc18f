"""A compiled run of many consecutive training steps of a dense stack, for the CPU.

Why: after the hand-written dense step (``_fast_dense``) and the fused optimizer kernels, a
batch-32 step still made ~20 torch calls, each 5-50 us of Python and dispatch: for the
softmax preset that was 4x the step's arithmetic. Here one numba call runs ``count``
consecutive steps (gather the batch from the permutation, forward, softmax cross-entropy,
backward, optimizer update) on numpy views of the torch tensors' memory, so the per-step
overhead is gone and the Trainer's loop only wakes up between chunks for callbacks.

Same arithmetic as the per-step path: the matrix products call the very ``sgemm_`` that
``torch.mm`` uses (MKL, taken from libtorch_cpu; bit-identical products), the optimizer update
is the same ``_fast_kernels`` kernel with the same float32 coefficients
(``FlatOptimizer.coefficients``), and gradients land in the optimizer's flat buffer views, so
``state_dict`` and checkpoints see exactly what the per-step path would leave. Only the
element-wise exp/log/tanh and the bias-gradient sum may round differently in the last bit.

:func:`FastEpoch.build` returns None whenever it does not apply (no numba or no ``sgemm_``
symbol, ``FMNIST_NO_NUMBA=1``, not the CPU, not float32, a model ``DenseStep`` does not take,
a layer without bias, several param groups, a non-flat optimizer, optimizer step hooks) and
the Trainer then uses the per-step path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.optimizer import (
    _global_optimizer_post_hooks,
    _global_optimizer_pre_hooks,
)

from fmnist._blas import AVAILABLE
from fmnist._numba import jit as _jit
from fmnist.training import _dense_kernels as _dense
from fmnist.training import _fast_kernels as _kernels
from fmnist.training._fast_dense import ACT_CODES, DenseStep
from fmnist.training._loss import _xent_forward
from fmnist.training.optim import FlatOptimizer

if AVAILABLE:
    @_jit
    def _update(code, p, g, s1, s2, c):  # pragma: no cover - compiled
        if code == 0:
            _kernels.rmsprop(p, g, s1, s2, c[0], c[1], c[2], c[3], c[4], c[5])
        elif code == 1:
            _kernels.sgd(p, g, s1, c[0], c[1], c[2], c[3])
        elif code == 2:
            _kernels.adagrad(p, g, s1, c[0], c[1], c[2])
        else:
            _kernels.adam(p, g, s1, s2, c[0], c[1], c[2], c[3], c[4])

    @_jit
    def _run_steps(x, y, order, first, bs, count, weights, biases, gweights, gbiases, acts,
                   picked, pred, code, params, grads, state1, state2, coef):  # pragma: no cover - compiled
        """Steps ``first .. first+count-1`` of the epoch (batch ``s`` = ``order[s*bs:(s+1)*bs]``).

        ``x`` float32 (N, D), ``y`` int64 (N,), ``order`` int64 (N,); per layer ``weights[i]``
        (out, in), ``biases[i]`` (out,), their gradient views ``gweights/gbiases``, ``acts[i]``
        the activation code; ``picked``/``pred`` (N,) receive each sample's log-probability of
        its label and its predicted class at its position in ``order``. ``params/grads/state*``
        are the optimizer's 1-D views, ``coef[s]`` step ``s``'s kernel coefficients.
        """
        ints = np.empty(8, np.int32)
        chars = np.empty(4, np.uint8)
        flts = np.empty(4, np.float32)
        no_mask = np.empty((0, 0), np.float32)
        n_total, d = x.shape
        nl = len(acts)
        for s in range(count):
            b0 = (first + s) * bs
            m = min(bs, n_total - b0)
            xb = np.empty((m, d), np.float32)
            for r in range(m):
                xb[r, :] = x[order[b0 + r]]
            saved = [xb]
            for i in range(nl):
                w = weights[i]
                out = np.empty((m, w.shape[0]), np.float32)
                _dense.linear_forward(saved[i], w, biases[i], acts[i], out, ints, chars, flts)
                saved.append(out)
            # d(mean CE)/d(logits), the labels' log-probabilities and the argmax: the same kernel
            # as the autograd path's loss (training/_loss.py)
            yb = np.empty(m, np.int64)
            for r in range(m):
                yb[r] = y[order[b0 + r]]
            logits = saved[nl]
            g = np.empty(logits.shape, np.float32)
            _xent_forward(logits, yb, 0.0, g, picked[b0:b0 + m], pred[b0:b0 + m])
            for i in range(nl - 1, -1, -1):
                w = weights[i]
                gx = np.empty((m, w.shape[1] if i else 0), np.float32)
                _dense.linear_backward(g, saved[i], gx, saved[i], no_mask, w, acts[i - 1] if i else 0, False, i > 0,
                                       gweights[i], gbiases[i], ints, chars, flts)
                g = gx
            c = coef[s]
            for j in range(2 * nl):  # (weight, bias) per layer
                _update(code, params[j], grads[j], state1[j], state2[j], c)


_PAD = 4
_EMPTY1, _EMPTY2 = np.empty(0, np.float32), np.empty((0, 0), np.float32)


def _pad(arrays, length: int, empty: np.ndarray) -> tuple:
    return (*arrays, *[empty] * (length - len(arrays)))


class FastEpoch:
    """Runs chunks of an epoch's steps for one Trainer's dense model and flat optimizer."""

    def __init__(self, optimizer: FlatOptimizer, layers, acts: np.ndarray):
        self.optimizer = optimizer
        self.group, self.flat = optimizer.param_groups[0], optimizer.flat_groups[0]
        self.layers, self.acts = layers, acts

    @classmethod
    def build(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> FastEpoch | None:
        if not AVAILABLE or device.type != "cpu":
            return None
        dense = DenseStep.build(model)
        if dense is None or not isinstance(optimizer, FlatOptimizer) or optimizer.kernel_code < 0:
            return None
        if len(optimizer.param_groups) != 1 or not optimizer.flat_groups[0].fused:
            return None
        if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
            return None
        if _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
            return None
        layers = [lin for lin, _ in dense.layers]
        ids = {id(p) for p in optimizer.param_groups[0]["params"]}
        if any(lin.bias is None or lin.weight.dtype != torch.float32 for lin in layers) or \
                {id(p) for lin in layers for p in lin.parameters()} != ids:
            return None
        acts = np.array([ACT_CODES[act] for _, act in dense.layers], dtype=np.int64)
        return cls(optimizer, layers, acts)

    def start_epoch(self, xs: torch.Tensor, ys: torch.Tensor, order: torch.Tensor, picked: torch.Tensor,
                    pred: torch.Tensor, batch_size: int) -> bool:
        """Bind this epoch's arrays; False when they do not suit (the caller then steps per batch)."""
        if xs.dtype != torch.float32 or not xs.is_contiguous() or xs.device.type != "cpu":
            return False
        self.optimizer.gather_grads(0)  # grads are the flat views; param_arrays are current
        self.x = xs.view(len(xs), -1).numpy()
        self.y, self.order = ys.numpy(), order.numpy()
        self.picked, self.pred = picked.view(-1).numpy(), pred.numpy()
        self.bs = batch_size
        # A tuple's length is part of its numba type, so each depth would compile anew (~5 s on
        # a cold cache): tuples are padded with empty arrays to a multiple of _PAD layers, and
        # ``acts`` (one entry per real layer) says how many there are.
        depth = -(-len(self.layers) // _PAD) * _PAD
        self.weights = _pad([lin.weight.detach().numpy() for lin in self.layers], depth, _EMPTY2)
        self.biases = _pad([lin.bias.detach().numpy() for lin in self.layers], depth, _EMPTY1)
        self.gweights = _pad([lin.weight.grad.numpy() for lin in self.layers], depth, _EMPTY2)
        self.gbiases = _pad([lin.bias.grad.numpy() for lin in self.layers], depth, _EMPTY1)
        a = self.flat.arrays
        states = [_pad(a[name], 2 * depth, _EMPTY1) for name in self.optimizer.state_names]
        self.params, self.grads = _pad(self.flat.param_arrays, 2 * depth, _EMPTY1), _pad(a["grad"], 2 * depth, _EMPTY1)
        self.state1 = states[0]
        self.state2 = states[1] if len(states) > 1 else states[0]
        return True

    def run(self, first: int, count: int, lrs=None) -> None:
        """Steps ``first .. first+count-1`` (0-based batches); ``lrs``: each step's rate (None: the group's)."""
        opt, group, flat = self.optimizer, self.group, self.flat
        step0 = flat.step
        lr = group["lr"]
        coef = np.array([opt.coefficients(group, lr if lrs is None else lrs[s], step0 + s + 1) for s in range(count)],
                        dtype=np.float32)
        _run_steps(self.x, self.y, self.order, first, self.bs, count, self.weights, self.biases, self.gweights,
                   self.gbiases, self.acts, self.picked, self.pred, opt.kernel_code, self.params, self.grads,
                   self.state1, self.state2, coef)
        flat.step = step0 + count
