"""Every optimizer's update against Keras's formulas, written out in numpy."""

import numpy as np
import pytest
import torch

from fmnist.training import DEFAULT_LR, OPTIMIZERS, _fast_kernels, build_optimizer
from fmnist.training.optim import FlatOptimizer

SHAPES = [(3, 4), (4,), (2, 3)]  # several tensors: the flat layout must keep them apart


def keras_reference(name, momentum=0.0, nesterov=False, weight_decay=0.0):
    """(init_state, update) implementing keras.optimizers.* on one float64 array."""
    eps = 1e-7
    wd = 0.004 if name == "adamw" and not weight_decay else weight_decay

    def decay(p, lr):
        return p - p * (lr * wd)

    if name == "rmsprop":
        def update(p, g, s, lr, t):
            s["v"] = 0.9 * s["v"] + 0.1 * g * g
            inc = lr * g / np.sqrt(s["v"] + eps)
            if momentum:
                s["m"] = momentum * s["m"] + inc
                inc = s["m"]
            return decay(p, lr) - inc
        return lambda p: {"v": np.zeros_like(p), "m": np.zeros_like(p)}, update
    if name == "sgd":
        def update(p, g, s, lr, t):
            if not momentum:
                return decay(p, lr) - lr * g
            s["m"] = momentum * s["m"] - lr * g
            return decay(p, lr) + (momentum * s["m"] - lr * g if nesterov else s["m"])
        return lambda p: {"m": np.zeros_like(p)}, update
    if name == "adagrad":
        def update(p, g, s, lr, t):
            s["a"] = s["a"] + g * g
            return decay(p, lr) - lr * g / np.sqrt(s["a"] + eps)
        return lambda p: {"a": np.full_like(p, 0.1)}, update
    if name in ("adam", "adamw"):
        def update(p, g, s, lr, t):
            alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            s["m"] = s["m"] + (g - s["m"]) * 0.1
            s["v"] = s["v"] + (g * g - s["v"]) * 0.001
            return decay(p, lr) - alpha * s["m"] / (np.sqrt(s["v"]) + eps)
        return lambda p: {"m": np.zeros_like(p), "v": np.zeros_like(p)}, update
    raise KeyError(name)


CASES = [("rmsprop", {}), ("rmsprop", {"momentum": 0.9}), ("rmsprop", {"weight_decay": 0.01}),
         ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
         ("adagrad", {}), ("adam", {}), ("adam", {"weight_decay": 0.02}), ("adamw", {})]


def test_cases_cover_every_registered_optimizer_and_each_has_its_defaults():
    assert {name for name, _ in CASES} == set(OPTIMIZERS) == set(DEFAULT_LR)


def make(name, fused, seed=0, **options):
    rng = np.random.default_rng(seed)
    params = [torch.nn.Parameter(torch.tensor(rng.normal(size=s))) for s in SHAPES]
    opt = build_optimizer(name, params, 0.05, **options)
    assert isinstance(opt, FlatOptimizer)
    for flat in opt.flat_groups:
        flat.fused = flat.fused and fused
    return params, opt


FUSED = [False, pytest.param(True, marks=pytest.mark.skipif(not _fast_kernels.AVAILABLE, reason="no numba"))]


@pytest.mark.parametrize("fused", FUSED, ids=["torch-ops", "fused"])
@pytest.mark.parametrize("name, options", CASES)
def test_update_matches_keras_formula_with_lr_changes(name, options, fused):
    params, opt = make(name, fused, **options)
    init, update = keras_reference(name, **options)
    ref = [p.detach().numpy().copy() for p in params]
    states = [init(p) for p in ref]
    rng = np.random.default_rng(1)
    lrs = [0.05, 0.05, 0.01, 0.2, 0.003]  # changed between steps, as a schedule would
    for t, lr in enumerate(lrs, 1):
        for group in opt.param_groups:
            group["lr"] = lr
        grads = [rng.normal(size=s) for s in SHAPES]
        opt.zero_grad(set_to_none=False)
        for p, g in zip(params, grads):
            p.grad.add_(torch.tensor(g))  # as autograd accumulates into the zeroed grads
        opt.step()
        ref = [update(r, g, s, lr, t) for r, g, s in zip(ref, grads, states)]
        for p, r in zip(params, ref):
            np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("fused", FUSED, ids=["torch-ops", "fused"])
@pytest.mark.parametrize("name, options", CASES)
def test_state_dict_round_trip_continues_identically(name, options, fused):
    params_a, opt_a = make(name, fused, **options)
    rng = np.random.default_rng(2)
    grads = [[torch.tensor(rng.normal(size=s)) for s in SHAPES] for _ in range(6)]

    def run(params, opt, steps):
        for gs in steps:
            opt.zero_grad(set_to_none=True)  # autograd would then hand over fresh tensors
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()

    run(params_a, opt_a, grads[:3])
    saved = opt_a.state_dict()
    saved_params = [p.detach().clone() for p in params_a]
    # The snapshot is a copy: training on must not change it, and it shares no memory.
    before = {k: {n: v.clone() for n, v in s.items() if torch.is_tensor(v)} for k, s in saved["state"].items()}
    run(params_a, opt_a, grads[3:])
    for k, s in before.items():
        for n, v in s.items():
            assert torch.equal(saved["state"][k][n], v)
    ptrs = [v.data_ptr() for s in saved["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert len(set(ptrs)) == len(ptrs)

    params_b, opt_b = make(name, fused, seed=9, **options)  # different weights and fresh state
    with torch.no_grad():
        for p, q in zip(params_b, saved_params):
            p.copy_(q)
    opt_b.load_state_dict(saved)
    run(params_b, opt_b, grads[3:])
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)


def test_fused_and_torch_ops_agree_in_float32():
    if not _fast_kernels.AVAILABLE:
        pytest.skip("no numba")
    for name, options in CASES:
        results = []
        for fused in (False, True):
            torch.manual_seed(0)
            params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
            opt = build_optimizer(name, params, 0.01, **options)
            for flat in opt.flat_groups:
                flat.fused = fused
            for step in range(4):
                opt.zero_grad(set_to_none=False)
                for i, p in enumerate(params):
                    p.grad.copy_(torch.sin(torch.arange(p.numel(), dtype=torch.float32) + step + i).view_as(p))
                opt.step()
            results.append(torch.cat([p.detach().view(-1) for p in params]))
        torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6, msg=name)


def test_parameters_keep_their_own_storage():
    # A model's state_dict must not share memory (safetensors refuses it): only grads are flat.
    params, opt = make("rmsprop", fused=True)
    ptrs = {p.data_ptr() for p in params}
    assert len(ptrs) == len(params)
    assert len({p.grad.untyped_storage().data_ptr() for p in params}) == 1
