"""The fused conv/ReLU/max-pool kernels against torch's own ops, and where Network uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmnist._threads import torch_threads
from fmnist.models import ModelSpec, _batches, _fused
from fmnist.models.network import Network

pytestmark = pytest.mark.skipif(not _fused.AVAILABLE, reason="the fused kernels need numba")


def _grads(fn, *inputs, seed=0):
    """Output of ``fn`` and the gradients of a fixed random projection of it w.r.t. ``inputs``."""
    inputs = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * g).sum().backward()
    return out.detach(), [t.grad for t in inputs if t.requires_grad]


@pytest.mark.parametrize("shape", [(3, 32, 28, 28), (2, 5, 7, 9), (1, 4, 6, 6)])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_max_pool_is_bit_identical_to_torch(shape, relu, channels_last, dtype, slices):
    y = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    y[0, 0, 0, :2] = 1.5  # a tie inside one window: the first wins, in both
    y[0, 1, :2, :2] = -1.0  # a window the ReLU zeroes entirely: no gradient
    y[-1, -1, -2:, -2:] = torch.tensor([[-3.0, -0.5], [-2.0, -1.0]])  # all negative: the pool alone picks -0.5
    y = y.to(dtype)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    y.requires_grad_()
    ours, (g_ours,) = _grads(lambda t: _fused.relu_max_pool2d(t, relu), y)
    ref, (g_ref,) = _grads(lambda t: F.max_pool2d(F.relu(t) if relu else t, 2), y)
    assert ours.dtype == dtype and torch.equal(ours, ref)
    assert torch.equal(g_ours, g_ref)
    assert ours.is_contiguous(memory_format=torch.channels_last) or (dtype == torch.bfloat16 and not relu)


def test_bfloat16_relu_pool_takes_the_kernel(monkeypatch):
    calls = []
    kernel = _fused._kernels().pool_forward
    monkeypatch.setattr(_fused._kernels(), "pool_forward", lambda *a: calls.append(a[0].dtype) or kernel(*a))
    _fused.relu_max_pool2d(torch.randn(2, 8, 6, 6, dtype=torch.bfloat16))
    _fused.relu_max_pool2d(torch.randn(2, 8, 6, 6, dtype=torch.bfloat16), relu=False)  # torch's: see ReluMaxPool2d
    assert calls == [np.int16]


@pytest.mark.parametrize("size", [(28, 28), (7, 9), (6, 5)])
@pytest.mark.parametrize("padding", [1, 0])
def test_stem_matches_torch_conv_relu_pool(size, padding, slices):
    gen = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(1, 8, 3, padding=padding)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(8, generator=gen))
    x = torch.rand(4, 1, *size, generator=gen)
    w, b = conv.weight.detach().requires_grad_(), conv.bias.detach().requires_grad_()
    ours, (gw, gb) = _grads(lambda w_, b_: _fused.StemConvReluPool.apply(x, w_, b_, padding, True), w, b)
    ref, (rw, rb) = _grads(lambda w_, b_: F.max_pool2d(F.relu(F.conv2d(x, w_, b_, padding=padding)), 2), w, b)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb, rb, rtol=1e-4, atol=1e-4)


def test_plan_fuses_conv_relu_pool_runs_and_nothing_else():
    plan = _fused.Plan([nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # stem
                        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # relu-pool
                        nn.Conv2d(8, 8, 3), nn.ReLU(), nn.MaxPool2d(3),  # not 2x2: plain
                        nn.ReLU(), nn.MaxPool2d(2, stride=1)])  # stride 1: plain
    assert [kind for _, _, kind in plan.steps] == ["stem", None, "relu-pool", None, None, None, None, None]
    assert _fused.Plan([nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]).steps[0] == (0, 1, None)
    assert _fused.Plan([nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]).steps[0] == (0, 1, None)
    assert not _fused.Plan([nn.Flatten(), nn.Linear(4, 2)]).fuses


def _cnn(text="conv:6:3:same:relu,maxpool:2,conv:8:3:same:relu,maxpool:2,flatten,dense:10"):
    torch.manual_seed(0)
    return Network(ModelSpec.parse(text))


WIDE = "conv:32:3:same:relu,maxpool:2,conv:32:3:same:relu,maxpool:2,conv:32:3:valid,flatten,dense:10"


# The wide network's 32->32 convolutions ('same', then 'valid') take the Winograd path
# (models/_winograd.py), whose transforms round a little differently from oneDNN.
@pytest.mark.parametrize("text, steps, out_tol, grad_tol", [
    (None, ["stem", None, "relu-pool", None, None], (1e-5, 1e-5), (1e-4, 1e-4)),
    (WIDE, ["stem", "winograd", "relu-pool", "winograd", None, None, None], (1e-4, 1e-5), (1e-3, 1e-5))])
def test_network_forward_and_backward_match_its_plain_modules(text, steps, out_tol, grad_tol):
    fused, plain = (_cnn(text), _cnn(text)) if text else (_cnn(), _cnn())
    assert [kind for _, _, kind in fused._plan.steps] == steps
    plain._plan.fuses = False
    x = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(3))
    outs = []
    for model in (fused, plain):
        out = model(x)
        out.square().sum().backward()
        outs.append((out.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=out_tol[0], atol=out_tol[1])
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=grad_tol[0], atol=grad_tol[1])


def test_network_falls_back_where_no_kernel_applies(monkeypatch):
    model = _cnn().eval()
    x = torch.rand(3, 28, 28)
    expected = model.layers(model.adapt_input(x))
    # An input that needs a gradient (saliency maps): the stem's kernel computes none, so torch runs it.
    xg = x.clone().requires_grad_()
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    # float64, and no numba: torch's modules, same numbers.
    torch.testing.assert_close(model.double()(x.double()), expected.double(), rtol=1e-5, atol=1e-5)
    model.float()
    monkeypatch.setattr(_fused, "AVAILABLE", False)
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("text", [None, WIDE])
def test_training_with_fused_kernels_follows_the_plain_one(text):
    from fmnist.training import TrainConfig, fit

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (96, 28, 28)).astype(np.uint8)
    y = np.arange(96) % 10
    histories = []
    for fuse in (True, False):
        model = _cnn(text) if text else _cnn()
        model._plan.fuses = fuse
        histories.append(fit(model, x, y, config=TrainConfig(epochs=3, batch_size=16, optimizer="adam", seed=1)))
    for a, b in zip(*histories):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    assert histories[0][-1]["loss"] < histories[0][0]["loss"]


def test_hooked_modules_run_unfused_so_their_hooks_fire():
    model = _cnn().eval()
    seen = []
    handle = model.layers[0].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        model(torch.rand(2, 28, 28))
    finally:
        handle.remove()
    assert seen == [(2, 6, 28, 28)]


def test_inference_on_a_few_images_leaves_numba_unloaded_and_a_batch_loads_it():
    """`fmnist predict photo.jpg` should not pay for importing numba; scoring a dataset should use the kernels."""
    import subprocess
    import sys
    from pathlib import Path

    import fmnist

    code = """if True:
        import sys, torch
        from fmnist.models import create_model
        model = create_model("conv:6:3,maxpool:2,flatten,dense:10").eval()
        with torch.inference_mode():
            few = model(torch.rand(3, 28, 28))
            loaded_few = "numba" in sys.modules or "fmnist.models._fused_kernels" in sys.modules
            many = model(torch.rand(256, 28, 28))
            plain = model.layers(model.adapt_input(torch.rand(256, 28, 28)))
        print(loaded_few, "fmnist.models._fused_kernels" in sys.modules, tuple(few.shape), tuple(many.shape))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(fmnist.__file__).parents[1]), "PATH": ""}).stdout
    assert out.split() == ["False", "True", "(3,", "10)", "(256,", "10)"]


def test_dropout_zeroes_at_its_rate_scales_the_rest_and_follows_torchs_seed():
    x = torch.rand(400, 500) + 0.5
    torch.manual_seed(7)
    out = _fused.dropout(x.requires_grad_(), 0.3)
    kept = out != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.005
    torch.testing.assert_close(out[kept], x.detach()[kept] / 0.7)
    out.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)  # the gradient takes the same mask
    torch.manual_seed(7)
    assert torch.equal(_fused.dropout(x.detach(), 0.3), out.detach())
    assert not torch.equal(_fused.dropout(x.detach(), 0.3), out.detach())  # the generator moved on
    bf16 = _fused.dropout(x.detach().bfloat16(), 0.3)
    assert bf16.dtype == torch.bfloat16 and abs((bf16 == 0).float().mean().item() - 0.3) < 0.005


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**62 - 1, 8_424_741_302_661_717])
@pytest.mark.parametrize("size", [1, 3, 6, 4097])
def test_the_compiled_dropout_mask_draws_numpys_values(seed, size):
    # Seeds on either side of 2**32 have one or two 32-bit words; sizes not a multiple of four
    # end inside one of PCG64's 64-bit outputs; the last threshold is one of the draws (kept).
    draws = np.random.Generator(np.random.PCG64(seed)).integers(-32768, 32768, size, dtype=np.int16)
    for threshold in (round(0.1 * 65536), 32768, round(0.7 * 65536), int(draws[size // 2]) + 32768):
        out = np.full(size, np.nan, np.float32)
        _fused._kernels().dropout_mask(seed, threshold, np.float32(1.25), out)
        expected = np.where(draws >= threshold - 32768, np.float32(1.25), np.float32(0))
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_masks_are_the_same_with_and_without_numba(monkeypatch, dtype):
    torch.manual_seed(3)
    seed = int(torch.randint(0, 2**62, ()))  # the first mask's: its first draw is its threshold
    first = int(np.random.Generator(np.random.PCG64(seed)).integers(-32768, 32768, 1, dtype=np.int16)[0])
    rates = ((first + 32768) / 65536, 0.25, 0.5)
    torch.manual_seed(3)
    compiled = [_fused.dropout_mask((17, 33), p, dtype) for p in rates]
    monkeypatch.setattr(_fused, "AVAILABLE", False)
    torch.manual_seed(3)
    plain = [_fused.dropout_mask((17, 33), p, dtype) for p in rates]
    assert compiled[0][0, 0] != 0
    for a, b in zip(compiled, plain):
        assert a.dtype == dtype and torch.equal(a, b)


def test_network_trains_with_the_fast_dropout_and_predicts_without_it(monkeypatch):
    model = _cnn("conv:6:3:same:relu,maxpool:2,flatten,dropout:0.5,dense:10")
    assert [kind for _, _, kind in model._plan.steps] == ["stem", None, "dropout", None]
    rates = []
    monkeypatch.setattr(_fused, "dropout", lambda x, p: rates.append(p) or F.dropout(x, p, True))
    x = torch.rand(4, 28, 28)
    model(x)
    assert rates == [0.5]
    model.eval()  # with autograd on, the plan runs: its dropout step must leave the images alone
    torch.testing.assert_close(model(x), model.layers(model.adapt_input(x)), rtol=1e-5, atol=1e-5)
    assert rates == [0.5]


def test_a_forked_child_runs_the_sliced_kernels_on_a_pool_of_its_own(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(_batches, "min_slice_images", 1)
    y = torch.randn(4, 8, 6, 6)
    with torch_threads(2):
        expected = _fused.relu_max_pool2d(y)  # the parent's pool now has its thread
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.apply_async(_pool_in_child, (y,)).get(timeout=60)
    assert torch.equal(result, expected)


def _pool_in_child(y):
    with torch_threads(2):
        return _fused.relu_max_pool2d(y)
