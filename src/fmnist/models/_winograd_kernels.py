"""The numba kernels of :mod:`fmnist.models._winograd`: F(4x4, 3x3) convolution, forward and backward.

Maps are channels-last (NHWC). A group of images' transformed tiles are 36 matrices of
(tiles, channels), one per point of the 6x6 transform, in the layout sgemm reads; the
drivers (``forward_images``, ``backward_images``) take a few images at a time so that these
stay in the core's cache between the transform, the 36 products and the transform back.

Coefficients are float32 constants: with Python integers numba widens the arithmetic to
float64, which halves the vector width, and the transforms took twice as long.
"""

import numpy as np

from fmnist._blas import mm
from fmnist._numba import jit

_2 = np.float32(2.0)
_4 = np.float32(4.0)
_5 = np.float32(5.0)
_8 = np.float32(8.0)


# Every innermost loop below runs over the channels (contiguous in NHWC and in the tiles) and
# writes ONE array: with several stores LLVM must check each pair of streams for overlap at run
# time, gives up past a few, and leaves the loop scalar. Measured on the input transform (32
# images, 32 channels, 14x14): six stores per loop 0.55 ms, one store per loop 0.16 ms.


@jit
def input_tiles(x, v, pad, th, tw):  # pragma: no cover - compiled
    """x (n, H, W, C) -> v[:, :n*th*tw] (36, tiles, C): B^T d B for each 6x6 patch d at stride 4,
    starting ``pad`` pixels above and left of the image; pixels outside it are zero."""
    n_img, h, w, c = x.shape
    wc = w * c
    rows = x.reshape(n_img * h, wc)
    zero = np.zeros(wc, np.float32)
    # B^T applied down the columns of one band of six image rows, all tiles of the band at
    # once; the columns left and right of the image stay zero.
    t = np.zeros((6, (4 * tw + 2) * c), np.float32)
    cols = t.reshape(6, 4 * tw + 2, c)
    first = pad * c
    for n in range(n_img):
        for ty in range(th):
            top = 4 * ty - pad
            d0 = rows[n * h + top] if 0 <= top < h else zero
            d1 = rows[n * h + top + 1] if 0 <= top + 1 < h else zero
            d2 = rows[n * h + top + 2] if 0 <= top + 2 < h else zero
            d3 = rows[n * h + top + 3] if 0 <= top + 3 < h else zero
            d4 = rows[n * h + top + 4] if 0 <= top + 4 < h else zero
            d5 = rows[n * h + top + 5] if 0 <= top + 5 < h else zero
            o = t[0, first:first + wc]
            for q in range(wc):
                o[q] = _4 * d0[q] - _5 * d2[q] + d4[q]
            o = t[1, first:first + wc]
            for q in range(wc):
                o[q] = d3[q] + d4[q] - _4 * (d1[q] + d2[q])
            o = t[2, first:first + wc]
            for q in range(wc):
                o[q] = _4 * (d1[q] - d2[q]) - d3[q] + d4[q]
            o = t[3, first:first + wc]
            for q in range(wc):
                o[q] = _2 * (d3[q] - d1[q]) - d2[q] + d4[q]
            o = t[4, first:first + wc]
            for q in range(wc):
                o[q] = _2 * (d1[q] - d3[q]) - d2[q] + d4[q]
            o = t[5, first:first + wc]
            for q in range(wc):
                o[q] = _4 * d1[q] - _5 * d3[q] + d5[q]
            # ... then B along each tile's six columns.
            for tx in range(tw):
                p = (n * th + ty) * tw + tx
                for i in range(6):
                    a0 = cols[i, 4 * tx]
                    a1 = cols[i, 4 * tx + 1]
                    a2 = cols[i, 4 * tx + 2]
                    a3 = cols[i, 4 * tx + 3]
                    a4 = cols[i, 4 * tx + 4]
                    a5 = cols[i, 4 * tx + 5]
                    o = v[6 * i, p]
                    for ch in range(c):
                        o[ch] = _4 * a0[ch] - _5 * a2[ch] + a4[ch]
                    o = v[6 * i + 1, p]
                    for ch in range(c):
                        o[ch] = a3[ch] + a4[ch] - _4 * (a1[ch] + a2[ch])
                    o = v[6 * i + 2, p]
                    for ch in range(c):
                        o[ch] = _4 * (a1[ch] - a2[ch]) - a3[ch] + a4[ch]
                    o = v[6 * i + 3, p]
                    for ch in range(c):
                        o[ch] = _2 * (a3[ch] - a1[ch]) - a2[ch] + a4[ch]
                    o = v[6 * i + 4, p]
                    for ch in range(c):
                        o[ch] = _2 * (a1[ch] - a3[ch]) - a2[ch] + a4[ch]
                    o = v[6 * i + 5, p]
                    for ch in range(c):
                        o[ch] = _4 * a1[ch] - _5 * a3[ch] + a5[ch]


@jit
def output_tiles(m, b, y, th, tw):  # pragma: no cover - compiled
    """m (36, tiles, K) -> y (n, OH, OW, K): A^T m A plus the bias b for each tile's 4x4
    outputs (those past the map's edge dropped)."""
    n_img, oh, ow, k = y.shape
    t = np.empty((4, 6, k), np.float32)
    for n in range(n_img):
        for ty in range(th):
            for tx in range(tw):
                p = (n * th + ty) * tw + tx
                for s in range(6):
                    m0 = m[s, p]
                    m1 = m[6 + s, p]
                    m2 = m[12 + s, p]
                    m3 = m[18 + s, p]
                    m4 = m[24 + s, p]
                    m5 = m[30 + s, p]
                    o = t[0, s]
                    for ch in range(k):
                        o[ch] = m0[ch] + m1[ch] + m2[ch] + m3[ch] + m4[ch]
                    o = t[1, s]
                    for ch in range(k):
                        o[ch] = m1[ch] - m2[ch] + _2 * (m3[ch] - m4[ch])
                    o = t[2, s]
                    for ch in range(k):
                        o[ch] = m1[ch] + m2[ch] + _4 * (m3[ch] + m4[ch])
                    o = t[3, s]
                    for ch in range(k):
                        o[ch] = m1[ch] - m2[ch] + _8 * (m3[ch] - m4[ch]) + m5[ch]
                for i in range(min(4, oh - 4 * ty)):
                    t0 = t[i, 0]
                    t1 = t[i, 1]
                    t2 = t[i, 2]
                    t3 = t[i, 3]
                    t4 = t[i, 4]
                    t5 = t[i, 5]
                    row = y[n, 4 * ty + i]
                    for j in range(min(4, ow - 4 * tx)):
                        o = row[4 * tx + j]
                        if j == 0:
                            for ch in range(k):
                                o[ch] = t0[ch] + t1[ch] + t2[ch] + t3[ch] + t4[ch] + b[ch]
                        elif j == 1:
                            for ch in range(k):
                                o[ch] = t1[ch] - t2[ch] + _2 * (t3[ch] - t4[ch]) + b[ch]
                        elif j == 2:
                            for ch in range(k):
                                o[ch] = t1[ch] + t2[ch] + _4 * (t3[ch] + t4[ch]) + b[ch]
                        else:
                            for ch in range(k):
                                o[ch] = t1[ch] - t2[ch] + _8 * (t3[ch] - t4[ch]) + t5[ch] + b[ch]


@jit
def output_grad_tiles(gy, dm, db, th, tw):  # pragma: no cover - compiled
    """gy (n, OH, OW, K) -> dm (36, tiles, K) = A g A^T for each tile's 4x4 gradient g (zero
    past the map's edge), the adjoint of ``output_tiles``; adds the gradient's sum to db (K,)."""
    n_img, oh, ow, k = gy.shape
    zero = np.zeros(k, np.float32)
    t = np.empty((6, 4, k), np.float32)
    for n in range(n_img):
        for yy in range(oh):
            for xx in range(ow):
                g = gy[n, yy, xx]
                for ch in range(k):
                    db[ch] += g[ch]
        for ty in range(th):
            for tx in range(tw):
                p = (n * th + ty) * tw + tx
                for j in range(4):
                    xx = 4 * tx + j
                    inside = xx < ow
                    g0 = gy[n, 4 * ty, xx] if inside and 4 * ty < oh else zero
                    g1 = gy[n, 4 * ty + 1, xx] if inside and 4 * ty + 1 < oh else zero
                    g2 = gy[n, 4 * ty + 2, xx] if inside and 4 * ty + 2 < oh else zero
                    g3 = gy[n, 4 * ty + 3, xx] if inside and 4 * ty + 3 < oh else zero
                    o = t[0, j]
                    for ch in range(k):
                        o[ch] = g0[ch]
                    o = t[1, j]
                    for ch in range(k):
                        o[ch] = g0[ch] + g1[ch] + g2[ch] + g3[ch]
                    o = t[2, j]
                    for ch in range(k):
                        o[ch] = g0[ch] - g1[ch] + g2[ch] - g3[ch]
                    o = t[3, j]
                    for ch in range(k):
                        o[ch] = g0[ch] + _2 * g1[ch] + _4 * g2[ch] + _8 * g3[ch]
                    o = t[4, j]
                    for ch in range(k):
                        o[ch] = g0[ch] - _2 * g1[ch] + _4 * g2[ch] - _8 * g3[ch]
                    o = t[5, j]
                    for ch in range(k):
                        o[ch] = g3[ch]
                for r in range(6):
                    g0 = t[r, 0]
                    g1 = t[r, 1]
                    g2 = t[r, 2]
                    g3 = t[r, 3]
                    o = dm[6 * r, p]
                    for ch in range(k):
                        o[ch] = g0[ch]
                    o = dm[6 * r + 1, p]
                    for ch in range(k):
                        o[ch] = g0[ch] + g1[ch] + g2[ch] + g3[ch]
                    o = dm[6 * r + 2, p]
                    for ch in range(k):
                        o[ch] = g0[ch] - g1[ch] + g2[ch] - g3[ch]
                    o = dm[6 * r + 3, p]
                    for ch in range(k):
                        o[ch] = g0[ch] + _2 * g1[ch] + _4 * g2[ch] + _8 * g3[ch]
                    o = dm[6 * r + 4, p]
                    for ch in range(k):
                        o[ch] = g0[ch] - _2 * g1[ch] + _4 * g2[ch] - _8 * g3[ch]
                    o = dm[6 * r + 5, p]
                    for ch in range(k):
                        o[ch] = g3[ch]


@jit
def input_grad_tiles(dv, gx, pad, th, tw):  # pragma: no cover - compiled
    """dv (36, tiles, C) -> gx (n, H, W, C): B dv B^T of each tile, summed into the 6x6 patch it
    came from (neighbouring patches overlap by two pixels), the adjoint of ``input_tiles``."""
    n_img, h, w, c = gx.shape
    t = np.empty((6, 6, c), np.float32)
    for n in range(n_img):
        gx[n] = 0.0
        for ty in range(th):
            for tx in range(tw):
                p = (n * th + ty) * tw + tx
                for s in range(6):
                    v0 = dv[s, p]
                    v1 = dv[6 + s, p]
                    v2 = dv[12 + s, p]
                    v3 = dv[18 + s, p]
                    v4 = dv[24 + s, p]
                    v5 = dv[30 + s, p]
                    o = t[0, s]
                    for ch in range(c):
                        o[ch] = _4 * v0[ch]
                    o = t[1, s]
                    for ch in range(c):
                        o[ch] = _4 * (v2[ch] - v1[ch] + v5[ch]) + _2 * (v4[ch] - v3[ch])
                    o = t[2, s]
                    for ch in range(c):
                        o[ch] = -_5 * v0[ch] - _4 * (v1[ch] + v2[ch]) - v3[ch] - v4[ch]
                    o = t[3, s]
                    for ch in range(c):
                        o[ch] = v1[ch] - v2[ch] + _2 * (v3[ch] - v4[ch]) - _5 * v5[ch]
                    o = t[4, s]
                    for ch in range(c):
                        o[ch] = v0[ch] + v1[ch] + v2[ch] + v3[ch] + v4[ch]
                    o = t[5, s]
                    for ch in range(c):
                        o[ch] = v5[ch]
                for r in range(6):
                    yy = 4 * ty + r - pad
                    if yy < 0 or yy >= h:
                        continue
                    t0 = t[r, 0]
                    t1 = t[r, 1]
                    t2 = t[r, 2]
                    t3 = t[r, 3]
                    t4 = t[r, 4]
                    t5 = t[r, 5]
                    for s in range(6):
                        xx = 4 * tx + s - pad
                        if xx < 0 or xx >= w:
                            continue
                        o = gx[n, yy, xx]
                        if s == 0:
                            for ch in range(c):
                                o[ch] += _4 * t0[ch]
                        elif s == 1:
                            for ch in range(c):
                                o[ch] += _4 * (t2[ch] - t1[ch] + t5[ch]) + _2 * (t4[ch] - t3[ch])
                        elif s == 2:
                            for ch in range(c):
                                o[ch] += -_5 * t0[ch] - _4 * (t1[ch] + t2[ch]) - t3[ch] - t4[ch]
                        elif s == 3:
                            for ch in range(c):
                                o[ch] += t1[ch] - t2[ch] + _2 * (t3[ch] - t4[ch]) - _5 * t5[ch]
                        elif s == 4:
                            for ch in range(c):
                                o[ch] += t0[ch] + t1[ch] + t2[ch] + t3[ch] + t4[ch]
                        else:
                            for ch in range(c):
                                o[ch] += t5[ch]


@jit
def filter_tiles(coef, w, out):  # pragma: no cover - compiled
    """The filters' transform G g G^T: out (36, C, K) from the filters w (K, C, 9) in torch's
    layout, out[j, c, k] = sum_t coef[j, t] * w[k, c, t] (coef = kron(G, G), (36, 9))."""
    k, c, _ = w.shape
    taps = np.empty((9, c * k), np.float32)
    for ko in range(k):
        for ci in range(c):
            for t in range(9):
                taps[t, ci * k + ko] = w[ko, ci, t]
    flat = out.reshape(36, c * k)
    for j in range(36):
        row = flat[j]
        row[:] = 0.0
        for t in range(9):
            weight = coef[j, t]
            if weight != 0.0:
                for q in range(c * k):
                    row[q] += weight * taps[t, q]


@jit
def taps_gradient(coef, shares, out):  # pragma: no cover - compiled
    """The filters' gradient in torch's layout, out (K, C, 9), from each slice's transformed
    gradient shares (S, 36, C, K): out[k, c, t] = sum over s and j of coef[t, j] * shares[s, j, c, k]
    (coef: the adjoint of the filter transform, (9, 36))."""
    n_shares, points, c, k = shares.shape
    flat = shares.reshape(n_shares, points, c * k)
    taps = np.zeros((9, c * k), np.float32)
    for t in range(9):
        row = taps[t]
        for s in range(n_shares):
            for j in range(points):
                weight = coef[t, j]
                if weight != 0.0:
                    for q in range(c * k):
                        row[q] += weight * flat[s, j, q]
    for ko in range(k):
        for ci in range(c):
            for t in range(9):
                out[ko, ci, t] = taps[t, ci * k + ko]


@jit
def forward_images(x, y, w, coef, b, pad, th, tw, group, u, v, m, ints, chars, flts):  # pragma: no cover - compiled
    """x (n, H, W, C) -> y (n, OH, OW, K), ``group`` images at a time: their tiles v, the 36
    products m = v @ u, and back. u, the filters w (K, C, 9) transformed (``filter_tiles``), is
    this slice's own: every slice computes it (a few microseconds) rather than wait for one."""
    filter_tiles(coef, w, u)
    n_img = x.shape[0]
    for n in range(0, n_img, group):
        e = min(n + group, n_img)
        input_tiles(x[n:e], v, pad, th, tw)
        tiles = (e - n) * th * tw
        for xi in range(36):
            mm(v[xi, :tiles], False, u[xi], False, m[xi, :tiles], 0.0, ints, chars, flts)
        output_tiles(m, b, y[n:e], th, tw)


@jit
def backward_images(x, gy, gx, pad, th, tw, group, input_grad, u, v, dm, dv, ints, chars, flts,
                    du, db):  # pragma: no cover - compiled
    """The gradients of ``forward_images`` (u: the filter transforms it computed): du (36, C, K) =
    v^T dm and db (K,) = the sum of gy, this slice's share of the filters'; with ``input_grad``, gx
    (n, H, W, C) from dv = dm @ u^T. The input tiles are computed again from x rather than kept
    from the forward pass: that is cheaper than storing and reading back 36/16 times the input."""
    du[:] = 0.0
    db[:] = 0.0
    n_img = x.shape[0]
    for n in range(0, n_img, group):
        e = min(n + group, n_img)
        input_tiles(x[n:e], v, pad, th, tw)
        output_grad_tiles(gy[n:e], dm, db, th, tw)
        tiles = (e - n) * th * tw
        for xi in range(36):
            mm(v[xi, :tiles], True, dm[xi, :tiles], False, du[xi], 1.0, ints, chars, flts)
        if input_grad:
            for xi in range(36):
                mm(dm[xi, :tiles], False, u[xi], True, dv[xi, :tiles], 0.0, ints, chars, flts)
            input_grad_tiles(dv, gx[n:e], pad, th, tw)
