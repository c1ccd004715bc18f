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

__all__ = ["knn", "pixel_knn", "fit_projection", "exact_rms", "embedding_knn", "shifted_rms", "fourier_features",
           "shifted_knn"]

# Principal components the pixel search runs on: 64 keep ~86 % of Fashion-MNIST's pixel
# variance and cost a twelfth of the 784-pixel products; candidates are re-measured exactly.
PIXEL_COMPONENTS = 64


def knn(queries: np.ndarray, base: np.ndarray, k: int, *, same: bool = False, chunk: int = 1024,
        on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each row of ``queries`` (Euclidean).

    ``queries`` (n, d), ``base`` (m, d), float. ``same``: the queries are the base itself, and a
    row is not its own neighbour. Returns ``(distances, indices)``, float32 and int64 (n, k),
    nearest first; ``on_chunk(rows)`` is called after each chunk (for a progress bar).
    """
    import torch

    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
    k = min(k, len(base) - (1 if same else 0))
    b_sq = (b * b).sum(1)
    dist = np.empty((len(q_all), k), np.float32)
    index = np.empty((len(q_all), k), np.int64)
    with torch.inference_mode():
        for start in range(0, len(q_all), chunk):
            q = q_all[start:start + chunk]
            d2 = torch.addmm(b_sq[None, :], q, b.T, alpha=-2.0).add_((q * q).sum(1, keepdim=True))
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


def shifted_rms(a: np.ndarray, b: np.ndarray, max_shift: int = 2, chunk: int = 8192) -> np.ndarray:
    """Smallest RMS pixel distance between ``a[i]`` and ``b[i]`` moved by up to ``max_shift`` pixels.

    ``a``, ``b``: uint8 images (n, 28, 28). Pixels moved in from outside count as 0 (the
    background), so a garment shifted by a pixel or two matches its original. Float32 (n,),
    in [0, 1]; with ``max_shift=0`` the plain RMS distance.
    """
    import torch

    out = np.empty(len(a), np.float32)
    m = max_shift
    with torch.inference_mode():
        for start in range(0, len(a), chunk):
            x = torch.from_numpy(_pixels(a[start:start + chunk])).view(-1, *a.shape[1:])
            y = torch.nn.functional.pad(torch.from_numpy(_pixels(b[start:start + chunk])).view(-1, *b.shape[1:]),
                                        (m, m, m, m))
            h, w = a.shape[1:]
            best = torch.full((len(x),), float("inf"))
            for dy in range(2 * m + 1):
                for dx in range(2 * m + 1):
                    best = torch.minimum(best, (x - y[:, dy:dy + h, dx:dx + w]).square_().mean((1, 2)))
            out[start:start + len(x)] = best.sqrt_().numpy()
    return out


def fourier_features(images: np.ndarray) -> np.ndarray:
    """Magnitudes of each image's 2-D Fourier transform, float32 (N, 28 * 15).

    A circular shift changes only the phases, so an image and its copy moved by a pixel or
    two (over a black background, where little wraps round) have nearly equal magnitudes.
    """
    x = np.asarray(images, dtype=np.float32) / np.float32(255.0)
    return np.abs(np.fft.rfft2(x)).astype(np.float32).reshape(len(x), -1)


def shifted_knn(queries: np.ndarray, base: np.ndarray, k: int, *, same: bool = False, max_shift: int = 2,
                projection=None, on_chunk=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``base`` images of each query by :func:`shifted_rms`, among shift-invariant candidates.

    Candidates are the ``k`` nearest in :func:`fourier_features` (on their principal
    components, as :func:`pixel_knn`); each is then aligned and measured on the pixels.
    ``projection``: a PCA fitted on the base's Fourier features (fitted here when None).
    Returns float32 and int64 arrays (n, k), nearest first.
    """
    from sklearn.decomposition import PCA

    fb = fourier_features(base)
    if projection is None:
        projection = PCA(min(PIXEL_COMPONENTS, fb.shape[1], len(fb)), svd_solver="randomized", random_state=0).fit(fb)
    bp = projection.transform(fb)
    qp = bp if same and queries is base else projection.transform(fourier_features(queries))
    _, cand = knn(qp, bp, k, same=same, on_chunk=on_chunk)
    dist = np.empty(cand.shape, np.float32)
    step = 4096  # query rows per pass: their k candidates' pixels, not all 60,000 x k at once
    for start in range(0, len(cand), step):
        rows = cand[start:start + step]
        dist[start:start + step] = shifted_rms(np.repeat(queries[start:start + step], rows.shape[1], axis=0),
                                               base[rows.ravel()], max_shift).reshape(rows.shape)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)
