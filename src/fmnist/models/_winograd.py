"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3): a quarter of the multiplications.

Why: a CNN's training step on the CPU is mostly its 3x3 convolutions, and oneDNN already runs
them near the cores' sgemm rate, so only less arithmetic is faster. Lavin & Gray (2016)
compute each 4x4 block of outputs from a 6x6 input patch with 36 multiplications per channel
pair instead of 144:

    Y = A^T [(G g G^T) * (B^T d B)] A        (g the 3x3 filter, d the patch, * elementwise)

Summed over input channels, the 36 elementwise products are 36 matrix products,
(tiles x C) @ (C x K). The backward pass is the same machinery's adjoint: the output
gradient's tiles A g A^T give the filters' gradient as 36 products with the input tiles, and the
input's gradient as 36 products with the transformed filters, whose tiles B dv B^T are summed
back into the overlapping patches.

Measured on 2 Zen 4 cores, float32, paired rounds in one process: cnn-book's training step
(batch 32) 0.97 ms faster (15 of 16 rounds), cnn-best's (batch 256) 15 ms faster (8 of 8), about
8% and 18% of the step.

How: each thread takes a slice of the batch and walks it a few images at a time, so that the
tiles, the products (MKL's sgemm, on that thread alone) and the transforms back stay in cache;
the transforms are numba loops (:mod:`._winograd_kernels`).

Accuracy: the transforms' coefficients (up to 8 in A, 5 in B) cost a few bits. Against a
float64 convolution, outputs and gradients are off by up to ~6e-6 of their largest magnitude
(cnn-book's 32->64 layer, batch 40), where oneDNN's float32 convolution is off by ~4e-7: far
below a training step's noise, but not torch's numbers to the bit, so the tests allow for it.

Only float32 on the CPU takes this path (numba and MKL needed). Under autocast, bfloat16
convolutions run oneDNN's bfloat16 dot products (1.5-3x faster than float32 already), and
bfloat16 has too few bits for the transforms.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from fmnist._numba import AVAILABLE
from fmnist.models import _batches

# G (6x3), the filter transform of F(4x4, 3x3); B and A are written out in the kernels.
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))

# Tiles a thread transforms, multiplies and transforms back at a time (whole images): 64 tiles
# of 32 channels in and 64 out keep ~0.9 MB of tiles, about one core's L2 cache.
group_tiles: int = 64


@functools.cache
def _kernels():
    from fmnist.models import _winograd_kernels

    return _winograd_kernels


@functools.cache
def _blas():
    """fmnist._blas, imported on first use: it loads numba, which a model that never trains or
    scores a batch on the CPU should not pay for (see ``_fused``)."""
    from fmnist import _blas

    return _blas


@functools.cache
def _filter_transform(adjoint: bool = False) -> np.ndarray:
    """kron(G, G), (36, 9): row 6a+b maps a flattened 3x3 filter to its transformed value (a, b);
    with ``adjoint``, its transpose (9, 36)."""
    g = torch.tensor(_G, dtype=torch.float64)
    gg = torch.kron(g, g)
    return (gg.t() if adjoint else gg).float().contiguous().numpy()


def _size(size: int, pad: int) -> tuple[int, int]:
    """A 3x3 convolution's output size along one axis (padding 0 or 1), and its tiles of 4."""
    out = size + 2 * pad - 2
    return out, (out + 3) // 4


def _scratch(slices: int, group: int, tiles: int, width: int) -> np.ndarray:
    return np.empty((slices, 36, group * tiles, width), np.float32)


class Winograd3x3(_batches.JobFunction):
    """``conv2d(x, weight, bias, padding=pad)``: 3x3 filters, stride 1, padding 0 or 1, float32 CPU.

    Its passes are jobs (see ``_batches.JobFunction``).
    """

    @staticmethod
    def forward_job(ctx, x, weight, bias, pad: int):
        n, c, h, w = x.shape
        k = weight.shape[0]
        (oh, th), (ow, tw) = _size(h, pad), _size(w, pad)
        group = max(1, group_tiles // (th * tw))
        xn = _batches.nhwc(x.detach())
        y = torch.empty((n, oh, ow, k))
        # Views of the parameters, read when the job runs: a planned chain (see _batches.Chain)
        # runs again after the optimizer has updated them in place.
        w = weight.detach().contiguous().numpy().reshape(k, c, 9)
        b = (bias.detach() if bias is not None else torch.zeros(k)).contiguous()
        parts = _batches.slices(n)
        u = np.empty((len(parts), 36, c, k), np.float32)  # each slice's filter transforms
        scratch = (u, _scratch(len(parts), group, th * tw, c), _scratch(len(parts), group, th * tw, k),
                   *_blas().mm_scratch(len(parts)))
        job = _batches.Job(_kernels().forward_images, (xn.numpy(), y.numpy()),
                           (w, _filter_transform(), b.numpy(), pad, th, tw, group), parts, scratch, blas=True)
        ctx.save_for_backward(xn)
        ctx.u = u
        ctx.geometry = (pad, th, tw, group)
        ctx.has_bias = bias is not None
        return job, y.permute(0, 3, 1, 2)  # channels-last (N, K, OH, OW)

    @staticmethod
    def backward_job(ctx, grad):
        (xn,) = ctx.saved_tensors
        u = ctx.u
        pad, th, tw, group = ctx.geometry
        n, h, w, c = xn.shape
        k = u.shape[3]
        input_grad = ctx.needs_input_grad[0]
        gy = _batches.nhwc(grad)
        gx = torch.empty((n, h, w, c) if input_grad else (n, 1, 1, 1))
        parts = _batches.slices(n)
        du = np.empty((len(parts), 36, c, k), np.float32)
        db = np.empty((len(parts), k), np.float32)
        scratch = (u, _scratch(len(parts), group, th * tw, c), _scratch(len(parts), group, th * tw, k),
                   _scratch(len(parts), group, th * tw, c), *_blas().mm_scratch(len(parts)))
        job = _batches.Job(_kernels().backward_images, (xn.numpy(), gy.numpy(), gx.numpy()),
                           (pad, th, tw, group, input_grad), parts, (*scratch, du, db), blas=True)
        gx = gx.permute(0, 3, 1, 2) if input_grad else None

        def finish():
            gw = torch.empty((k, c, 3, 3))
            _kernels().taps_gradient(_filter_transform(adjoint=True), du, gw.numpy().reshape(k, c, 9))
            gb = torch.from_numpy(_batches.sum_slices(db)) if ctx.has_bias else None
            return gx, gw, gb, None

        return job, gx, finish


# Fewer channels than this, in or out, and oneDNN's direct convolution is faster: the
# transforms cost the same per channel, and the products they save are few. Measured on 2 Zen 4
# cores, forward and backward, against oneDNN (medians of 16 rounds, taking turns): 16->16 at
# 28x28 0.75x its speed, 16->32 at 14x14 0.90x; 32->32 at 28x28 1.24x, 32->64 at 14x14 1.19x
# (batch 32) and 1.24x (batch 256), 64->128 at 7x7 (batch 256) 1.45x.
min_channels: int = 32


def applies(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution this path computes: 3x3, stride 1, 'same' or 'valid'
    zero padding, no groups or dilation, at least ``min_channels`` in and out."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= min_channels)


def conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)``: by Winograd for float32 CPU maps outside autocast (with numba and MKL), by
    the module elsewhere."""
    if (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and conv.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and usable()):
        return Winograd3x3.apply(x, conv.weight, conv.bias, conv.padding[0])
    return conv(x)


def usable() -> bool:
    """Whether this process can run the kernels: numba, and MKL's per-thread thread count."""
    return AVAILABLE and _blas().ONE_THREAD


def conv(x: torch.Tensor, module: nn.Conv2d) -> torch.Tensor:
    """``module(x)``, by Winograd where the convolution ``applies`` (and ``conv3x3`` can)."""
    return conv3x3(x, module) if applies(module) else module(x)
