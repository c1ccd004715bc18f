"""Compiled CPU kernels for the two layer runs every CNN here starts with: conv -> ReLU -> 2x2 max-pool.

Why: in the book's CNN at batch 32 the ReLU and max-pool after each convolution, their
backward passes and layout copies, and the first convolution itself (one input channel: little
arithmetic, a large output) took over a third of the training step on two cores, far above
their arithmetic. Two fusions, each one autograd node over channels-last (NHWC) memory:

- ``relu_max_pool2d``: ReLU and the 2x2 max-pool after it. ReLU is monotonic, so
  ``maxpool(relu(y)) == relu(maxpool(y))``, and the gradient of either reaches only the
  window's winner, and only where it is positive. One forward pass writes the pooled map and
  the winner's index (an int8 per output); one backward pass writes the input gradient, zeros
  and winners together, in the layout the convolution's backward reads.
- ``stem_conv_relu_pool``: a 3x3 convolution of a one-channel image (every MNIST-format model's
  first layer) with its bias, ReLU and 2x2 max-pool. Each pooled output's 4x4 input patch is
  read once and its four convolution outputs live only in registers: the full-size activation
  map is never written. The backward pass (weights and bias only: images need no gradient)
  reads the pooled gradient and the winners directly.

The ReLU-pool takes bfloat16 maps too (autocast's convolutions write them; the stem reads the
float32 images), and both run on slices of the batch on every torch thread. Dropout, the third
step here, draws its mask from numpy's PCG64 stream, faster than torch, in one compiled loop
where numba is present (see ``dropout`` and ``fill_dropout_mask``).

Both are exact where it matters: ``relu_max_pool2d`` gives bit-identical results to
``F.max_pool2d(F.relu(y), 2)`` and its gradient (ties: the first of equal maxima wins, as in
torch); the stem differs from oneDNN's convolution by float32 rounding only (tests compare
both against torch). Each kernel's innermost loop runs over the channels, contiguous in NHWC,
with few enough memory streams for LLVM to vectorise it.

:class:`Plan` finds these runs in a network's module list once, and the 3x3 convolutions that
``_winograd`` computes; ``Network.forward`` follows it, and falls back to the plain modules off
the CPU, without numba, while an exporter traces, or where a forward hook watches one of the
modules.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmnist._numba import AVAILABLE
from fmnist.models import _winograd
from fmnist.models._batches import Job, JobFunction, nhwc, slices, sum_slices


@functools.cache
def _kernels():
    from fmnist.models import _fused_kernels

    return _fused_kernels


class ReluMaxPool2d(JobFunction):
    """``max_pool2d(relu(y), 2)`` (or without the ReLU) on a CPU float32 tensor, any layout.

    With the ReLU, bfloat16 maps (under autocast) go to the same kernels as their bits, int16:
    a positive bfloat16 is a positive int16 and the order of positives is the same, every
    negative is below every positive, and the ReLU zeroes negatives whatever their order. So the
    integer maximum is the float maximum. Without the ReLU, bfloat16 takes torch's ops.

    Its passes are jobs (see ``_batches.JobFunction``).
    """

    @staticmethod
    def forward_job(ctx, y, relu: bool):
        n, c, h, w = y.shape
        z = torch.empty((n, h // 2, w // 2, c), dtype=y.dtype)
        arg = torch.empty((n, h // 2, w // 2, c), dtype=torch.int8)
        job = Job(_kernels().pool_forward, (_bits(nhwc(y.detach())), _bits(z), arg.numpy()),
                  (relu, _zero(y.dtype)), slices(n))
        ctx.save_for_backward(arg)
        ctx.size = (h, w)
        return job, z.permute(0, 3, 1, 2)  # channels-last (N, C, H//2, W//2)

    @staticmethod
    def backward_job(ctx, grad):
        (arg,) = ctx.saved_tensors
        n, _, _, c = arg.shape
        gy = torch.empty((n, *ctx.size, c), dtype=grad.dtype)
        job = Job(_kernels().pool_backward, (_bits(nhwc(grad)), arg.numpy(), _bits(gy)), (_zero(grad.dtype),),
                  slices(n))
        gx = gy.permute(0, 3, 1, 2)
        return job, gx, lambda: (gx, None)


class StemConvReluPool(JobFunction):
    """``max_pool2d(relu(conv2d(x, weight, bias, padding=pad)), 2)`` for one-channel images x;
    its passes are jobs (see ``_batches.JobFunction``)."""

    @staticmethod
    def forward_job(ctx, x, weight, bias, pad: int, relu: bool):
        n, _, h, w = x.shape
        cout = weight.shape[0]
        # The kernel pads the images and reads the parameters when it runs (views of them): a
        # planned chain (see _batches.Chain) runs again after the optimizer updated them in place.
        xp = torch.empty((n, h + 2 * pad, w + 2 * pad))
        oh, ow = (h + 2 * pad - 2) // 2, (w + 2 * pad - 2) // 2
        z = torch.empty((n, oh, ow, cout), dtype=x.dtype)
        arg = torch.empty((n, oh, ow, cout), dtype=torch.int8)
        parts = slices(n)
        job = Job(_kernels().stem_forward, (x.detach().reshape(n, h, w).numpy(), xp.numpy(), z.numpy(), arg.numpy()),
                  (weight.detach().contiguous().numpy().reshape(cout, 9), bias.detach().contiguous().numpy(), relu, pad),
                  parts, (np.empty((len(parts), 9, cout), np.float32),))
        ctx.save_for_backward(xp, arg)
        return job, z.permute(0, 3, 1, 2)

    @staticmethod
    def backward_job(ctx, grad):
        xp, arg = ctx.saved_tensors
        cout = arg.shape[3]
        gz = nhwc(grad)
        # Weight and bias gradients sum over the images: each slice of them accumulates its own.
        parts = slices(len(arg))
        dw = np.empty((len(parts), 9, cout), np.float32)
        db = np.empty((len(parts), cout), np.float32)
        job = Job(_kernels().stem_backward, (xp.numpy(), gz.numpy(), arg.numpy()), (), parts, (dw, db))

        def finish():
            gw = torch.from_numpy(np.ascontiguousarray(sum_slices(dw).T)).view(cout, 1, 3, 3)
            return None, gw, torch.from_numpy(sum_slices(db)), None, None

        return job, None, finish


def _bits(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as numpy: float32 as is, bfloat16 as int16 (numpy has no bfloat16)."""
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _zero(dtype: torch.dtype):
    return np.int16(0) if dtype == torch.bfloat16 else np.float32(0.0)


def plain_2x2(pool: nn.Module) -> bool:
    """Whether ``pool`` is the 2x2, stride-2, unpadded, floor-mode max-pool these kernels compute."""
    if not isinstance(pool, nn.MaxPool2d):
        return False
    pair = nn.modules.utils._pair
    return (pair(pool.kernel_size) == (2, 2) and pair(pool.stride or pool.kernel_size) == (2, 2)
            and pair(pool.padding) == (0, 0) and pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode and not pool.return_indices)


def _stem_conv(conv: nn.Module) -> bool:
    """A 3x3, stride-1, 'same' or 'valid' convolution of one input channel, with a bias."""
    return (isinstance(conv, nn.Conv2d) and conv.in_channels == 1 and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros" and conv.bias is not None)


def _hooked(modules) -> bool:
    """Whether any forward hook (the module's own, or a global one) would see these modules."""
    glob = nn.modules.module
    return bool(glob._global_forward_hooks or glob._global_forward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks for m in modules)


def _cpu_float(x: torch.Tensor, bfloat16: bool = False) -> bool:
    dtypes = (torch.float32, torch.bfloat16) if bfloat16 else (torch.float32,)
    return AVAILABLE and x.device.type == "cpu" and x.dtype in dtypes and x.dim() == 4


class Plan:
    """How ``Network.forward`` walks its modules: runs of them fused, the rest one by one.

    ``steps`` is a list of ``(start, stop, kind)`` over the module list; kind is None (one
    module), "relu-pool", "stem", "dropout", "winograd" (a 3x3 convolution, see ``_winograd``)
    or "block" (a module with ``forward_convs(x, conv)``, e.g. a residual block, whose
    convolutions ``_winograd.conv`` computes). A fused step checks at run time that its kernel
    applies (CPU, float32 or for the pool bfloat16, numba; for the stem, an input that needs no
    gradient; for dropout, training on the CPU; for Winograd, float32 outside autocast) and
    otherwise runs the same arithmetic as torch ops.
    """

    def __init__(self, modules: list[nn.Module]):
        steps, i = [], 0
        while i < len(modules):
            nxt = modules[i + 1:i + 3]
            if _stem_conv(modules[i]) and len(nxt) == 2 and isinstance(nxt[0], nn.ReLU) and plain_2x2(nxt[1]):
                steps.append((i, i + 3, "stem"))
                i += 3
            elif isinstance(modules[i], nn.ReLU) and nxt and plain_2x2(nxt[0]):
                steps.append((i, i + 2, "relu-pool"))
                i += 2
            elif isinstance(modules[i], nn.Dropout) and modules[i].p > 0 and not modules[i].inplace:
                steps.append((i, i + 1, "dropout"))
                i += 1
            elif _winograd.applies(modules[i]):
                steps.append((i, i + 1, "winograd"))
                i += 1
            elif hasattr(modules[i], "forward_convs") and any(map(_winograd.applies, modules[i].modules())):
                steps.append((i, i + 1, "block"))  # a block whose own 3x3 convolutions qualify
                i += 1
            else:
                steps.append((i, i + 1, None))
                i += 1
        self.steps = steps
        self.fuses = any(kind for _, _, kind in steps)

    # Inference on fewer images than this runs torch's modules: loading the kernels (numba and
    # its compile cache, about a second of CPU once per process) costs more than they save on
    # a few images, e.g. `fmnist predict RUN photo.jpg`. Training (autograd recording) and
    # scoring a dataset take the kernels.
    min_inference_batch: int = 256

    def pays(self, x: torch.Tensor) -> bool:
        """Whether this forward pass should take the fused kernels (see ``min_inference_batch``)."""
        return self.fuses and (torch.is_grad_enabled() or len(x) >= self.min_inference_batch)

    def run(self, modules: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for start, stop, kind in self.steps:
            # Hooks must see their modules run (a block's, its parts' too); dropout in eval mode is
            # the module's identity.
            watched = modules[start].modules() if kind == "block" else modules[start:stop]
            if not kind or _hooked(watched) or (kind == "dropout" and not modules[start].training):
                for i in range(start, stop):
                    x = modules[i](x)
            elif kind == "relu-pool":
                x = relu_max_pool2d(x)
            elif kind == "stem":
                x = stem_conv_relu_pool(x, modules[start])
            elif kind == "winograd":
                x = _winograd.conv3x3(x, modules[start])
            elif kind == "block":
                x = modules[start].forward_convs(x, _winograd.conv)
            else:
                x = dropout(x, modules[start].p)
        return x


def relu_max_pool2d(y: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """2x2 max-pool (stride 2, floor) of ``relu(y)``; torch ops where no kernel applies."""
    if _cpu_float(y, bfloat16=relu):
        return ReluMaxPool2d.apply(y, relu)
    z = F.max_pool2d(y, 2)
    return torch.relu(z) if relu else z


def stem_conv_relu_pool(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``max_pool2d(relu(conv(x)), 2)``, compiled for one-channel CPU images that need no gradient."""
    if _stem_conv(conv) and _cpu_float(x) and not x.requires_grad:
        return StemConvReluPool.apply(x, conv.weight, conv.bias, conv.padding[0], True)
    return relu_max_pool2d(conv(x))


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout: each value zeroed with probability ``p``, the rest scaled by 1/(1-p).

    torch's CPU dropout draws its Bernoulli mask at ~10 ns a value: measured, 3.3 ms for a batch
    of 256 at cnn-best's 1152-wide dropout, and 6% of its training step for both. numpy's PCG64
    draws the mask as 16-bit integers, ~1 ns a value; ``p`` is rounded to a multiple of 1/65536.
    Each call seeds it from torch's generator, so ``torch.manual_seed`` and a checkpoint's RNG
    state reproduce the masks, as they do torch's. On other devices: torch's.
    """
    if x.device.type != "cpu" or not 0 < p < 1:
        return F.dropout(x, p, training=True)
    return x * dropout_mask(x.shape, p, x.dtype)


def dropout_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """The CPU mask ``dropout`` multiplies by: 0 or 1/(1-p), drawn as ``dropout`` describes."""
    mask = np.empty(shape, np.float32)
    fill_dropout_mask(mask, p)
    return torch.from_numpy(mask).to(dtype)


def fill_dropout_mask(mask: np.ndarray, p: float) -> None:
    """Write a float32 dropout mask into ``mask`` (C-contiguous): 0 or 1/(1-p), the values of
    ``dropout``'s numpy draw from a seed taken from torch's generator.

    With numba the draw is ``_fused_kernels.dropout_mask``, numpy's SeedSequence, PCG64 and
    16-bit integers written out as one compiled loop: the same values, without numpy's set-up
    of a generator per call, which took ~0.2 ms of each of cnn-book's training steps.
    """
    seed = int(torch.randint(0, 2**62, ()))
    threshold, scale = round(p * 65536), np.float32(1 / (1 - p))
    if AVAILABLE:
        _kernels().dropout_mask(seed, threshold, scale, mask.reshape(-1))
        return
    noise = np.random.Generator(np.random.PCG64(seed)).integers(-32768, 32768, mask.shape, dtype=np.int16)
    # numpy, not torch, turns it into floats: torch's conversion of a (32, 100) mask woke its
    # second thread and took ~0.17 ms, a few microseconds here (the same float32 values).
    np.multiply(noise >= threshold - 32768, scale, out=mask)
