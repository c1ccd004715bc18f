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
pairs of 9,600-image epochs taking turns in one process). The whole step is then one chain of
compiled kernels per slice of images (see ``_chained``), the dense layers and the loss included:
as torch ops on the whole batch, each of the first dense layer's three products took 0.3-0.4 ms
(torch's second thread woke for each, and for each layout copy around the flatten) where one
thread's half of them takes ~0.1 ms; chained, the step ran 1.05x, 1.09x and 1.20x as fast (8, 8
and 10 pairs; faster in 23 of the 26). The compiled epoch (``_fast_epoch``) takes neither.

It is the same step as autograd's, not an approximation: :func:`DenseStep.build` returns None
for any model it does not cover exactly (batch-norm, other convolutions or pools, other
activations, frozen parameters, hooks), and the training loop then uses autograd. Dropout draws
its mask as ``_fused.dropout`` does, from the same generator, so a seed gives the same masks on
either path. Gradients are checked against autograd in the tests.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from fmnist.models import _batches, _fused, _winograd
from fmnist.models.network import Network
from fmnist.training._loss import loss_gradient

# activation module -> (in-place forward, backward from the activation's OUTPUT)
_ACTIVATIONS = {
    nn.ReLU: (torch.Tensor.relu_, lambda g, out: torch.ops.aten.threshold_backward(g, out, 0)),
    nn.Tanh: (torch.Tensor.tanh_, lambda g, out: torch.ops.aten.tanh_backward(g, out)),
    nn.Sigmoid: (torch.Tensor.sigmoid_, lambda g, out: torch.ops.aten.sigmoid_backward(g, out)),
}
# ... and its code in the compiled kernels (_dense_kernels)
ACT_CODES = {None: 0, nn.ReLU: 1, nn.Tanh: 2, nn.Sigmoid: 3}


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
        self._codes = [ACT_CODES[act] for _, act in layers]
        self._chains: dict[tuple, SimpleNamespace] = {}  # a conv step's planned chains (see _chained)
        # The last step's log p[label] and predicted class for each image, where the step's loss
        # kernel wrote them (a conv step's chain), else None: the loop's metrics, without a pass
        # of their own over the logits.
        self.metrics: tuple[np.ndarray, np.ndarray] | None = None

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
        self.metrics = None
        if self.front:
            return self._chained(xb, yb)
        n = len(xb)
        h = xb.reshape(n, -1).detach()
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
            if i:
                g = torch.mm(g, w)
                if masks[i - 1] is not None:
                    g.mul_(masks[i - 1])
                back = self._plan[i - 1][6]
                if back is not None:
                    g = back(g, outputs[i - 1])
        return logits

    # A conv network's step is one chain of jobs (``_batches.Chain``): each thread takes its slice
    # of the batch through the front's compiled steps, the flatten, the dense layers, the loss
    # gradient and all of it backwards, with no wait in between; only the parameter gradients
    # sum over the slices (each slice writes its own share, added up at the end). The chain is
    # planned once per batch shape, with buffers of its own for every map and gradient, and its
    # kernels read the parameters through views: a step copies its batch and dropout masks in,
    # runs the chain and sums the shares. A job is planned before the one it reads from has run:
    # each step's output is an NHWC tensor seen as channels-last, so the next step's ``nhwc`` of
    # it is a view of that memory, not a copy (asserted).

    def _chained(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        key = (tuple(xb.shape), xb.dtype, torch.get_num_threads())  # the threads set the slices
        plan = self._chains.get(key)
        if plan is None:
            if len(self._chains) > 1:  # an epoch has at most two shapes: the batch and its last, short one
                self._chains.clear()
            plan = self._chains[key] = self._plan_chain(xb)
        plan.x.copy_(xb)
        plan.y.copy_(yb)
        for mask, p in plan.masks:  # drawn in the layers' order, as autograd's path draws them
            _fused.fill_dropout_mask(mask, p)
        plan.chain.run()
        self.metrics = (plan.picked, plan.pred)
        for conv, finish in plan.finishes:
            _, gw, gb = finish()[:3]
            for param, value in ((conv.weight, gw), (conv.bias, gb)):
                if param.grad is None:
                    param.grad = value
                else:
                    param.grad.copy_(value)
        for param, share in plan.shares:
            if param is not None:
                if param.grad is None:
                    param.grad = torch.from_numpy(_batches.sum_slices(share))
                else:
                    _batches.sum_slices(share, param.grad.numpy())
        return plan.logits.clone()  # the buffer is the next step's

    def _plan_chain(self, xb: torch.Tensor) -> SimpleNamespace:
        n = len(xb)
        plan = SimpleNamespace(x=torch.empty(xb.shape, dtype=xb.dtype), y=torch.empty(n, dtype=torch.int64),
                               picked=np.empty(n, np.float32), pred=np.empty(n, np.int64),
                               masks=[], finishes=[], shares=[])
        parts = _batches.slices(n)
        jobs, contexts = [], []
        h = self._adapt_input(plan.x)
        assert h.data_ptr() == plan.x.data_ptr()  # a view: the kernels read each step's batch there
        for i, (kind, conv) in enumerate(self.front):
            assert h.is_contiguous(memory_format=torch.channels_last)  # nhwc(h) is a view
            if kind == "relu":
                out = torch.empty(_batches.nhwc(h).shape)
                job = _batches.Job(_fused._kernels().relu_forward, (_batches.nhwc(h).numpy(), out.numpy()), (), parts)
                ctx = h = out.permute(0, 3, 1, 2)  # its backward reads the output
            elif kind == "relu-pool":
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
        assert h.is_contiguous(memory_format=torch.channels_last)
        maps = _batches.nhwc(h)
        sgemm = _winograd._blas().mm_scratch(len(parts))
        none = np.empty((n, 0), np.float32)  # an absent array the kernels do not touch
        _, height, width, channels = maps.shape
        pixels = maps.numpy().reshape(n, height * width, channels)
        x = torch.empty((n, channels * height * width))  # the flatten's order: (N, C, H, W)
        jobs.append(_batches.Job(_kernels().transpose_rows, (pixels, x.numpy().reshape(n, channels, -1)), (), parts))
        inputs, outputs, masks = [], [], []
        for (_, _, w, _, b, _, _), act, p in zip(self._plan, self._codes, self.drops):
            out = torch.empty((n, w.shape[0]))
            mask = np.empty(out.shape, np.float32) if p else none
            if p:
                plan.masks.append((mask, p))
            dropped = torch.empty_like(out) if p else out
            jobs.append(_batches.Job(_kernels().forward_rows,
                                     (x.numpy(), out.numpy(), dropped.numpy() if p else none, mask),
                                     (w.numpy(), _EMPTY if b is None else b.numpy(), act, bool(p)), parts, sgemm,
                                     blas=True))
            inputs.append(x)
            outputs.append(out)
            masks.append(mask)
            x = dropped
        plan.logits = x
        g = torch.empty_like(x)
        jobs.append(_batches.Job(_kernels().loss_rows, (x.numpy(), plan.y.numpy(), g.numpy(), plan.picked, plan.pred),
                                 (n,), parts))
        for i in range(len(self._plan) - 1, -1, -1):
            weight, bias, w, _, _, _, _ = self._plan[i]
            gw = np.empty((len(parts), *w.shape), np.float32)
            gb = np.empty((len(parts), 0 if bias is None else len(bias)), np.float32)
            gx = torch.empty_like(inputs[i])
            below = (outputs[i - 1].numpy(), masks[i - 1], self._codes[i - 1], bool(self.drops[i - 1])) if i else \
                (none, none, 0, False)
            jobs.append(_batches.Job(_kernels().linear_backward,
                                     (g.numpy(), inputs[i].numpy(), gx.numpy(), *below[:2]),
                                     (w.numpy(), *below[2:], True), parts, (gw, gb, *sgemm), blas=True))
            plan.shares += [(weight, gw), (bias, gb)]
            g = gx
        gmaps = torch.empty(maps.shape)
        jobs.append(_batches.Job(_kernels().transpose_rows, (g.numpy().reshape(n, channels, -1),
                                                             gmaps.numpy().reshape(pixels.shape)), (), parts))
        g = gmaps.permute(0, 3, 1, 2)
        for (kind, conv), ctx in zip(reversed(self.front), reversed(contexts)):
            assert g.is_contiguous(memory_format=torch.channels_last)
            if kind == "relu":
                gx = torch.empty(_batches.nhwc(g).shape)
                jobs.append(_batches.Job(_fused._kernels().relu_backward,
                                         (_batches.nhwc(g).numpy(), _batches.nhwc(ctx).numpy(), gx.numpy()), (), parts))
                g = gx.permute(0, 3, 1, 2)
                continue
            fn = {"relu-pool": _fused.ReluMaxPool2d, "stem": _fused.StemConvReluPool}.get(kind, _winograd.Winograd3x3)
            job, g, finish = fn.backward_job(ctx, g)
            jobs.append(job)
            if conv is not None:
                plan.finishes.append((conv, finish))
        plan.chain = _batches.Chain(jobs)
        return plan

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
            # The dense layers after a front run compiled too, with MKL's sgemm on each thread.
            if front and (not _winograd.usable() or _fused._hooked(modules)):
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


_EMPTY = np.empty(0, np.float32)


@functools.cache
def _kernels():
    """The compiled dense kernels, imported on first use (they load numba and MKL's sgemm)."""
    from fmnist.training import _dense_kernels

    return _dense_kernels

