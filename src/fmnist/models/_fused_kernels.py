"""The numba kernels of :mod:`fmnist.models._fused`, in a module of their own.

Imported on the first fused call, not with the network: numba, llvmlite and the scipy parts
numba pulls in take about half a second of CPU to import, which a model that never runs a
fused layer (an MLP, or any model off the CPU) should not pay. What each kernel computes,
and why, is in ``_fused``'s docstring.
"""

import numpy as np

from fmnist._numba import jit


@jit
def pool_forward(y, z, arg, relu, zero):  # pragma: no cover - compiled
    """y (N, H, W, C) -> z (N, H//2, W//2, C) and the winners arg (0..3, or -1: ReLU zeroed it).

    ``zero`` is 0 in the arrays' dtype: float32, or int16 for bfloat16 maps seen as their bits,
    which order as the floats do only once the ReLU zeroes the negatives (see ``_fused.ReluMaxPool2d``).
    """
    n_img, oh, ow, c = z.shape
    for n in range(n_img):
        for oy in range(oh):
            for ox in range(ow):
                r = 2 * oy
                q = 2 * ox
                # Two loops of few streams each: LLVM vectorises both over the channels.
                for ch in range(c):
                    z[n, oy, ox, ch] = max(max(y[n, r, q, ch], y[n, r, q + 1, ch]),
                                           max(y[n, r + 1, q, ch], y[n, r + 1, q + 1, ch]))
                for ch in range(c):
                    top = z[n, oy, ox, ch]
                    k = 0 if y[n, r, q, ch] == top else (
                        1 if y[n, r, q + 1, ch] == top else (2 if y[n, r + 1, q, ch] == top else 3))
                    arg[n, oy, ox, ch] = -1 if relu and not top > zero else k
                if relu:
                    for ch in range(c):
                        z[n, oy, ox, ch] = max(z[n, oy, ox, ch], zero)


@jit
def pool_backward(gz, arg, gy, zero):  # pragma: no cover - compiled
    """gz (N, H//2, W//2, C) and the winners -> gy (N, H, W, C): zeros except at the winners."""
    n_img, oh, ow, c = gz.shape
    h, w = gy.shape[1], gy.shape[2]
    for n in range(n_img):
        for oy in range(oh):
            for ox in range(ow):
                for a in range(2):
                    for b in range(2):
                        k = 2 * a + b
                        for ch in range(c):
                            gy[n, 2 * oy + a, 2 * ox + b, ch] = gz[n, oy, ox, ch] if arg[n, oy, ox, ch] == k else zero
        # Odd sizes: the last row / column belongs to no window (floor, as torch pools).
        if h % 2:
            gy[n, h - 1] = zero
        if w % 2:
            gy[n, :, w - 1] = zero


@jit
def stem_forward(x, xp, z, arg, weight, b, relu, pad, w):  # pragma: no cover - compiled
    """Images x (N, H, W) -> pooled z and winners arg (N, OH, OW, C), through xp (N, Hp, Wp), the
    images padded (kept for the backward pass); weight (C, 9) -> w (9, C), this slice's taps."""
    n_img, oh, ow, c = z.shape
    zero = np.float32(0.0)
    for t in range(9):
        for ch in range(c):
            w[t, ch] = weight[ch, t]
    h = x.shape[1]
    xp[:] = zero
    for n in range(n_img):
        for r in range(h):
            xp[n, pad + r, pad:pad + x.shape[2]] = x[n, r]
    for n in range(n_img):
        for oy in range(oh):
            for ox in range(ow):
                r = 2 * oy
                q = 2 * ox
                # The 4x4 patch under one pooling window: 16 scalars, broadcast in the loop.
                p00 = xp[n, r, q]
                p01 = xp[n, r, q + 1]
                p02 = xp[n, r, q + 2]
                p03 = xp[n, r, q + 3]
                p10 = xp[n, r + 1, q]
                p11 = xp[n, r + 1, q + 1]
                p12 = xp[n, r + 1, q + 2]
                p13 = xp[n, r + 1, q + 3]
                p20 = xp[n, r + 2, q]
                p21 = xp[n, r + 2, q + 1]
                p22 = xp[n, r + 2, q + 2]
                p23 = xp[n, r + 2, q + 3]
                p30 = xp[n, r + 3, q]
                p31 = xp[n, r + 3, q + 1]
                p32 = xp[n, r + 3, q + 2]
                p33 = xp[n, r + 3, q + 3]
                for ch in range(c):
                    w0 = w[0, ch]
                    w1 = w[1, ch]
                    w2 = w[2, ch]
                    w3 = w[3, ch]
                    w4 = w[4, ch]
                    w5 = w[5, ch]
                    w6 = w[6, ch]
                    w7 = w[7, ch]
                    w8 = w[8, ch]
                    y00 = (p00 * w0 + p01 * w1 + p02 * w2) + (p10 * w3 + p11 * w4 + p12 * w5) \
                        + (p20 * w6 + p21 * w7 + p22 * w8)
                    y01 = (p01 * w0 + p02 * w1 + p03 * w2) + (p11 * w3 + p12 * w4 + p13 * w5) \
                        + (p21 * w6 + p22 * w7 + p23 * w8)
                    y10 = (p10 * w0 + p11 * w1 + p12 * w2) + (p20 * w3 + p21 * w4 + p22 * w5) \
                        + (p30 * w6 + p31 * w7 + p32 * w8)
                    y11 = (p11 * w0 + p12 * w1 + p13 * w2) + (p21 * w3 + p22 * w4 + p23 * w5) \
                        + (p31 * w6 + p32 * w7 + p33 * w8)
                    top = max(max(y00, y01), max(y10, y11))
                    best = top + b[ch]
                    z[n, oy, ox, ch] = max(best, zero) if relu else best
                    k = 0 if y00 == top else (1 if y01 == top else (2 if y10 == top else 3))
                    arg[n, oy, ox, ch] = -1 if relu and not best > zero else k


@jit
def stem_backward(xp, gz, arg, dw, db):  # pragma: no cover - compiled
    """Pooled gradient gz and winners (N, OH, OW, C) -> dw (9, C) and db (C,): these images' share."""
    n_img, oh, ow, c = gz.shape
    zero = np.float32(0.0)
    dw[:] = zero
    db[:] = zero
    # The window's gradient split by winner: g[k, ch] is gz where position k won, else 0. Each
    # tap's update is then four products with the patch's scalars, no per-channel select
    # chain, and it equals the selected product exactly (the other three are exact zeros).
    g = np.empty((4, c), np.float32)
    for n in range(n_img):
        for oy in range(oh):
            for ox in range(ow):
                r = 2 * oy
                q = 2 * ox
                for ch in range(c):
                    k = arg[n, oy, ox, ch]
                    v = gz[n, oy, ox, ch]
                    g[0, ch] = v if k == 0 else zero
                    g[1, ch] = v if k == 1 else zero
                    g[2, ch] = v if k == 2 else zero
                    g[3, ch] = v if k == 3 else zero
                for ch in range(c):
                    db[ch] += (g[0, ch] + g[1, ch]) + (g[2, ch] + g[3, ch])
                for t in range(9):  # one loop per tap: one store stream each, so each vectorises
                    kh = t // 3
                    kw = t - 3 * kh
                    x0 = xp[n, r + kh, q + kw]
                    x1 = xp[n, r + kh, q + kw + 1]
                    x2 = xp[n, r + kh + 1, q + kw]
                    x3 = xp[n, r + kh + 1, q + kw + 1]
                    for ch in range(c):
                        dw[t, ch] += (g[0, ch] * x0 + g[1, ch] * x1) + (g[2, ch] * x2 + g[3, ch] * x3)


@jit
def relu_forward(y, z):  # pragma: no cover - compiled
    """z = relu(y) on (N, ...) maps, as torch's relu (NaN stays NaN)."""
    src = y.reshape(y.shape[0], -1)
    dst = z.reshape(z.shape[0], -1)
    zero = np.float32(0.0)
    for n in range(src.shape[0]):
        for q in range(src.shape[1]):
            v = src[n, q]
            dst[n, q] = zero if v < zero else v


@jit
def relu_backward(gz, z, gy):  # pragma: no cover - compiled
    """gy = gz where relu's output z is positive, else 0 (torch's threshold_backward)."""
    g = gz.reshape(gz.shape[0], -1)
    out = z.reshape(z.shape[0], -1)
    dst = gy.reshape(gy.shape[0], -1)
    zero = np.float32(0.0)
    for n in range(g.shape[0]):
        for q in range(g.shape[1]):
            dst[n, q] = g[n, q] if out[n, q] > zero else zero


# numpy's SeedSequence and PCG64, for ``dropout_mask``: the arithmetic is 32-bit (the seed
# sequence) and 128-bit (PCG64's state) modulo their size, done in uint64 throughout. Every
# constant is a uint64: a Python integer would make numba mix int64 into uint64 arithmetic,
# which it does in float64.
_U32 = np.uint64(0xFFFFFFFF)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_S58 = np.uint64(58)
_ONE = np.uint64(1)
_S63 = np.uint64(63)
_INIT_A = np.uint64(0x43B0D7E5)
_MULT_A = np.uint64(0x931E8875)
_INIT_B = np.uint64(0x8B51F9DD)
_MULT_B = np.uint64(0x58F38DED)
_MIX_L = np.uint64(0xCA01F9DD)
_MIX_R = np.uint64(0x4973F715)
_PCG_HI = np.uint64(2549297995355413924)  # PCG's default 128-bit multiplier
_PCG_LO = np.uint64(4865540595714422341)


@jit
def _mulhi(a, b):  # pragma: no cover - compiled
    """The high 64 bits of the 128-bit product a * b."""
    a0, a1, b0, b1 = a & _U32, a >> _S32, b & _U32, b >> _S32
    p01, p10 = a0 * b1, a1 * b0
    mid = ((a0 * b0) >> _S32) + (p01 & _U32) + (p10 & _U32)
    return a1 * b1 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)


@jit
def _pcg_step(hi, lo, inc_hi, inc_lo):  # pragma: no cover - compiled
    """PCG64's state transition, state * multiplier + inc (mod 2**128), on (high, low) halves."""
    new_hi = _mulhi(lo, _PCG_LO) + lo * _PCG_HI + hi * _PCG_LO
    new_lo = lo * _PCG_LO
    out_lo = new_lo + inc_lo
    return new_hi + inc_hi + (_ONE if out_lo < new_lo else np.uint64(0)), out_lo


@jit
def _hashmix(value, h, mult):  # pragma: no cover - compiled
    """SeedSequence's hashmix of the 32-bit ``value`` with the running hash constant ``h``: the
    mixed value, and the constant that follows (``h * mult``)."""
    value ^= h
    h = (h * mult) & _U32
    value = (value * h) & _U32
    return value ^ (value >> _S16), h


@jit
def _pcg64_from_seed(seed):  # pragma: no cover - compiled
    """The state (hi, lo) and increment (hi, lo) of ``numpy.random.PCG64(seed)``, 0 <= seed < 2**64:
    SeedSequence's entropy pool of four words mixed from the seed's 32-bit words (a seed below
    2**32 has one; the pool pads with zeros, so two words of which the second is 0 mix the
    same), then four 64-bit words drawn from it, and PCG's seeding."""
    pool = np.zeros(4, np.uint64)  # the seed's 32-bit words, low first, then zeros
    pool[0] = seed & _U32
    pool[1] = seed >> _S32
    h = _INIT_A
    for i in range(4):  # SeedSequence.mix_entropy
        pool[i], h = _hashmix(pool[i], h, _MULT_A)
    for src in range(4):
        for dst in range(4):
            if src != dst:
                v, h = _hashmix(pool[src], h, _MULT_A)
                r = (_MIX_L * pool[dst] - _MIX_R * v) & _U32
                pool[dst] = r ^ (r >> _S16)
    state = np.zeros(8, np.uint64)
    h = _INIT_B
    for i in range(8):  # SeedSequence.generate_state(4, uint64): eight 32-bit words, low word first
        state[i], h = _hashmix(pool[i % 4], h, _MULT_B)
    seed_hi, seed_lo = state[0] | (state[1] << _S32), state[2] | (state[3] << _S32)
    inc_hi = ((state[4] | (state[5] << _S32)) << _ONE) | ((state[6] | (state[7] << _S32)) >> _S63)
    inc_lo = ((state[6] | (state[7] << _S32)) << _ONE) | _ONE
    hi, lo = _pcg_step(np.uint64(0), np.uint64(0), inc_hi, inc_lo)  # pcg_setseq_128_srandom_r
    lo2 = lo + seed_lo
    hi = hi + seed_hi + (_ONE if lo2 < lo else np.uint64(0))
    hi, lo = _pcg_step(hi, lo2, inc_hi, inc_lo)
    return hi, lo, inc_hi, inc_lo


@jit
def dropout_mask(seed, threshold, scale, out):  # pragma: no cover - compiled
    """out (flat, float32) = ``scale`` where a 16-bit draw is >= ``threshold``, else 0: the draws
    of ``Generator(PCG64(seed)).integers(-32768, 32768, out.size, int16)`` plus 32768, value for
    value (each 64-bit output gives four, low bits first)."""
    hi, lo, inc_hi, inc_lo = _pcg64_from_seed(np.uint64(seed))
    limit = np.uint64(threshold)
    zero = np.float32(0.0)
    word = np.uint64(0)
    for i in range(out.shape[0]):
        k = i & 3
        if k == 0:
            hi, lo = _pcg_step(hi, lo, inc_hi, inc_lo)
            x = hi ^ lo
            rot = hi >> _S58
            word = (x >> rot) | (x << ((np.uint64(64) - rot) & _S63))
        draw = (word >> np.uint64(16 * k)) & np.uint64(0xFFFF)
        out[i] = scale if draw >= limit else zero
