"""The one training loop for every torch model: ``fit -> run_epoch -> train_step``.

Defaults equal Keras's ``model.fit`` so the study reproduces: batch 32, a fresh shuffle every
epoch, sparse categorical cross-entropy (computed from logits), RMSprop with Keras's
arithmetic. The whole training set lives on the device as one float tensor and each batch is
an index slice of it: no DataLoader, no per-sample Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fmnist import _numba
from fmnist._malloc import keep_freed_memory
from fmnist._threads import resolve_threads, torch_threads
from fmnist.errors import DataError, UsageError, option
from fmnist.evaluation.metrics import (
    check_images,
    check_labels,
    images_to_tensor,
    log_proba_tensors,
    one_view,
    score,
)
from fmnist.training._cuda_graph import GraphedStep
from fmnist.training._fast_dense import DenseStep
from fmnist.training._fast_epoch import FastEpoch
from fmnist.training._loss import softmax_cross_entropy
from fmnist.training.augment import Augment
from fmnist.training.callbacks import Callback, EarlyStopping, LearningRateScheduler, TerminateOnNaN
from fmnist.training.config import TrainConfig
from fmnist.training.optim import build_optimizer


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"{option('device')}: unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{option('device', name)}: no CUDA device is available here; use "
                         f"{option('device', 'cpu')}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"{option('device', name)}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    if device.type not in ("cpu", "cuda"):  # torch names more (meta, xla...) than it can train on here
        raise UsageError(f"{option('device', name)}: not a device fmnist trains on here; use auto, cpu or cuda")
    return device


def bfloat16_native(device: torch.device) -> bool:
    """Whether ``device`` does bfloat16 arithmetic in hardware: CUDA that supports it, or a CPU
    with bfloat16 dot products (AVX512-BF16, AMX). Elsewhere autocast emulates it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(name: str, device: torch.device) -> str:
    """``"auto"`` is bfloat16 where ``device`` does it in hardware, float32 elsewhere."""
    if name == "auto":
        return "bfloat16" if bfloat16_native(device) else "float32"
    return name


class Trainer:
    """Trains one torch model; ``fit`` returns the history, a list of per-epoch dicts.

    Side jobs belong in callbacks; a different per-batch computation (loss, gradient
    clipping, ...) in a subclass that overrides :meth:`train_step`.

    Callbacks run in this order: the config's own (schedule, early stopping), the caller's,
    then the NaN guard, which raises ``TrainingError`` after the caller's callbacks saw the
    epoch (so the bad epoch is logged, and a checkpoint writer skips it).
    """

    # Intra-op threads for small training steps on the CPU (None: all of ``threads``). At batch 32
    # each op is too small to split well, and on a busy machine an OpenMP team that waits for
    # a descheduled member stalls every op: measured on 2 shared cores (load ~10), mlp-200
    # epochs took 37-64 s with 2 threads and ~3 s with 1. Evaluation uses all of them.
    cpu_train_threads: int | None = 1
    # ...but a step with at least this many forward multiply-adds (cnn-book: ~134 M per batch
    # of 32; mlp-200: ~5 M) runs with all of ``threads``: its convolutions last milliseconds
    # and split well (conv 32->64 at 14x14, batch 32: ~40 GFLOP/s on 1 thread, ~90 on 2).
    # Measured (cnn-book epoch, NCHW, load 0.6): 37.4 s on 1 thread, 27.0 s on 2. On a busy
    # machine that holds only because idle OpenMP threads sleep instead of spinning (import
    # fmnist sets OMP_WAIT_POLICY=PASSIVE, see _threads.py); with libgomp's spinning, 2 threads
    # took 50-600 s at load 3.
    cpu_parallel_macs: float = 30e6
    # On CUDA, full batches replay the step's forward and backward as one captured graph
    # (_cuda_graph.py): there a small network's step is bound by launching kernels. False: eager steps.
    cuda_graphs: bool = True

    def __init__(self, model: nn.Module, config: TrainConfig | None = None, callbacks: Sequence[Callback] = ()):
        config = config or TrainConfig()
        self.device = resolve_device(config.device)
        # The precision it trains in, not "auto": what the run records and a resumed run keeps.
        self.config = dataclasses.replace(config, precision=resolve_precision(config.precision, self.device))
        self.model = model.to(self.device)
        # The CPU threads this trainer may use (evaluation of the validation data too).
        self.threads = resolve_threads(self.config.threads)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults for each step's large tensors (see _malloc.py)
            _numba.ready()  # its start-up now, not in the first epoch's time
        self.callbacks = [*callbacks_from_config(self.config), *callbacks, TerminateOnNaN()]
        self.optimizer = build_optimizer(self.config.optimizer, self.model.parameters(), self.config.lr,
                                         momentum=self.config.momentum, nesterov=self.config.nesterov,
                                         weight_decay=self.config.weight_decay)
        # Shuffling has its own generator so the order depends only on the seed, not on how
        # many random numbers model initialisation or dropout consumed.
        self.generator = torch.Generator().manual_seed(self.config.seed)
        # Augmentation draws from its own generator for the same reason (and it lives on the device).
        self.augment = Augment(self.config.shift, self.config.flip, self.config.erase,
                               torch.Generator(self.device).manual_seed(self.config.seed + 1))
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.stop_training = False
        self.stop_reason: str | None = None
        # The epoch whose weights the model holds: the last one, unless a callback (early
        # stopping) put back an earlier epoch's. Reports name it beside the scores it produced.
        self.weights_epoch = 0
        self.num_batches = 0
        self._dense_step: DenseStep | None = None  # chosen per epoch by _step_engine
        self._graphed: GraphedStep | None = None  # the CUDA graph step, captured once, kept across epochs
        # Intra-op threads the training steps ran with (train_threads), once an epoch ran.
        self.step_threads: int | None = None
        # The threads a checkpoint's epochs ran with, where this trainer resumed one: a run
        # completed from it without training more (a trial a scheduler stopped, finished by the
        # sweep's driver) records those, not the driver's.
        self._restored_threads: dict[str, int] | None = None
        self._done = False  # fit ran to its end: a second fit would train nothing

    def fit(self, x: np.ndarray, y: np.ndarray, validation_data: tuple[np.ndarray, np.ndarray] | None = None):
        """Train for ``config.epochs`` epochs on uint8 images ``x`` (N, 28, 28) and labels ``y`` (N,).

        A trainer restored from a checkpoint (``load_state_dict``) continues to ``config.epochs``.
        Once it has trained them all, ``fit`` again is refused rather than training nothing
        (Keras's ``fit`` would train that many more): build a Trainer with more epochs.
        """
        if self._done:
            raise UsageError(f"this Trainer has trained its {self.config.epochs} epochs (config.epochs); to train "
                             "more, give the model to a new Trainer whose TrainConfig has the epochs to add")
        if validation_data is None:  # refused now, not after an epoch's work
            for cb in self.callbacks:
                if isinstance(cb, EarlyStopping) and cb.monitor.startswith("val_"):
                    raise UsageError(f"early stopping watches {cb.monitor}, and no validation data was given; pass "
                                     f"validation_data, or switch early stopping off ({option('patience', 0)})")
        # Shapes and lengths are checked before the first epoch, validation's included.
        x = check_images(x, self.model)
        y = check_labels(y, len(x), what="y")
        if validation_data is not None:
            val_x = check_images(validation_data[0], self.model)
            validation_data = val_x, check_labels(validation_data[1], len(val_x), what="the validation labels")
        # Phase 1: the data goes to the device once, as one tensor.
        xs, ys = images_to_tensor(x, self.device), torch.as_tensor(y, dtype=torch.long, device=self.device)
        val = None
        if validation_data is not None:
            val = (images_to_tensor(validation_data[0], self.device),
                   torch.as_tensor(validation_data[1], dtype=torch.long, device=self.device))
        self._check_labels(ys, "y")
        if val is not None:
            self._check_labels(val[1], "the validation labels")
        self.num_batches = -(-len(xs) // self.config.batch_size)
        self.stop_training = False
        with torch_threads(self.threads if self.device.type == "cpu" else torch.get_num_threads()):
            return self._fit_epochs(xs, ys, val)

    def _check_labels(self, labels: torch.Tensor, name: str) -> None:
        """Labels must index the model's classes: the compiled loss reads the logit each one names."""
        classes = getattr(getattr(self.model, "spec", None), "num_classes", None)
        if len(labels) and (int(labels.min()) < 0 or (classes is not None and int(labels.max()) >= classes)):
            top = f"{classes - 1}" if classes is not None else "the number of classes - 1"
            raise DataError(f"{name} holds labels from {int(labels.min())} to {int(labels.max())}; they must be class "
                            f"indices from 0 to {top}: check the labels passed with the images")

    def _fit_epochs(self, xs, ys, val):
        for cb in self.callbacks:
            cb.on_train_begin(self)
        # Phase 2: epochs; each callback sees the logs (and may stop training).
        while self.epoch < self.config.epochs and not self.stop_training:
            self.epoch += 1
            for cb in self.callbacks:
                cb.on_epoch_begin(self, self.epoch)
            start = time.perf_counter()
            logs = {"epoch": self.epoch, **self.run_epoch(xs, ys)}
            if val is not None:
                # The per-epoch validation is a monitor: at the training precision (in bfloat16
                # it takes half the time) and on one view of each image, without the model's
                # test-time augmentation (which doubles its cost: cnn-best's flip took 12% of an
                # epoch). Scores reported after training (fmnist.evaluate, a run's metrics.json)
                # are the model's own: float32, with its test-time augmentation.
                with self.autocast():
                    scores = score(log_proba_tensors(self.model, val[0], tta=False), val[1])
                logs.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
            logs["time"] = time.perf_counter() - start
            self.history.append(logs)
            self.weights_epoch = self.epoch
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, logs)
        for cb in self.callbacks:
            cb.on_train_end(self)
        self._done = self.epoch >= self.config.epochs or self.stop_training
        return self.history

    # Steps per call of the compiled dense engine (``_fast_epoch``): callbacks' ``on_batch_end``
    # run after each chunk, for each of its batches (a progress bar moves every ~5 ms).
    fast_chunk: int = 64

    def run_epoch(self, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, float]:
        """One pass over a fresh permutation; returns the epoch's mean loss and accuracy."""
        self.model.train()
        bs, n = self.config.batch_size, len(xs)
        num_batches = -(-n // bs)
        order = torch.randperm(n, generator=self.generator).to(self.device)
        # Each step writes its samples' log-probability of the true class and its predictions
        # into these slots: no per-step reduction, and no host sync (``.item()``) until the end.
        picked = torch.empty((n, 1), device=self.device)
        pred = torch.empty(n, dtype=torch.long, device=self.device)
        run, chunk, planners = self._step_engine(xs, ys, order, picked, pred)
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            self.step_threads = self.train_threads(xs[:1])
            torch.set_num_threads(self.step_threads)
        try:
            for first in range(0, num_batches, chunk):
                count = min(chunk, num_batches - first)
                lrs = None
                for cb in planners:  # per-step schedules say their rates for the chunk up front
                    lrs = cb.lr_plan(self, self.epoch, first, count) or lrs
                run(first, count, lrs)
                for batch in range(first + 1, first + count + 1):
                    for cb in self.callbacks:
                        cb.on_batch_end(self, batch, self.num_batches)
            # Still with the training thread count: on a busy machine these two small
            # reductions took ~15 ms each with two threads (an OpenMP team waits for a
            # descheduled member), a tenth of a compiled softmax epoch.
            return {"loss": -float(picked.sum(dtype=torch.float64)) / n,
                    "accuracy": int((pred == ys[order]).sum()) / n}
        finally:
            torch.set_num_threads(threads)

    def _step_engine(self, xs, ys, order, picked, pred):
        """``(run(first, count, lrs), chunk, planners)``: how this epoch's batches are stepped.

        Plain dense stacks on the CPU without augmentation run ``fast_chunk`` steps per call in
        compiled code (``_fast_epoch``); everything else (other models, CUDA, augmentation, no
        numba, a ``train_step`` overridden by a subclass or replaced on the instance) calls
        :meth:`train_step` once per batch. Chunks need callbacks that only watch between steps
        (``on_batch_end`` not overridden, or ``chunk_safe``) or that can plan the chunk's
        learning rates (``lr_plan``); any other ``on_batch_end`` (it might change ``lr`` or
        weights between steps) gets chunks of one step, still compiled.
        """
        bs = self.config.batch_size
        # The hand-written step (no autograd bookkeeping) for the model as it is at the start of
        # this epoch, and the compiled epoch: float32 arithmetic, plain cross-entropy.
        plain = not self.config.label_smoothing and self.config.precision == "float32"
        self._dense_step = DenseStep.build(self.model, per_batch=True) if plain else None
        fast = None
        if not self.augment.active and plain and not self._custom_train_step():
            fast = FastEpoch.build(self.model, self.optimizer, self.device)
            if fast is not None and not fast.start_epoch(xs, ys, order, picked, pred, bs):
                fast = None
        if fast is None:
            # A conv step's chain computes the metrics with the loss (same kernel, same values);
            # a train_step of the user's own may return other logits than the step computed.
            dense = None if self._custom_train_step() else self._dense_step
            graphed = self._graphed_step(xs)

            def run(first, count, lrs):
                for b in range(first, first + count):
                    rows = slice(b * bs, (b + 1) * bs)
                    idx = order[rows]
                    if graphed is not None and graphed.usable(len(idx)):
                        step_picked, step_pred = graphed.step(xs, ys, idx, self.augment)
                        picked[rows].view(-1).copy_(step_picked)
                        pred[rows].copy_(step_pred)
                        self.optimizer.step()
                        continue
                    xb, yb = xs.index_select(0, idx), ys.index_select(0, idx)
                    if self.augment.active:
                        xb = self.augment(xb)
                    logits = self.train_step(xb, yb)
                    # The epoch's loss and accuracy come from these slots (one sync, at its end).
                    metrics = dense.metrics if dense is not None else None
                    if metrics is not None:
                        np.copyto(picked[rows].view(-1).numpy(), metrics[0])
                        np.copyto(pred[rows].numpy(), metrics[1])
                    else:
                        with torch.no_grad():
                            softmax_cross_entropy(logits, yb, picked=picked[rows].view(-1), pred=pred[rows])

            return run, 1, []
        planners = [cb for cb in self.callbacks if hasattr(cb, "lr_plan")]
        own = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end
               and not getattr(cb, "chunk_safe", False) and cb not in planners]
        return fast.run, (1 if own else self.fast_chunk), planners

    def _graphed_step(self, xs: torch.Tensor) -> GraphedStep | None:
        """The CUDA graph step for this trainer's batches (None: eager steps). Not for a
        ``train_step`` of the user's own, which must run as written, nor off CUDA."""
        if not (self.cuda_graphs and self.device.type == "cuda") or self._custom_train_step():
            return None
        shape = xs.shape[1:]
        g = self._graphed
        if g is None or g.batch_size != self.config.batch_size or g.x.shape[1:] != shape:
            self._graphed = g = GraphedStep(self.model, self.optimizer, self.config.batch_size, shape, self.device,
                                            self.autocast, self.config.label_smoothing)
        return g

    def _custom_train_step(self) -> bool:
        """Whether ``train_step`` is not this class's own: the compiled engine would skip it."""
        return type(self).train_step is not Trainer.train_step or "train_step" in vars(self)

    def train_threads(self, sample: torch.Tensor) -> int:
        """Intra-op threads for CPU training steps on batches like ``sample`` (one image suffices)."""
        if self.cpu_train_threads and step_macs(self.model, sample[:1]) * self.config.batch_size < self.cpu_parallel_macs:
            return min(self.cpu_train_threads, self.threads)
        return self.threads

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Forward, backward and optimizer update on one batch; returns its logits (n, classes).

        The loop calls this for every training batch: ``xb`` float (n, 28, 28) in [0, 1] on the
        device, already augmented, ``yb`` long (n,). The returned logits are those of the forward
        pass before the update (as Keras's running metrics); the epoch's ``loss`` and
        ``accuracy`` are computed from them. Override it for a custom loss, gradient clipping
        and the like: a subclass's ``train_step`` is always called, because the compiled dense
        engine, which runs whole chunks of steps without Python, steps aside for it.

        Dense stacks, with dropout and a front of compiled convolutions too, get the
        hand-written step (same arithmetic, no autograd bookkeeping), everything else autograd;
        both finish with the same optimizer update.
        """
        if self._dense_step is not None:
            logits = self._dense_step(xb, yb)
        else:
            with self.autocast():
                logits = self.model(xb)
            loss = softmax_cross_entropy(logits.float(), yb, self.config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
        self.optimizer.step()
        return logits.detach().float()

    def autocast(self, cache_enabled: bool = True) -> torch.autocast:
        """The forward pass's arithmetic (``config.precision``): a no-op context for float32."""
        bf16 = self.config.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=cache_enabled)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer, RNG states, history, callbacks' state.

        Tensors (the RNG states as uint8) and JSON scalars only, for ``checkpoint.save_checkpoint``.
        """
        rng = {"torch": torch.get_rng_state(), "shuffle": self.generator.get_state(),
               "augment": self.augment.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"epoch": self.epoch, "history": self.history, "stop_training": self.stop_training,
                 "stop_reason": self.stop_reason, "config": self.config.to_dict(),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng,
                 "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks()}}
        threads = self.threads_used()
        if threads is not None:
            state["threads"] = threads
        return state

    def threads_used(self) -> dict[str, int | None] | None:
        """``{"threads", "step_threads"}`` the CPU epochs ran with (None on a GPU): this trainer's,
        or, where it has trained no epoch since resuming, the checkpoint's."""
        if self.device.type != "cpu":
            return None
        if self.step_threads is None and self._restored_threads is not None:
            return dict(self._restored_threads)
        return {"threads": self.threads, "step_threads": self.step_threads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output: the next ``fit`` starts at epoch ``epoch + 1``."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["shuffle"])
        self.augment.generator.set_state(state["rng"]["augment"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.weights_epoch = self.epoch  # a checkpoint holds its epoch's weights (a best epoch's are restored at the end)
        self.stop_training, self.stop_reason = bool(state["stop_training"]), state["stop_reason"]
        threads = state.get("threads")  # checkpoints before it was recorded have none
        if isinstance(threads, dict) and isinstance(threads.get("threads"), int):
            self._restored_threads = {"threads": threads["threads"], "step_threads": threads.get("step_threads")}
        saved = state.get("callbacks", {})
        for key, cb in self._keyed_callbacks():
            if key in saved:
                cb.load_state_dict(saved[key])

    def _keyed_callbacks(self):
        """(stable key, callback): the class name, numbered from the second of a kind."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            yield (name if seen[name] == 1 else f"{name}.{seen[name] - 1}"), cb


def callbacks_from_config(config: TrainConfig) -> list[Callback]:
    """The callbacks a training config asks for: its schedule and early stopping."""
    callbacks: list[Callback] = []
    if config.schedule:
        config = config.resolved()  # this schedule's settings, its defaults filled in; the others None
        settings = {"step_epochs": config.lr_step_epochs, "gamma": config.lr_gamma, "pct_start": config.pct_start}
        callbacks.append(LearningRateScheduler(config.schedule, **{k: v for k, v in settings.items() if v is not None}))
    if config.patience:
        callbacks.append(EarlyStopping("val_loss", patience=config.patience, restore_best_weights=True))
    return callbacks


def step_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-adds of the linear and convolution layers' forward pass on ``sample`` (one image).

    Counted with forward hooks on one no-grad, eval-mode pass (so batch norm's running
    statistics do not move) over one view of the image, as a training step sees it (a model that
    predicts with test-time views would run its layers again). The backward pass costs about twice
    as much again.
    """
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:  # _ConvNd
            total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            one_view(model)(sample)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total // max(1, len(sample))


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, config: TrainConfig | None = None,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: Sequence[Callback] = ()) -> list[dict[str, Any]]:
    """Train ``model`` in place with the one loop; returns the history (one dict per epoch)."""
    config = config or TrainConfig()
    with seeded(config.seed):
        return Trainer(model, config, callbacks).fit(x, y, validation_data)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's random generators seeded with ``seed`` inside, and outside as they were: a library
    call trains reproducibly without resetting the random numbers of the notebook around it."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
