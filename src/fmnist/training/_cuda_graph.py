"""A training step's forward, loss and backward on CUDA as one captured graph, replayed each batch.

Why: on a GPU a small network's step is bound by launching its kernels, not by their arithmetic.
Profiled on an H200 at batch 32, cnn-book's step spent about ten times as long on the CPU
(launching some sixty kernels through autograd) as the GPU spent computing them, so the GPU sat
mostly idle. A CUDA graph launches the whole recorded step at once.

What is captured: zeroing the flat gradient buffer, the forward pass (under the trainer's
autocast), the loss with the epoch's per-image metrics, and the backward pass, which accumulates
into the optimizer's flat gradient views in place. Every step reads its batch from the same static
input tensors, so the loop gathers each batch straight into them. The optimizer's update stays
outside, eager: it reads its learning rate and step count from Python each step, so schedules,
callbacks that change ``lr`` and a resumed optimizer all behave as without the graph. Dropout
draws from torch's CUDA generator, which graphs support (each replay advances its offset).

Only full batches replay the graph (an epoch's last, shorter batch takes the eager step), and
the first steps run eagerly on a side stream before capture, as CUDA's graph capture needs
(cuBLAS and cuDNN set up their workspaces then): they are ordinary training steps, not extra ones.
A graph replays its step exactly as recorded, so capture also waits while a module's step still
changes from one step to the next on the host side: a module says so with ``step_is_static()``
(batch norm's warm start, whose averaging rate falls for its first 100 steps). A model whose step
cannot be captured (an op that synchronises with the host, say) trains on eagerly: the failure is
remembered and the step is not tried again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from fmnist.training._loss import softmax_cross_entropy

# Eager steps before capture; torch's whole-network example warms up with three.
WARMUP_STEPS = 3


class GraphedStep:
    """``step(xs, ys, idx, augment) -> (picked, pred)``: one training batch of ``idx`` rows, its
    gradients left in the model's ``.grad`` (the caller steps the optimizer); ``picked`` and ``pred``
    are the batch's log-probability of the true class and predicted class, valid until the next step."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch_size: int,
                 image_shape: torch.Size, device: torch.device, autocast: Callable, smoothing: float):
        self.model, self.optimizer, self.autocast, self.smoothing = model, optimizer, autocast, smoothing
        self.batch_size = batch_size
        self.x = torch.empty((batch_size, *image_shape), device=device)
        self.y = torch.empty(batch_size, dtype=torch.long, device=device)
        self.picked = torch.empty(batch_size, device=device)
        self.pred = torch.empty(batch_size, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None  # why capture failed: the trainer steps eagerly from then on
        self.warmed = 0
        self.replays = 0
        self._side = torch.cuda.Stream(device)

    def usable(self, rows: int) -> bool:
        return self.failed is None and rows == self.batch_size

    def step(self, xs: torch.Tensor, ys: torch.Tensor, idx: torch.Tensor, augment) -> tuple[torch.Tensor, torch.Tensor]:
        torch.index_select(xs, 0, idx, out=self.x)
        torch.index_select(ys, 0, idx, out=self.y)
        if augment.active:
            self.x.copy_(augment(self.x))
        if self.graph is not None:
            self.graph.replay()
            self.replays += 1
        elif self.warmed < WARMUP_STEPS or not self._static():
            self._side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._side):
                self._body()
            torch.cuda.current_stream().wait_stream(self._side)
            self.warmed += 1
        else:
            self._capture()
        return self.picked, self.pred

    def _static(self) -> bool:
        return all(m.step_is_static() for m in self.model.modules() if hasattr(m, "step_is_static"))

    def _body(self) -> None:
        self.optimizer.zero_grad(set_to_none=False)
        # The autocast cache would hold casts made during capture: graphs need it off.
        with self.autocast(cache_enabled=False):
            logits = self.model(self.x)
        loss = softmax_cross_entropy(logits.float(), self.y, self.smoothing, picked=self.picked, pred=self.pred)
        loss.backward()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        generator = torch.cuda.default_generators[self.x.device.index or 0]
        before = generator.clone_state()
        try:
            with torch.cuda.graph(graph):
                self._body()
        except Exception as exc:  # noqa: BLE001 - any op that cannot be captured: train on eagerly
            # A capture that fails part-way leaves the CUDA generator in capture mode (every
            # later dropout would raise): it gets back its state from before, which the failed
            # capture never advanced.
            generator.graphsafe_set_state(before)
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"this model's training step cannot run as a CUDA graph ({self.failed}); it trains "
                          "with eager steps", RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize()
            self._body()  # this batch's step, eagerly
            return
        self.graph = graph
        graph.replay()  # capture records without computing: this batch's step
        self.replays += 1
