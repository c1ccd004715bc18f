"""A hand-written train step for plain dense stacks (flatten, linear, relu/tanh/sigmoid).

Why: at batch 32 a dense network's matrix products take ~0.3 ms, while autograd's bookkeeping
(graph nodes, saved tensors, per-op dispatch of forward and backward, gradient accumulation)
costs about as much again. For a stack of linear layers the backward pass is three lines per
layer, so here it is written out: each op writes straight into the gradient views the
optimizer's flat buffer owns (``out=``), nothing is accumulated or zeroed, and the loss
gradient is ``(softmax - onehot) / n``.

It is the same step as autograd's, not an approximation: :func:`DenseStep.build` returns None
for any model it does not cover exactly (dropout, batch-norm, conv, other activations, frozen
parameters, hooks), and the training loop then uses autograd. Gradients are checked against
autograd in the tests.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist.models.network import Network

# activation module -> (in-place forward, backward from the activation's OUTPUT)
_ACTIVATIONS = {
    nn.ReLU: (torch.Tensor.relu_, lambda g, out: torch.ops.aten.threshold_backward(g, out, 0)),
    nn.Tanh: (torch.Tensor.tanh_, lambda g, out: torch.ops.aten.tanh_backward(g, out)),
    nn.Sigmoid: (torch.Tensor.sigmoid_, lambda g, out: torch.ops.aten.sigmoid_backward(g, out)),
}


class DenseStep:
    """Forward, loss and backward of a dense :class:`Network`; gradients land in ``p.grad``.

    ``layers`` is a list of ``(linear, activation or None)``; the network's Flatten modules are
    reshapes and need no entry.
    """

    def __init__(self, layers: list[tuple[nn.Linear, type | None]]):
        self.layers = layers
        # Per layer: the Parameters (their .grad is read each step: the optimizer owns it),
        # detached aliases of weight, weight.T and bias (same memory, so they see every
        # in-place update; using them needs no ``torch.no_grad`` and no module attribute
        # lookups), and the activation's forward and backward.
        self._plan = [(lin.weight, lin.bias, lin.weight.detach(), lin.weight.detach().t(),
                       None if lin.bias is None else lin.bias.detach(), *(_ACTIVATIONS[act] if act else (None, None)))
                      for lin, act in layers]
        self._neg_inv: dict[tuple, torch.Tensor] = {}

    @classmethod
    def build(cls, model: nn.Module) -> DenseStep | None:
        """A step for ``model`` if it is a plain dense stack in training mode, else None."""
        if type(model) is not Network or not model.training:
            return None
        modules = list(model.layers)
        if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in [model, model.layers, *modules]):
            return None
        layers: list[tuple[nn.Linear, type | None]] = []
        for m in modules:
            if isinstance(m, nn.Flatten):
                continue
            if type(m) is nn.Linear:
                layers.append((m, None))
            elif type(m) in _ACTIVATIONS and layers and layers[-1][1] is None:
                layers[-1] = (layers[-1][0], type(m))
            else:
                return None
        params = [p for lin, _ in layers for p in lin.parameters()]
        if not layers or any(not p.requires_grad or p._backward_hooks for p in params):
            return None
        return cls(layers)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One batch: ``xb`` float (n, 28, 28) or (n, 784), ``yb`` long (n,); returns the logits (n, K).

        Writes each parameter's gradient of the mean cross-entropy into ``p.grad``. The detached
        aliases keep autograd out, so no graph is built even with grad mode on.
        """
        n = len(xb)
        h = xb.reshape(n, -1).detach()
        saved = []
        for _, _, _, wt, b, fwd, _ in self._plan:
            saved.append(h)
            h = torch.addmm(b, h, wt) if b is not None else torch.mm(h, wt)
            if fwd is not None:
                fwd(h)
        logits = h
        ycol = yb.view(n, 1)
        lsm = torch.log_softmax(logits, 1)
        # d(mean CE)/d(logits) = (softmax - onehot) / n
        g = lsm.exp_().div_(n).scatter_add_(1, ycol, self._neg_inv_n(n, lsm))
        for i in range(len(self._plan) - 1, -1, -1):
            weight, bias, w, _, _, _, _ = self._plan[i]
            self._grad(weight, torch.mm, g.t(), saved[i])
            if bias is not None:
                self._grad(bias, torch.sum, g, 0)
            if i:
                g = torch.mm(g, w)
                back = self._plan[i - 1][6]
                if back is not None:
                    g = back(g, saved[i])
        return logits

    @staticmethod
    def _grad(param: torch.Tensor, fn, *args) -> None:
        grad = param.grad
        if grad is None:
            param.grad = fn(*args)
        else:
            fn(*args, out=grad)

    def _neg_inv_n(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.dtype, like.device)
        if key not in self._neg_inv:
            self._neg_inv[key] = torch.full((n, 1), -1.0 / n, dtype=like.dtype, device=like.device)
        return self._neg_inv[key]
