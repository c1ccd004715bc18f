"""Optimizers with Keras's defaults, so the book's experiments reproduce without tuning.

Keras and PyTorch differ in small ways that matter for fidelity: Keras's RMSprop puts epsilon
inside the square root (``lr * g / sqrt(v + eps)``), PyTorch's outside; Keras's defaults use
``eps = 1e-7``. Where the difference is only epsilon's placement we still follow Keras.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from fmnist.errors import UsageError


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop exactly as Keras computes it (``keras.optimizers.RMSprop``, not centered).

    ``v = rho * v + (1 - rho) * g**2``;  ``p -= lr * g / sqrt(v + eps)`` (plus optional momentum
    on the increment, and decoupled-free L2 ``weight_decay`` added to the gradient like torch).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    if group["momentum"]:
                        state["momentum_buffer"] = torch.zeros_like(p)
            square_avgs = [s["square_avg"] for s in states]
            # Multi-tensor (foreach) kernels: one call per phase instead of one per parameter.
            torch._foreach_mul_(square_avgs, group["rho"])
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - group["rho"])
            denom = torch._foreach_add(square_avgs, group["eps"])
            torch._foreach_sqrt_(denom)
            if group["momentum"]:
                bufs = [s["momentum_buffer"] for s in states]
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_addcdiv_(bufs, grads, denom, value=group["lr"])
                torch._foreach_sub_(params, bufs)
            else:
                torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])
        return loss


# name -> (factory, Keras's default learning rate)
OPTIMIZERS = {
    "rmsprop": (lambda p, lr, o: KerasRMSprop(p, lr=lr, momentum=o["momentum"], weight_decay=o["weight_decay"]), 1e-3),
    "sgd": (lambda p, lr, o: torch.optim.SGD(p, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"],
                                             weight_decay=o["weight_decay"]), 1e-2),
    "adagrad": (lambda p, lr, o: torch.optim.Adagrad(p, lr=lr, initial_accumulator_value=0.1, eps=1e-7,
                                                     weight_decay=o["weight_decay"]), 1e-3),
    "adam": (lambda p, lr, o: torch.optim.Adam(p, lr=lr, eps=1e-7, weight_decay=o["weight_decay"]), 1e-3),
    # Keras's AdamW default weight decay is 0.004.
    "adamw": (lambda p, lr, o: torch.optim.AdamW(p, lr=lr, eps=1e-7, weight_decay=o["weight_decay"] or 0.004), 1e-3),
}


def build_optimizer(name: str, params: Iterable, lr: float | None = None, *, momentum: float = 0.0,
                    nesterov: bool = False, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """An optimizer by name with Keras's defaults; ``lr=None`` means the Keras default."""
    if name not in OPTIMIZERS:
        raise UsageError(f"--optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if nesterov and (name != "sgd" or momentum <= 0):
        raise UsageError("--nesterov needs --optimizer sgd and --momentum > 0")
    factory, default_lr = OPTIMIZERS[name]
    options = {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
    return factory(params, default_lr if lr is None else lr, options)
