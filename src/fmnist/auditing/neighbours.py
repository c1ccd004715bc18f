"""Nearest neighbours for the audit, in bounded memory.

Every query image is compared with every base image, but only ``chunk`` query rows at a
time: the largest array alive is ``chunk x len(base)`` float32 (1024 x 60,000 = 245 MB at the
default), never the 70,000 x 70,000 matrix. Distances come from one matrix product per chunk
(``|q|^2 + |b|^2 - 2 q.b``), which runs on the same BLAS as training, and ``torch.topk`` keeps
the ``k`` smallest of each row.

Pixel distances are root-mean-square differences of pixels scaled to [0, 1] (0: identical, 1:
black against white everywhere), so a threshold reads the same for any image size. The search
itself runs on the images' first principal components and the candidates it returns are then
measured exactly on all pixels: a projection onto orthonormal axes never lengthens a
difference, so every pair within a distance ``t`` in pixels is also within ``t`` in the
projection, and a near duplicate is found unless ``k`` others are closer still in projection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["knn", "pixel_knn", "fit_projection", "exact_rms", "embedding_knn", "fit_typical_projection", "reconstruction_error", "roughness", "register", "centre_of_mass", "move", "standardised",
           "correlation_distance", "residual_noise", "aligned_knn"]

# Principal components the pixel search runs on: 64 keep ~86 % of Fashion-MNIST's pixel
# variance and cost a twelfth of the 784-pixel products; candidates are re-measured exactly.
PIXEL_COMPONENTS = 64


def knn(queries: np.ndarray | list[np.ndarray], base: np.ndarray, k: int, *, same: bool = False,
        chunk: int = 1024, on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each row of ``queries`` (Euclidean).

    ``queries`` (n, d), ``base`` (m, d), float. ``queries`` may also be a list of such arrays,
    views of the same n queries (moved, say): then a base row's distance to query i is the
    smallest over the views, and one selection runs per chunk instead of one per view (the
    selection, not the product, is most of a search's time). ``same``: the queries are the
    base itself, and a row is not its own neighbour. Returns ``(distances, indices)``, float32
    and int64 (n, k), nearest first; ``on_chunk(rows)`` is called after each chunk (for a
    progress bar).
    """
    import torch

    views = [torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
             for q in (queries if isinstance(queries, list) else [queries])]
    q_all = views[0]
    b = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
    k = min(k, len(base) - (1 if same else 0))
    b_sq = (b * b).sum(1)
    dist = np.empty((len(q_all), k), np.float32)
    index = np.empty((len(q_all), k), np.int64)
    with torch.inference_mode():
        for start in range(0, len(q_all), chunk):
            d2, scratch = None, None
            for view in views:
                q = view[start:start + chunk]
                if d2 is None:
                    d2 = torch.addmm(b_sq[None, :], q, b.T, alpha=-2.0).add_((q * q).sum(1, keepdim=True))
                    continue
                scratch = torch.addmm(b_sq[None, :], q, b.T, alpha=-2.0, out=scratch).add_(
                    (q * q).sum(1, keepdim=True))
                torch.minimum(d2, scratch, out=d2)
            if same:
                rows = torch.arange(len(q))
                d2[rows, rows + start] = float("inf")
            values, idx = torch.topk(d2, k, dim=1, largest=False)
            dist[start:start + len(q)] = values.clamp_min_(0).sqrt_().numpy()
            index[start:start + len(q)] = idx.numpy()
            if on_chunk is not None:
                on_chunk(len(q))
    return dist, index


def _pixels(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255.0)


def exact_rms(a_images: np.ndarray, b_images: np.ndarray, index: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """RMS pixel distance in [0, 1] between ``a_images[i]`` and ``b_images[index[i, j]]``: float32 like ``index``."""
    out = np.empty(index.shape, np.float32)
    for start in range(0, len(index), chunk):
        a = _pixels(a_images[start:start + chunk])[:, None, :]
        b = _pixels(b_images[index[start:start + chunk].ravel()]).reshape(*index[start:start + chunk].shape, -1)
        out[start:start + chunk] = np.sqrt(((a - b) ** 2).mean(-1))
    return out


def pixel_knn(queries: np.ndarray, base: np.ndarray, k: int, *, same: bool = False, projection=None,
              on_chunk=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``base`` images of each query image by RMS pixel distance, in [0, 1].

    ``queries``/``base``: uint8 images (N, 28, 28). ``projection``: a fitted PCA (see
    :func:`fit_projection`), fitted on ``base`` when None. Candidates (``2k``) come from the
    projection; the returned distances are exact. Returns float32 and int64 arrays (n, k).
    """
    projection = projection or fit_projection(base)
    qp = projection.transform(_pixels(queries))
    bp = qp if same and queries is base else projection.transform(_pixels(base))
    _, cand = knn(qp, bp, 2 * k, same=same, on_chunk=on_chunk)
    dist = exact_rms(queries, base, cand)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)


def fit_projection(images: np.ndarray, components: int = PIXEL_COMPONENTS, seed: int = 0):
    """A scikit-learn PCA of the images' pixels (in [0, 1]) to ``components`` axes."""
    from sklearn.decomposition import PCA

    x = _pixels(images)
    components = min(components, x.shape[1], len(x))
    return PCA(components, svd_solver="randomized", random_state=seed).fit(x)


def fit_typical_projection(images: np.ndarray, components: int = PIXEL_COMPONENTS, trim: float = 0.02,
                           seed: int = 0):
    """:func:`fit_projection` refitted without the images it draws worst or places farthest out.

    A handful of alike odd images (inverted, noise) would otherwise earn components of their
    own: drawn well, but far out along those components (Mahalanobis distance). Refitted
    without the ``trim`` share most extreme by either, they are drawn badly.
    """
    projection = fit_projection(images, components, seed)
    if len(images) * (1 - 2 * trim) > components + 1:
        x = _pixels(images)
        scores = projection.transform(x)
        error = np.sqrt(((x - projection.inverse_transform(scores)) ** 2).mean(1))
        outlying = np.sqrt(((scores / np.sqrt(projection.explained_variance_)) ** 2).sum(1))
        keep = (error <= np.quantile(error, 1 - trim)) & (outlying <= np.quantile(outlying, 1 - trim))
        projection = fit_projection(images[keep], components, seed)
    return projection


def reconstruction_error(images: np.ndarray, projection) -> np.ndarray:
    """RMS difference (pixels in [0, 1]) between each image and its reconstruction from ``projection``'s components.

    Float32 (N,). An image unlike all those the PCA was fitted on (inverted, noise) keeps much
    of itself outside their principal components.
    """
    out = np.empty(len(images), np.float32)
    for start in range(0, len(images), 8192):
        x = _pixels(images[start:start + 8192])
        out[start:start + len(x)] = np.sqrt(((x - projection.inverse_transform(projection.transform(x))) ** 2).mean(1))
    return out


def roughness(images: np.ndarray) -> np.ndarray:
    """Mean absolute difference between neighbouring pixels (in [0, 1]), float32 (N,): high for noise, not for photos."""
    x = _pixels(images).reshape(images.shape)
    return ((np.abs(np.diff(x, axis=1)).mean((1, 2)) + np.abs(np.diff(x, axis=2)).mean((1, 2))) / 2).astype(np.float32)


def embedding_knn(queries: np.ndarray, base: np.ndarray, k: int, *, same: bool = False,
                  on_chunk=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows by cosine distance (1 - cos, in [0, 2]) of feature vectors (N, D)."""
    q = _unit(queries)
    b = q if same and queries is base else _unit(base)
    dist, index = knn(q, b, k, same=same, on_chunk=on_chunk)
    return (dist ** 2 / 2).astype(np.float32), index  # |u - v|^2 = 2 - 2 cos for unit vectors


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))


def register(images: np.ndarray, template: np.ndarray, reach: int = 4) -> np.ndarray:
    """Each image's offset (dy, dx), int64 (N, 2), within ``reach``, that best matches ``template``.

    Every image is registered to the same reference (the training images' mean), by the
    largest Pearson correlation over all moves up to ``reach`` pixels. A copy moved by a few
    pixels registers to the same place as its original even when it lost a row or two at the
    border, where a centre of mass would move by half as much.
    """
    import torch

    h, w = images.shape[1:]
    t = torch.from_numpy(np.asarray(template, np.float32))
    out = np.empty((len(images), 2), np.int64)
    with torch.inference_mode():
        for start in range(0, len(images), 8192):
            x = torch.nn.functional.pad(torch.from_numpy(_pixels(images[start:start + 8192])).view(-1, h, w),
                                        (reach,) * 4)
            scores = torch.stack([_normalised_dot(x[:, dy:dy + h, dx:dx + w], t)
                                  for dy in range(2 * reach + 1) for dx in range(2 * reach + 1)], 1)
            best = scores.argmax(1).numpy()
            out[start:start + len(best)] = np.stack([best // (2 * reach + 1), best % (2 * reach + 1)], 1) - reach
    return out


def _normalised_dot(windows, template):
    """Pearson correlation (times a constant) of each window with the template: blind to brightness and contrast."""
    w = windows.flatten(1)
    return (w * template.flatten()).sum(1) / w.norm(dim=1).clamp_min(1e-6)


def move(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W) with image i's content at ``offsets[i]`` (dy, dx) from where it was; zeros move in."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    offsets = np.broadcast_to(np.asarray(offsets, np.int64), (len(images), 2))
    # One slice assignment per distinct offset, not a Python step per image: the searches move
    # 60,000 images by one offset at a time, dozens of times.
    for dy, dx in {tuple(v) for v in offsets.tolist()}:
        rows = np.nonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))[0]
        out[rows, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            images[rows, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def standardised(images: np.ndarray) -> np.ndarray:
    """Each image's pixels less their mean, over their norm: float32 (N, H*W), blind to brightness and contrast."""
    x = _pixels(images)
    x -= x.mean(1, keepdims=True)
    return _unit(x)


def correlation_distance(a: np.ndarray, b: np.ndarray, max_shift: int = 3, chunk: int = 2048,
                         return_moves: bool = False):
    """1 - the largest Pearson correlation of ``a[i]`` with ``b[i]`` moved by up to ``max_shift`` pixels.

    ``a``, ``b``: uint8 images (n, H, W). Each move compares only the pixels the two images
    share, so a copy that lost rows at the border is still the same photo (distance 0), and
    brightness or contrast changes (pixels scaled and offset) do not count. Float32 (n,), in
    [0, 2]; a constant image correlates with nothing (distance 1). All moves at once: the
    products summed over each overlap come from one FFT cross-correlation, the sums and sums of
    squares over each overlap from cumulative sums. With ``return_moves`` also the best move,
    int64 (n, 2): (dy, dx) with ``a[r, c]`` compared to ``b[r - dy, c - dx]``.
    """
    import torch

    m = max_shift
    h, w = a.shape[1:]
    out = np.empty(len(a), np.float32)
    moves = np.empty((len(a), 2), np.int64)
    with torch.inference_mode():
        for start in range(0, len(a), chunk):
            x = torch.from_numpy(_pixels(a[start:start + chunk])).view(-1, h, w)
            y = torch.from_numpy(_pixels(b[start:start + chunk])).view(-1, h, w)
            size = (h + 2 * m, w + 2 * m)
            # cross[dy, dx] = sum over the overlap of x[r, c] * y[r - dy, c - dx], dy, dx in [-m, m]
            cross = torch.fft.irfft2(torch.fft.rfft2(x, size) * torch.fft.rfft2(y, size).conj(), size)
            cross = torch.roll(cross, (m, m), (1, 2))[:, :2 * m + 1, :2 * m + 1]
            n, sx, sxx = _window_sums(x, m, reverse=False)
            _, sy, syy = _window_sums(y, m, reverse=True)
            cov = cross - sx * sy / n
            var = (sxx - sx * sx / n).clamp_min(0) * (syy - sy * sy / n).clamp_min(0)
            r = torch.where(var > 1e-8, cov / var.clamp_min(1e-8).sqrt(), torch.zeros_like(cov))
            best, arg = r.flatten(1).max(1)
            out[start:start + len(x)] = (1 - best.clamp(-1, 1)).numpy()
            moves[start:start + len(x)] = np.stack([arg.numpy() // (2 * m + 1), arg.numpy() % (2 * m + 1)], 1) - m
    return (out, moves) if return_moves else out


def residual_noise(a: np.ndarray, b: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much the part of ``a[i]`` that ``b[i]`` does not explain looks like noise: two float32 (n,).

    At each pair's move (``moves``, as :func:`correlation_distance` returns it), over the pixels
    the two images share, ``a`` less its best linear fit from ``b`` leaves a residual. Returned:

    - its correlation with itself one pixel across and one pixel down. Sensor noise and
      re-encoding leave a residual with none (about 0, JPEG's even below); two different
      garments differ in shapes, whose residual is smooth (0.07 at the least among the nearest
      training images of 3,000 Fashion-MNIST test images, 0.35 typically);
    - its spread where ``b`` is black (the background) over its spread on the garment. Noise
      lies everywhere (0.48 at the least for Gaussian noise, clipped at black); two garments
      alike but for a print or a weave differ only on the garment (below 0.35 for all but
      one such pair of Fashion-MNIST's). 0 where either part has fewer than 20 pixels.
    """
    x, y = _pixels(a).reshape(a.shape), _pixels(b).reshape(b.shape)
    h, w = a.shape[1:]
    autocorrelation = np.ones(len(a), np.float32)
    background = np.zeros(len(a), np.float32)
    for dy, dx in {tuple(v) for v in np.asarray(moves).tolist()}:
        rows = np.nonzero((moves[:, 0] == dy) & (moves[:, 1] == dx))[0]
        p = x[rows, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
        q = y[rows, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        black = q == 0
        p = p - p.mean((1, 2), keepdims=True)
        q = q - q.mean((1, 2), keepdims=True)
        res = p - ((p * q).sum((1, 2)) / np.maximum((q * q).sum((1, 2)), 1e-12))[:, None, None] * q
        lagged = (res[:, 1:] * res[:, :-1]).sum((1, 2)) + (res[:, :, 1:] * res[:, :, :-1]).sum((1, 2))
        energy = 2 * (res * res).sum((1, 2))
        autocorrelation[rows] = np.where(energy > 1e-12, lagged / np.maximum(energy, 1e-12), 1.0)
        spread = [_masked_std(res, mask) for mask in (black, ~black)]
        enough = (black.sum((1, 2)) >= 20) & ((~black).sum((1, 2)) >= 20) & (spread[1] > 1e-6)
        background[rows] = np.where(enough, spread[0] / np.maximum(spread[1], 1e-6), 0.0)
    return autocorrelation, background


def _masked_std(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Standard deviation of each image's pixels where ``mask`` (n,) (0 where none)."""
    count = np.maximum(mask.sum((1, 2)), 1)
    mean = (x * mask).sum((1, 2)) / count
    return np.sqrt(np.maximum(((x - mean[:, None, None]) ** 2 * mask).sum((1, 2)) / count, 0))


def _window_sums(x, m: int, reverse: bool):
    """For each move (dy, dx) in [-m, m]^2: the overlap's pixel count, sum and sum of squares of ``x``.

    The overlap of x (not reversed: x[r, c] for r - dy in range) or of the moved image
    (reversed: y[r - dy, c - dx]); shapes (2m + 1, 2m + 1) and (n, 2m + 1, 2m + 1).
    """
    import torch

    h, w = x.shape[1:]
    stats = []
    for v in (torch.ones_like(x[:1]), x, x * x):
        c = torch.nn.functional.pad(v.cumsum(1).cumsum(2), (1, 0, 1, 0))  # c[:, i, j] = sum of v[:, :i, :j]
        rows = []
        for dy in range(-m, m + 1):
            r0, r1 = (max(-dy, 0), h + min(-dy, 0)) if reverse else (max(dy, 0), h + min(dy, 0))
            cols = []
            for dx in range(-m, m + 1):
                c0, c1 = (max(-dx, 0), w + min(-dx, 0)) if reverse else (max(dx, 0), w + min(dx, 0))
                cols.append(c[:, r1, c1] - c[:, r0, c1] - c[:, r1, c0] + c[:, r0, c0])
            rows.append(torch.stack(cols, 1))
        stats.append(torch.stack(rows, 1))
    return stats


def aligned_knn(queries: np.ndarray, base: np.ndarray, k: int, *, same: bool = False, max_shift: int = 3,
                variants: int = 1, mirror: bool = True, on_chunk=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``base`` images of each query by :func:`correlation_distance`, mirror images included.

    Candidates come from searches among images aligned and standardised (:func:`standardised`),
    on their principal components: a moved, brightened, darkened, re-contrasted or left-right
    mirrored copy lands next to its original there. Two alignments, since a copy cropped at the
    border can throw either off: registration to the base's mean image (:func:`register`; it
    may land a pixel off, so each query is also searched moved by up to ``variants`` pixels,
    ``(2 variants + 1)^2`` searches, ``k // 2`` candidates each) and the centre of mass
    (:func:`centre_of_mass`); and none: each query moved by every offset up to ``max_shift``
    (within one set, half of them), the ``k`` closest over all offsets kept. Every candidate is
    measured by :func:`correlation_distance` (on the query and on its mirror image, the smaller
    counts). ``queries``/``base``: uint8 (N, H, W). Returns float32 and int64 arrays (n, k),
    nearest first.
    """
    template = _pixels(base).mean(0).reshape(base.shape[1:])
    found: list[tuple[np.ndarray, np.ndarray]] = []
    alignments = [(lambda x: register(x, template), variants, "each"), (centre_of_mass, 0, "each")]
    # Registration can throw a cropped copy off by more than ``variants``: each query is also
    # searched unaligned at every move up to ``max_shift``, and the ``k`` closest in projection
    # over all moves are kept. Compared without their outer ``max_shift`` pixels, a copy moved
    # back is its original there exactly, whatever it lost at the border (a garment that fills
    # the frame, among many alike: trousers). Within one set a pair is found from either image,
    # the copy moved back or the original moved forth: half the moves suffice.
    alignments.append((lambda x: np.zeros((len(x), 2), np.int64), max_shift, "best"))
    for align, reach, keep in alignments:
        frame = (lambda x: _without_border(x, max_shift)) if keep == "best" else (lambda x: x)
        base_std = standardised(frame(move(base, -align(base))))
        projection = _fit_pca(base_std)
        bp = projection.transform(base_std)
        for view, mirrored in [(queries, False)] + ([(queries[:, :, ::-1], True)] if mirror else []):
            if mirrored and keep == "best":
                continue  # mirrored copies are found through the two alignments above
            view = np.ascontiguousarray(view)
            aligned = move(view, -align(view))
            moves = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
            if keep == "best" and same:
                moves = [(dy, dx) for dy, dx in moves if (dy, dx) >= (0, 0)]
            elif mirrored or same:
                moves = [(0, 0)]  # the costly searches where leaks hide: unmirrored, test against train
            views = [projection.transform(standardised(frame(move(aligned, offset)))) for offset in moves]
            if keep == "best":  # the k closest over all moves at once
                cands = knn(views, bp, k, same=same)[1]
            else:
                per = k if len(moves) == 1 else max(1, k // 2)
                report = on_chunk if not mirrored and reach == variants else None
                cands = np.concatenate([knn(qp, bp, per, same=same, on_chunk=report if n == 0 else None)[1]
                                        for n, qp in enumerate(views)], 1)
            # Each distinct candidate measured once: the moved searches mostly agree.
            rows, cols = np.nonzero(~_repeats(cands))
            dist = np.full(cands.shape, np.inf, np.float32)
            dist[rows, cols] = correlation_distance(view[rows], base[cands[rows, cols]], max_shift)
            found.append((dist, cands))
    dist = np.concatenate([d for d, _ in found], 1)
    cands = np.concatenate([c for _, c in found], 1)
    return _nearest_distinct(dist, cands, k)


def _without_border(images: np.ndarray, width: int) -> np.ndarray:
    """``images`` with their outer ``width`` pixels black (a copy)."""
    out = images.copy()
    if width:
        out[:, :width], out[:, -width:], out[:, :, :width], out[:, :, -width:] = 0, 0, 0, 0
    return out


def _fit_pca(x: np.ndarray):
    from sklearn.decomposition import PCA

    return PCA(min(PIXEL_COMPONENTS, x.shape[1], len(x)), svd_solver="randomized", random_state=0).fit(x)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """Each image's offset (dy, dx), int64 (N, 2), from the middle to the centre of its bright pixels.

    Pixels count by how far they rise above a quarter of the image's brightest (so a dim
    background or noise does not pull), rounded to whole pixels.
    """
    x = _pixels(images).reshape(images.shape)
    weight = np.clip(x - 0.25 * x.max((1, 2), keepdims=True), 0, None)
    mass = weight.sum((1, 2)) + 1e-6
    h, w = images.shape[1:]
    rows = (weight.sum(2) * np.arange(h)).sum(1) / mass
    cols = (weight.sum(1) * np.arange(w)).sum(1) / mass
    return np.rint(np.stack([rows - (h - 1) / 2, cols - (w - 1) / 2], 1)).astype(np.int64).clip(-6, 6)


def _repeats(index: np.ndarray) -> np.ndarray:
    """Bool like ``index``: True where the row already holds the same index further left."""
    repeat = np.zeros(index.shape, bool)
    for j in range(1, index.shape[1]):
        repeat[:, j] = (index[:, :j] == index[:, j:j + 1]).any(1)
    return repeat


def _nearest_distinct(dist: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` smallest distances of distinct indices (a candidate found twice counts once)."""
    order = np.argsort(dist, axis=1, kind="stable")
    dist, index = np.take_along_axis(dist, order, 1), np.take_along_axis(index, order, 1)
    dist = np.where(_repeats(index), np.inf, dist)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1).astype(np.float32), np.take_along_axis(index, order, 1)
