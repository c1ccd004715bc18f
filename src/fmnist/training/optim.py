"""Optimizers with Keras's arithmetic and defaults, each update a handful of ops on flat buffers.

Keras and PyTorch differ in small ways that matter for fidelity, and we follow Keras 3
(``keras.optimizers``) everywhere:

- RMSprop and Adagrad put epsilon inside the square root: ``lr * g / sqrt(v + eps)``.
- Adam puts it outside and does not bias-correct it: ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) *
  m / (sqrt(v) + eps)``; ``eps = 1e-7`` for all three.
- SGD's momentum accumulates the step, not the gradient: ``m = mu * m - lr * g; p += m``
  (nesterov: ``p += mu * m - lr * g``), so a learning-rate change acts on the next step only.
- ``weight_decay`` is decoupled for every optimizer, applied before the update:
  ``p -= lr * wd * p``. AdamW is Adam with ``weight_decay`` defaulting to 0.004.

Why flat buffers: at batch 32 the update, not the arithmetic, was half of a training step's CPU
time, because it is one small kernel per parameter tensor per phase. Here each param group's
gradients live in ONE contiguous buffer (every ``p.grad`` is a view of it; autograd accumulates
into those views in place), and so does each piece of optimizer state, so the update is a few
in-place ops on one tensor plus a single multi-tensor add into the parameters; on the CPU, with
numba installed, it is one fused pass per parameter tensor (``_fast_kernels``). The parameters
themselves keep their own storage: a model's ``state_dict`` must not share memory (safetensors
refuses shared tensors).

Each step reads ``lr`` and the other hyperparameters from ``param_groups``, so schedules work;
``state_dict()`` returns copies (safe to store) and ``load_state_dict`` continues bit for bit.
A parameter whose ``grad`` is None in a step counts as a zero gradient (its state still decays);
Keras skips such variables, torch too: this only matters for parameters outside the loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import (
    _global_optimizer_post_hooks,
    _global_optimizer_pre_hooks,
)

from fmnist.training.config import check_optimizer, optimizer_defaults
from fmnist.training import _fast_kernels as _kernels


@dataclasses.dataclass(eq=False)
class FlatGroup:
    """One param group's flat buffers, shared by the update and the compiled epoch (``_fast_epoch``).

    Every ``p.grad`` of the group is a view of ``grad`` (``grad_views``, in parameter order);
    each optimizer state (Adam's ``exp_avg``, ...) is one buffer in ``state`` whose views are
    the per-parameter ``optimizer.state[p][name]``. With ``fused``, updates run the one-pass
    CPU kernels on numpy views of the same memory: ``arrays`` ("grad" and each state name ->
    one array per parameter) and ``param_arrays`` (the parameters' own storage).
    """

    shapes: list[torch.Size]
    grad: torch.Tensor
    grad_views: list[torch.Tensor]
    tmp: torch.Tensor  # scratch of the same size for the torch-ops update
    tmp_views: list[torch.Tensor]
    state: dict[str, torch.Tensor]
    step: int = 0  # updates applied; stored per parameter by state_dict()
    fused: bool = False
    scalar: type = np.float32  # the kernels' scalar type (the parameters' dtype)
    arrays: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    param_arrays: list[np.ndarray] = dataclasses.field(default_factory=list)
    param_ptrs: list[int] | None = None  # the storage param_arrays were made for

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a flat buffer laid out like ``grad``."""
        return [v.view(shape) for v, shape in zip(buf.split([math.prod(s) for s in self.shapes]), self.shapes)]


class FlatOptimizer(torch.optim.Optimizer):
    """Base class: per-group flat gradient and state buffers; subclasses write ``_update``.

    ``state_names`` lists the per-parameter state tensors (each a view of one flat buffer per
    group, created at construction with ``_initial_state``); ``state_dict`` stores them per
    parameter, as torch's optimizers do, plus ``step`` (the number of updates applied).

    For the compiled epoch, the public side is ``flat_groups`` (one :class:`FlatGroup` per
    param group), :meth:`gather_grads`, :meth:`coefficients`, ``kernel`` and ``kernel_code``.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.flat_groups: list[FlatGroup] = []
        super().__init__(params, defaults)

    # -- layout ---------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self.flat_groups.append(self._build_flat(self.param_groups[-1]))

    def _initial_state(self, name: str, group: dict[str, Any]) -> float:
        return 0.0

    def _build_flat(self, group: dict[str, Any]) -> FlatGroup:
        params = group["params"]
        kinds = {(p.dtype, p.device) for p in params}
        if len(kinds) > 1:
            raise ValueError(f"{type(self).__name__}: a param group must have one dtype and device, got {kinds}")
        dtype, device = kinds.pop() if kinds else (torch.float32, torch.device("cpu"))
        grad = torch.zeros(sum(p.numel() for p in params), dtype=dtype, device=device)
        tmp = torch.empty_like(grad)
        flat = FlatGroup(shapes=[p.shape for p in params], grad=grad, grad_views=[], tmp=tmp, tmp_views=[], state={})
        flat.grad_views, flat.tmp_views = flat.views(grad), flat.views(tmp)
        for p, view in zip(params, flat.grad_views):
            if p.grad is not None:
                view.copy_(p.grad)
            p.grad = view
        for name in self.state_names:
            buf = torch.full_like(grad, self._initial_state(name, group))
            flat.state[name] = buf
            for p, view in zip(params, flat.views(buf)):
                self.state[p][name] = view
        flat.fused = (_kernels.AVAILABLE and device.type == "cpu" and dtype in (torch.float32, torch.float64)
                      and all(p.is_contiguous() for p in params))
        if flat.fused:
            # numpy views of the same memory, made once: the fused kernels take arrays.
            flat.scalar = np.float32 if dtype == torch.float32 else np.float64
            flat.arrays = {name: [v.view(-1).numpy() for v in flat.views(buf)]
                           for name, buf in (("grad", grad), *flat.state.items())}
        return flat

    def gather_grads(self, index: int = 0) -> FlatGroup:
        """Make param group ``index``'s flat buffer hold this step's gradients; returns its FlatGroup.

        It does already unless someone replaced a ``p.grad`` (or set it to None: a zero
        gradient); with ``fused``, ``param_arrays`` are remade if a parameter got new storage.
        """
        group, flat = self.param_groups[index], self.flat_groups[index]
        for p, view in zip(group["params"], flat.grad_views):
            grad = p.grad
            if grad is not view:
                if grad is None:
                    view.zero_()
                else:
                    view.copy_(grad)
                p.grad = view
        if flat.fused:
            ptrs = [p.data_ptr() for p in group["params"]]
            if ptrs != flat.param_ptrs:  # first step, or a parameter got new storage
                flat.param_arrays = [p.detach().view(-1).numpy() for p in group["params"]]
                flat.param_ptrs = ptrs
        return flat

    # -- torch.optim.Optimizer API ----------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        if set_to_none:
            super().zero_grad(set_to_none=True)
            return
        for group, flat in zip(self.param_groups, self.flat_groups):
            flat.grad.zero_()
            for p, view in zip(group["params"], flat.grad_views):
                p.grad = view

    def step(self, closure=None):
        # torch wraps every optimizer's ``step`` in a profiler record and hook loops (``hooked``
        # below opts out of that wrapper); the hooks are honoured here, at the cost of two
        # emptiness checks when there are none.
        if _global_optimizer_pre_hooks or self._optimizer_step_pre_hooks:
            for hook in (*_global_optimizer_pre_hooks.values(), *self._optimizer_step_pre_hooks.values()):
                if hook(self, (self,), {"closure": closure}) is not None:
                    raise RuntimeError(f"{type(self).__name__}: step pre-hooks must return None")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for index, group in enumerate(self.param_groups):
                params = group["params"]
                if not params:
                    continue
                flat = self.gather_grads(index)
                flat.step += 1
                # Keras 3's decoupled weight decay, before the update: p *= 1 - lr * wd.
                keep = 1.0 - group["lr"] * group["weight_decay"]
                if flat.fused:
                    self._fused(group, flat, flat.step, keep)
                else:
                    if keep != 1.0:
                        torch._foreach_mul_(params, keep)
                    self._update(group, flat, flat.step)
        if self._optimizer_step_post_hooks or _global_optimizer_post_hooks:
            for hook in (*self._optimizer_step_post_hooks.values(), *_global_optimizer_post_hooks.values()):
                hook(self, (self,), {"closure": closure})
        return loss

    step.hooked = True

    def state_dict(self) -> dict[str, Any]:
        # Copies: the live state is views of shared buffers (safetensors refuses shared
        # memory, and a snapshot must not change as training goes on).
        for group, flat in zip(self.param_groups, self.flat_groups):
            for p in group["params"]:
                self.state[p]["step"] = flat.step
        sd = super().state_dict()
        sd["state"] = {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()}
                       for k, s in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # torch's loader puts fresh tensors in ``self.state``: copy them back into the flat
        # buffers and point the state at the views again.
        for group, flat in zip(self.param_groups, self.flat_groups):
            for name in self.state_names:
                for p, view in zip(group["params"], flat.views(flat.state[name])):
                    loaded = self.state[p].get(name)
                    if loaded is not None and loaded is not view:
                        view.copy_(loaded)
                    self.state[p][name] = view
            steps = {int(self.state[p].get("step", 0)) for p in group["params"]}
            flat.step = max(steps, default=0)

    def _update(self, group: dict[str, Any], flat: FlatGroup, step: int) -> None:
        """The update with torch ops (any device); ``p.grad`` views hold this step's gradients."""
        raise NotImplementedError

    def _fused(self, group: dict[str, Any], flat: FlatGroup, step: int, keep: float) -> None:
        """The same update (decay included) with the one-pass CPU kernels of ``_fast_kernels``."""
        c, a = flat.scalar, flat.arrays
        args = tuple(c(v) for v in self.coefficients(group, group["lr"], step))
        states = [a[name] for name in self.state_names]
        for p, g, *s in zip(flat.param_arrays, a["grad"], *states):
            self.kernel(p, g, *s, *args)

    # The fused kernel and its scalar arguments after the arrays (``keep`` first); the compiled
    # epoch (``_fast_epoch``) builds its per-step coefficient table from the same method, so
    # both paths round the same Python floats to the same float32 values.
    kernel = None
    kernel_code = -1  # index of the kernel in ``_fast_epoch``'s dispatch

    def coefficients(self, group: dict[str, Any], lr: float, step: int) -> tuple[float, ...]:
        """The fused kernel's scalar arguments for update number ``step`` at rate ``lr``."""
        raise NotImplementedError

    @staticmethod
    def _apply(params: list[torch.Tensor], flat: FlatGroup, alpha: float) -> None:
        """``p += alpha * tmp`` for every parameter, in one multi-tensor call."""
        torch._foreach_add_(params, flat.tmp_views, alpha=alpha)


class KerasRMSprop(FlatOptimizer):
    """``keras.optimizers.RMSprop`` (not centered).

    ``v = rho * v + (1 - rho) * g**2``; ``inc = lr * g / sqrt(v + eps)``; ``p -= inc``, or with
    momentum ``m = momentum * m + inc; p -= m``.
    """

    # The momentum buffer always exists (zeros): a schedule may switch momentum on mid-run.
    state_names = ("square_avg", "momentum_buffer")

    def __init__(self, params: Iterable, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay))

    def _update(self, group, flat, step):
        g, v, tmp = flat.grad, flat.state["square_avg"], flat.tmp
        v.mul_(group["rho"]).addcmul_(g, g, value=1 - group["rho"])
        torch.add(v, group["eps"], out=tmp).sqrt_()
        torch.div(g, tmp, out=tmp)
        if group["momentum"]:
            m = flat.state["momentum_buffer"]
            m.mul_(group["momentum"]).add_(tmp, alpha=group["lr"])
            torch._foreach_sub_(group["params"], flat.views(m))
        else:
            self._apply(group["params"], flat, -group["lr"])

    kernel, kernel_code = staticmethod(_kernels.rmsprop), 0

    def coefficients(self, group, lr, step):
        return (1.0 - lr * group["weight_decay"], lr, group["rho"], 1 - group["rho"], group["eps"],
                group["momentum"])


class KerasSGD(FlatOptimizer):
    """``keras.optimizers.SGD``: ``m = momentum * m - lr * g``; ``p += m`` (nesterov:
    ``p += momentum * m - lr * g``); without momentum ``p -= lr * g``."""

    state_names = ("momentum_buffer",)

    def __init__(self, params: Iterable, lr: float = 1e-2, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def _update(self, group, flat, step):
        g, lr, mu = flat.grad, group["lr"], group["momentum"]
        if not mu:
            torch._foreach_add_(group["params"], flat.grad_views, alpha=-lr)
            return
        m = flat.state["momentum_buffer"]
        m.mul_(mu).add_(g, alpha=-lr)
        if group["nesterov"]:
            torch.mul(m, mu, out=flat.tmp).add_(g, alpha=-lr)
            self._apply(group["params"], flat, 1.0)
        else:
            torch._foreach_add_(group["params"], flat.views(m))

    kernel, kernel_code = staticmethod(_kernels.sgd), 1

    def coefficients(self, group, lr, step):
        return (1.0 - lr * group["weight_decay"], lr, group["momentum"], float(bool(group["nesterov"])))


class KerasAdagrad(FlatOptimizer):
    """``keras.optimizers.Adagrad``: ``acc += g**2``; ``p -= lr * g / sqrt(acc + eps)``; acc starts at 0.1."""

    state_names = ("sum",)

    def __init__(self, params: Iterable, lr: float = 1e-3, initial_accumulator_value: float = 0.1,
                 eps: float = 1e-7, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      weight_decay=weight_decay))

    def _initial_state(self, name, group):
        return group["initial_accumulator_value"]

    def _update(self, group, flat, step):
        g, acc, tmp = flat.grad, flat.state["sum"], flat.tmp
        acc.addcmul_(g, g)
        torch.add(acc, group["eps"], out=tmp).sqrt_()
        torch.div(g, tmp, out=tmp)
        self._apply(group["params"], flat, -group["lr"])

    kernel, kernel_code = staticmethod(_kernels.adagrad), 2

    def coefficients(self, group, lr, step):
        return (1.0 - lr * group["weight_decay"], lr, group["eps"])


class KerasAdam(FlatOptimizer):
    """``keras.optimizers.Adam`` (and AdamW: the same with decoupled ``weight_decay``).

    ``m += (g - m) * (1 - b1)``; ``v += (g**2 - v) * (1 - b2)``;
    ``p -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, group, flat, step):
        g, m, v, tmp = flat.grad, flat.state["exp_avg"], flat.state["exp_avg_sq"], flat.tmp
        b1, b2 = group["betas"]
        m.lerp_(g, 1 - b1)  # lerp computes m + (g - m) * w, Keras's form
        v.lerp_(torch.mul(g, g, out=tmp), 1 - b2)
        torch.sqrt(v, out=tmp).add_(group["eps"])
        torch.div(m, tmp, out=tmp)
        self._apply(group["params"], flat, -self._alpha(group, step))

    @staticmethod
    def _alpha(group, step, lr=None):
        b1, b2 = group["betas"]
        return (group["lr"] if lr is None else lr) * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)

    kernel, kernel_code = staticmethod(_kernels.adam), 3

    def coefficients(self, group, lr, step):
        b1, b2 = group["betas"]
        return (1.0 - lr * group["weight_decay"], self._alpha(group, step, lr), 1 - b1, 1 - b2, group["eps"])


# name -> factory(params, lr, options); config.DEFAULT_LR holds each one's default rate.
OPTIMIZERS = {
    "rmsprop": lambda p, lr, o: KerasRMSprop(p, lr=lr, momentum=o["momentum"], weight_decay=o["weight_decay"]),
    "sgd": lambda p, lr, o: KerasSGD(p, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"],
                                     weight_decay=o["weight_decay"]),
    "adagrad": lambda p, lr, o: KerasAdagrad(p, lr=lr, weight_decay=o["weight_decay"]),
    "adam": lambda p, lr, o: KerasAdam(p, lr=lr, weight_decay=o["weight_decay"]),
    "adamw": lambda p, lr, o: KerasAdam(p, lr=lr, weight_decay=o["weight_decay"]),
}


def build_optimizer(name: str, params: Iterable, lr: float | None = None, *, momentum: float | None = None,
                    nesterov: bool = False, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """An optimizer by name with Keras's defaults.

    ``lr=None`` and ``weight_decay=None`` mean the optimizer's Keras default
    (:func:`optimizer_defaults`); an explicit 0 is honoured. ``momentum`` applies to sgd and
    rmsprop only; asking another optimizer for one raises :class:`UsageError`.
    """
    check_optimizer(name, momentum=momentum, nesterov=nesterov)
    defaults = optimizer_defaults(name)
    factory = OPTIMIZERS[name]
    options = {"momentum": momentum or 0.0, "nesterov": nesterov,
               "weight_decay": defaults["weight_decay"] if weight_decay is None else weight_decay}
    return factory(params, defaults["lr"] if lr is None else lr, options)
