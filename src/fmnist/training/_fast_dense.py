"""A hand-written train step for plain dense stacks, and for conv stacks the compiled kernels take.

Why: at batch 32 a dense network's matrix products take ~0.3 ms, while autograd's bookkeeping
(graph nodes, saved tensors, per-op dispatch of forward and backward, gradient accumulation)
costs about as much again. For a stack of linear layers the backward pass is three lines per
layer, so here it is written out: each op writes straight into the gradient views the
optimizer's flat buffer owns (``out=``), nothing is accumulated or zeroed, and the loss
gradient is ``(softmax - onehot) / n``.

The per-batch step (``build(model, per_batch=True)``) also takes dropout between the dense
layers and, before the flatten, a front of the convolution steps ``models/_fused.Plan`` compiles
(the one-channel stem, 3x3 convolutions by Winograd, ReLU + 2x2 max-pool, ReLU). It runs their
autograd Functions' passes in order, without a graph: the book's CNN at batch 32 on 2 Zen 4
cores trained 1.10x and 1.15x as fast as through autograd (two runs, each the median ratio of 8
pairs of 9,600-image epochs taking turns in one process). The passes' kernels are chained per
slice of images (see ``_front_forward``): 1.14x, 0.99x and 1.07x against one call per kernel
(8, 8 and 14 pairs; faster in 20 of the 30). The compiled epoch (``_fast_epoch``) takes neither.

It is the same step as autograd's, not an approximation: :func:`DenseStep.build` returns None
for any model it does not cover exactly (batch-norm, other convolutions or pools, other
activations, frozen parameters, hooks), and the training loop then uses autograd. Dropout draws
its mask as ``_fused.dropout`` does, from the same generator, so a seed gives the same masks on
either path. Gradients are checked against autograd in the tests.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist._numba import AVAILABLE
from fmnist.models import _batches, _fused, _winograd
from fmnist.models.network import Network
from fmnist.training._loss import loss_gradient

# activation module -> (in-place forward, backward from the activation's OUTPUT)
_ACTIVATIONS = {
    nn.ReLU: (torch.Tensor.relu_, lambda g, out: torch.ops.aten.threshold_backward(g, out, 0)),
    nn.Tanh: (torch.Tensor.tanh_, lambda g, out: torch.ops.aten.tanh_backward(g, out)),
    nn.Sigmoid: (torch.Tensor.sigmoid_, lambda g, out: torch.ops.aten.sigmoid_backward(g, out)),
}


class _Context:
    """What an autograd Function's ``forward`` keeps for its ``backward``, with no graph around it."""

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


class DenseStep:
    """Forward, loss and backward of a dense :class:`Network`; gradients land in ``p.grad``.

    ``layers`` is a list of ``(linear, activation or None)``; the network's Flatten modules are
    reshapes and need no entry. ``drops`` is the dropout rate after each layer (0: none) and
    ``front`` the Plan steps before the flatten, ``(kind, module)`` with kind "stem",
    "winograd" (module: the convolution), "relu-pool" or "relu" (module None).
    """

    def __init__(self, layers: list[tuple[nn.Linear, type | None]], drops: list[float] | None = None,
                 front: list[tuple[str, nn.Module | None]] = (), adapt_input=None):
        self.layers = layers
        self.drops = drops or [0.0] * len(layers)
        self.front = list(front)
        self._adapt_input = adapt_input
        # Per layer: the Parameters (their .grad is read each step: the optimizer owns it),
        # detached aliases of weight, weight.T and bias (same memory, so they see every
        # in-place update; using them needs no ``torch.no_grad`` and no module attribute
        # lookups), and the activation's forward and backward.
        self._plan = [(lin.weight, lin.bias, lin.weight.detach(), lin.weight.detach().t(),
                       None if lin.bias is None else lin.bias.detach(), *(_ACTIVATIONS[act] if act else (None, None)))
                      for lin, act in layers]
        self._neg_inv: dict[tuple, torch.Tensor] = {}

    @classmethod
    def build(cls, model: nn.Module, per_batch: bool = False) -> DenseStep | None:
        """A step for ``model`` if it is a plain dense stack in training mode, else None; with
        ``per_batch``, also for dropout after a layer and a compiled conv front."""
        if type(model) is not Network or not model.training:
            return None
        modules = list(model.layers)
        if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in [model, model.layers, *modules]):
            return None
        front, start = (_front(model, modules) if per_batch else ([], 0))
        if front is None:
            return None
        layers: list[tuple[nn.Linear, type | None]] = []
        drops: list[float] = []
        for m in modules[start:]:
            if isinstance(m, nn.Flatten):
                continue
            if type(m) is nn.Linear:
                layers.append((m, None))
                drops.append(0.0)
            elif type(m) in _ACTIVATIONS and layers and layers[-1][1] is None and not drops[-1]:
                layers[-1] = (layers[-1][0], type(m))
            elif (per_batch and type(m) is nn.Dropout and layers and not drops[-1] and not m.inplace
                  and 0 < m.p < 1):
                drops[-1] = m.p
            else:
                return None
        params = [p for lin, _ in layers for p in lin.parameters()]
        params += [p for _, conv in front if conv is not None for p in conv.parameters()]
        if not layers or any(not p.requires_grad or p._backward_hooks for p in params):
            return None
        # The compiled kernels and the dropout masks are the CPU's; the front's kernels float32's.
        if (front or any(drops)) and any(p.device.type != "cpu" for p in params):
            return None
        if front and any(p.dtype != torch.float32 for p in params):
            return None
        return cls(layers, drops, front, model.adapt_input if front else None)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One batch: ``xb`` float (n, 28, 28) or (n, 784), ``yb`` long (n,); returns the logits (n, K).

        Writes each parameter's gradient of the mean cross-entropy into ``p.grad``. The detached
        aliases keep autograd out, so no graph is built even with grad mode on.
        """
        n = len(xb)
        if self.front:
            h, contexts = self._front_forward(self._adapt_input(xb.detach()))
            front_shape = h.shape
        h = h.reshape(n, -1) if self.front else xb.reshape(n, -1).detach()
        saved, outputs, masks = [], [], []
        for (_, _, _, wt, b, fwd, _), p in zip(self._plan, self.drops):
            saved.append(h)
            h = torch.addmm(b, h, wt) if b is not None else torch.mm(h, wt)
            if fwd is not None:
                fwd(h)
            outputs.append(h)  # what the activation's backward reads: before dropout
            masks.append(_fused.dropout_mask(h.shape, p, h.dtype) if p else None)
            if p:
                h = h * masks[-1]
        logits = h
        # d(mean CE)/d(logits) = (softmax - onehot) / n: compiled on the CPU in float32 (torch's
        # tiny ops each wake a second thread, see _loss), else torch's.
        g = loss_gradient(logits, yb)
        if g is None:
            lsm = torch.log_softmax(logits, 1)
            g = lsm.exp_().div_(n).scatter_add_(1, yb.view(n, 1), self._neg_inv_n(n, lsm))
        for i in range(len(self._plan) - 1, -1, -1):
            weight, bias, w, _, _, _, _ = self._plan[i]
            self._grad(weight, torch.mm, g.t(), saved[i])
            if bias is not None:
                self._grad(bias, torch.sum, g, 0)
            if i or self.front:
                g = torch.mm(g, w)
            if i:
                if masks[i - 1] is not None:
                    g.mul_(masks[i - 1])
                back = self._plan[i - 1][6]
                if back is not None:
                    g = back(g, outputs[i - 1])
        if self.front:
            self._front_backward(g.view(front_shape), contexts)  # the flatten's order: (N, C, H, W)
        return logits

    # The front's compiled steps run as jobs chained per slice of images (``_batches.run``): each
    # thread takes its images through every step in a row, with no wait between the steps, until
    # a step computed by torch ops (a plain ReLU) needs the whole batch. A job is planned before
    # the one it reads from has run: each step's output is an NHWC tensor seen as channels-last,
    # so the next step's ``nhwc`` of it is a view of that memory, not a copy of what is not yet
    # written (asserted).

    def _front_forward(self, h: torch.Tensor) -> tuple[torch.Tensor, list]:
        contexts, jobs = [], []
        for i, (kind, conv) in enumerate(self.front):
            if kind == "relu":
                _run(jobs)
                h = torch.relu(h)
                contexts.append(h)  # its backward reads the output
                continue
            assert not jobs or h.is_contiguous(memory_format=torch.channels_last)
            if kind == "relu-pool":
                ctx = _Context((i > 0, False))
                job, h = _fused.ReluMaxPool2d.forward_job(ctx, h, True)
            elif kind == "stem":
                ctx = _Context((False, True, True, False, False))
                job, h = _fused.StemConvReluPool.forward_job(ctx, h, conv.weight, conv.bias, conv.padding[0], True)
            else:
                ctx = _Context((i > 0, True, True, False))
                job, h = _winograd.Winograd3x3.forward_job(ctx, h, conv.weight, conv.bias, conv.padding[0])
            jobs.append(job)
            contexts.append(ctx)
        _run(jobs)
        return h, contexts

    def _front_backward(self, g: torch.Tensor, contexts: list) -> None:
        """The front's parameter gradients into their ``.grad``, from the flatten's gradient ``g``."""
        jobs, finishes = [], []
        for (kind, conv), ctx in zip(reversed(self.front), reversed(contexts)):
            if kind == "relu":
                _run(jobs, finishes)
                g = torch.ops.aten.threshold_backward(g, ctx, 0)
                continue
            assert not jobs or g.is_contiguous(memory_format=torch.channels_last)
            fn = {"relu-pool": _fused.ReluMaxPool2d, "stem": _fused.StemConvReluPool}.get(kind, _winograd.Winograd3x3)
            job, g, finish = fn.backward_job(ctx, g)
            jobs.append(job)
            if conv is not None:
                finishes.append((conv, finish))
        _run(jobs, finishes)

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


def _front(model: Network, modules: list[nn.Module]) -> tuple[list[tuple[str, nn.Module | None]] | None, int]:
    """The compiled conv steps before the network's first Flatten (or Linear), and the index
    where they end; ``(None, 0)`` when a step there is not one the kernels always take."""
    front: list[tuple[str, nn.Module | None]] = []
    for start, stop, kind in model._plan.steps:
        if isinstance(modules[start], (nn.Flatten, nn.Linear)):
            winograd = any(k == "winograd" for k, _ in front)
            if front and (not AVAILABLE or (winograd and not _winograd.usable()) or _fused._hooked(modules)):
                return None, 0
            return front, start
        if kind == "stem" and not front:
            front.append(("stem", modules[start]))
        elif kind == "winograd" and modules[start].bias is not None:
            front.append(("winograd", modules[start]))
        elif kind == "relu-pool":
            front.append(("relu-pool", None))
        elif kind is None and type(modules[start]) is nn.ReLU:
            front.append(("relu", None))
        else:
            return None, 0
    return None, 0


def _run(jobs: list, finishes: list = ()) -> None:
    """Run the chained jobs and empty the list; then each convolution's gradients into ``.grad``."""
    if jobs:
        _batches.run(*jobs)
        jobs.clear()
    for conv, finish in finishes:
        _, gw, gb = finish()[:3]
        for param, value in ((conv.weight, gw), (conv.bias, gb)):
            if param.grad is None:
                param.grad = value
            else:
                param.grad.copy_(value)
    if finishes:
        finishes.clear()
