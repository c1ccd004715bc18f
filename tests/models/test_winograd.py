"""3x3 convolutions by Winograd F(4x4, 3x3) against torch's direct convolution, and where Network uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmnist import _blas
from fmnist._threads import torch_threads
from fmnist.models import ModelSpec, _batches, _fused, _winograd
from fmnist.models.network import Network

pytestmark = pytest.mark.skipif(not (_fused.AVAILABLE and _blas.ONE_THREAD),
                                reason="the Winograd kernels need numba and MKL's sgemm")


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max())


# (images, channels in, out, height, width, padding, bias, group_tiles): odd sizes leave partial
# tiles at the right and bottom; small groups make a slice walk its images in several groups,
# the last one short.
SHAPES = [(3, 4, 5, 14, 14, 1, True, 64), (2, 3, 6, 7, 9, 0, True, 64), (5, 2, 3, 6, 5, 1, False, 4),
          (4, 3, 2, 3, 3, 1, True, 1), (3, 2, 2, 4, 4, 0, True, 8)]


@pytest.mark.parametrize("n, c, k, h, w, pad, bias, group", SHAPES)
def test_output_and_every_gradient_match_a_float64_convolution(n, c, k, h, w, pad, bias, group, slices,
                                                                  monkeypatch):
    monkeypatch.setattr(_winograd, "group_tiles", group)
    torch.manual_seed(0)
    conv = nn.Conv2d(c, k, 3, padding=pad, bias=bias)
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().double().requires_grad_()
    b = conv.bias.detach().double().requires_grad_() if bias else None
    expected = F.conv2d(x, weight, b, padding=pad)
    grad = torch.randn_like(expected)
    expected.backward(grad)

    xf = x.detach().float().requires_grad_()
    out = _winograd.Winograd3x3.apply(xf, conv.weight, conv.bias, pad)
    out.backward(grad.float())
    # Float32 with the transforms' coefficients: a few units of 1e-6 of the largest value.
    assert out.shape == expected.shape
    assert _relative_error(out, expected) < 2e-5
    assert _relative_error(xf.grad, x.grad) < 2e-5
    assert _relative_error(conv.weight.grad, weight.grad) < 2e-5
    if bias:
        assert _relative_error(conv.bias.grad, b.grad) < 2e-5
    else:
        assert conv.bias is None


def test_an_input_that_needs_no_gradient_gets_none_and_the_filters_still_learn():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)
    _winograd.Winograd3x3.apply(x, conv.weight, conv.bias, 1).sum().backward()
    assert x.grad is None
    w64 = conv.weight.detach().double().requires_grad_()
    F.conv2d(x.double(), w64, conv.bias.detach().double(), padding=1).sum().backward()
    assert _relative_error(conv.weight.grad, w64.grad) < 2e-5


def test_same_inputs_same_bits_on_two_threads(monkeypatch):
    monkeypatch.setattr(_batches, "min_slice_images", 1)
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(6, 8, 10, 10)
    runs = []
    with torch_threads(2):
        for _ in range(2):
            conv.zero_grad()
            xg = x.clone().requires_grad_()
            out = _winograd.Winograd3x3.apply(xg, conv.weight, conv.bias, 1)
            out.square().sum().backward()
            runs.append([out.detach(), xg.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_which_convolutions_take_the_path():
    wide = _winograd.min_channels
    assert _winograd.applies(nn.Conv2d(wide, wide, 3, padding=1))
    assert _winograd.applies(nn.Conv2d(wide, 2 * wide, 3))
    assert not _winograd.applies(nn.Conv2d(wide - 1, wide, 3, padding=1))  # too few channels in
    assert not _winograd.applies(nn.Conv2d(wide, wide - 1, 3, padding=1))  # ... or out
    assert not _winograd.applies(nn.Conv2d(wide, wide, 5, padding=2))
    assert not _winograd.applies(nn.Conv2d(wide, wide, 3, stride=2, padding=1))
    assert not _winograd.applies(nn.Conv2d(wide, wide, 3, padding=2))
    assert not _winograd.applies(nn.Conv2d(wide, wide, 3, padding=1, dilation=2))
    assert not _winograd.applies(nn.Conv2d(wide, wide, 3, padding=1, groups=2))
    assert not _winograd.applies(nn.Conv2d(wide, wide, 3, padding=1, padding_mode="reflect"))
    plan = _fused.Plan([nn.Conv2d(1, wide, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(wide, wide, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)])
    assert [kind for _, _, kind in plan.steps] == ["stem", "winograd", "relu-pool"]


def test_elsewhere_the_module_runs_unchanged(monkeypatch):
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(2, 32, 6, 6)
    calls = []
    monkeypatch.setattr(_winograd.Winograd3x3, "apply", lambda *a: calls.append(a) or conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bfloat16 convolutions stay oneDNN's
        assert torch.equal(_winograd.conv3x3(x, conv), conv(x))
    assert torch.equal(_winograd.conv3x3(x.double(), conv.double()), conv(x.double()))
    conv.float()
    monkeypatch.setattr(_winograd, "AVAILABLE", False)  # no numba
    assert torch.equal(_winograd.conv3x3(x, conv), conv(x))
    assert calls == []
    monkeypatch.setattr(_winograd, "AVAILABLE", True)
    _winograd.conv3x3(x, conv)
    assert len(calls) == 1


def test_a_residual_blocks_convolutions_take_it_and_a_hook_inside_sees_them_run(monkeypatch):
    torch.manual_seed(0)
    fast = Network(ModelSpec.parse("conv:32:3:same:relu,maxpool:2,residual:32,residual:48,flatten,dense:10"))
    plain = Network(fast.spec)
    plain.load_state_dict(fast.state_dict())
    plain._plan.fuses = False
    assert [kind for _, _, kind in fast._plan.steps][1:3] == ["block", "block"]
    calls = []
    apply = _winograd.Winograd3x3.apply
    monkeypatch.setattr(_winograd.Winograd3x3, "apply", lambda *a: calls.append(a[1].shape) or apply(*a))
    x = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(2))
    outs = []
    for model in (fast, plain):
        out = model(x)
        out.square().sum().backward()
        outs.append((out.detach(), [p.grad for p in model.parameters()]))
    assert calls == [(32, 32, 3, 3), (32, 32, 3, 3), (48, 32, 3, 3), (48, 48, 3, 3)]
    assert _relative_error(outs[0][0], outs[1][0].double()) < 1e-5
    # Gradients against the largest of them: a convolution's bias before batch norm has a true
    # gradient of zero, so its values are rounding noise in both, and no two runs agree on them.
    scale = max(float(g.abs().max()) for g in outs[1][1])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert float((a - b).abs().max()) < 1e-5 * scale
    # A hook on a convolution inside a block: the block runs as torch's modules, so it fires.
    seen = []
    fast.layers[3].conv2.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    calls.clear()
    fast(x)
    assert seen == [(4, 32, 14, 14)] and calls == [(48, 32, 3, 3), (48, 48, 3, 3)]


def test_a_chain_of_sgemm_jobs_runs_each_slice_with_mkl_on_one_thread(monkeypatch):
    """Two MKL teams on two cores take turns: a slice that calls sgemm runs it on its own thread
    alone, and the caller's MKL thread count is as it was afterwards."""
    get = _blas._LIB.mkl_get_max_threads
    seen = np.zeros(2, np.int64)

    def kernel(rows, out):
        out[0] = get()

    monkeypatch.setattr(_batches, "min_slice_images", 1)
    with torch_threads(2):
        _blas._set_local(2)
        try:
            parts = _batches.slices(2)
            assert len(parts) == 2
            _batches.Chain([_batches.Job(kernel, (np.zeros(2), seen), (), parts, blas=True)]).run()
            assert list(seen) == [1, 1]
            assert get() == 2
            _batches.Chain([_batches.Job(kernel, (np.zeros(2), seen), (), parts)]).run()
            assert seen[0] == 2  # a chain of jobs without sgemm leaves MKL as it is
        finally:
            _blas._set_local(0)
