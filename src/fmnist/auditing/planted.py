"""Faults planted on purpose, to measure what the audit finds.

:func:`plant_faults` copies a dataset and, at places drawn from a seeded generator, flips
labels, copies training images into the test set (exactly, or changed as a copy passed
through other hands might be: :data:`NEAR_KINDS`), copies training images over other training
images, and puts images that are no garment in place of some (:data:`OUTLIER_KINDS`).
:func:`score_audit` says which of them an audit result found. ``benchmarks/audit.py planted``
runs both on Fashion-MNIST; the tests run them on small subsets.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from fmnist.auditing.neighbours import move

__all__ = ["Planted", "plant_faults", "perturb", "outlier_image", "score_audit", "NEAR_KINDS", "HARD_KINDS",
           "OUTLIER_KINDS"]

# What a near copy may have been through: sensor noise, a crop a few pixels off, lossy
# re-encoding, a brightness and contrast change, a left-right mirror (the usual augmentation),
# and a shift with noise on top. The audit is built to find these.
NEAR_KINDS = ("noise", "shift", "jpeg", "contrast", "mirror", "shift_noise")
# Geometric changes that move every pixel: a rotated or rescaled copy is as far from its
# original as another garment of the class is; planted and measured, not promised.
HARD_KINDS = ("rotate", "scale")
OUTLIER_KINDS = ("blank", "constant", "inverted", "noise", "glyph")


@dataclasses.dataclass
class Planted:
    """The faulty copy (uint8 images, int labels) and where each fault went.

    ``flips``: (split, index, original label); ``exact_leaks``/``near_leaks``: (train index,
    test index[, kind]), ``hard_leaks`` likewise (:data:`HARD_KINDS`); ``duplicates``/``near_duplicates``: (train original, train copy[,
    kind]); ``outliers``: (split, index, kind).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    flips: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    exact_leaks: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    near_leaks: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    hard_leaks: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    duplicates: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    near_duplicates: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    outliers: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)


def perturb(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W) uint8 changed a little, as :data:`NEAR_KINDS` and :data:`HARD_KINDS` say.

    noise: Gaussian, sd 4-16 grey levels; shift: 1-3 pixels in each direction (not both 0),
    zeros moving in; jpeg: quality 50-95; contrast: pixels times 0.7-1.3 plus -25..25; mirror:
    left-right; shift_noise: a shift, then noise; rotate: 3-10 degrees either way; scale: by 1-3 pixels either way (0.9-1.1 at 28).
    """
    from PIL import Image

    f = image.astype(np.float64)
    if kind == "noise":
        return np.clip(f + rng.normal(0, rng.uniform(4, 16), f.shape), 0, 255).round().astype(np.uint8)
    if kind == "shift":
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in rng.integers(-3, 4, 2))
        return move(image[None], np.array([[dy, dx]]))[0]
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="JPEG", quality=int(rng.integers(50, 96)))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.uint8)
    if kind == "contrast":
        return np.clip(f * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255).round().astype(np.uint8)
    if kind == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if kind == "shift_noise":
        return perturb(perturb(image, "shift", rng), "noise", rng)
    if kind == "rotate":
        angle = rng.uniform(3, 10) * rng.choice([-1, 1])
        return np.asarray(Image.fromarray(image, mode="L").rotate(angle, resample=Image.BILINEAR), dtype=np.uint8)
    if kind == "scale":
        h, w = image.shape
        size = h + int(rng.choice([-3, -2, -1, 1, 2, 3]))  # 0.9-1.1 at 28 pixels, never the same size
        scaled = np.asarray(Image.fromarray(image, mode="L").resize((size, size), Image.BILINEAR), dtype=np.uint8)
        out = np.zeros_like(image)
        if size >= h:
            o = (size - h) // 2
            return np.ascontiguousarray(scaled[o:o + h, o:o + w])
        o = (h - size) // 2
        out[o:o + size, o:o + size] = scaled
        return out
    raise ValueError(f"unknown perturbation {kind!r}; choose from {NEAR_KINDS + HARD_KINDS}")


def outlier_image(kind: str, like: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image (shape of ``like``, uint8) that is no garment: :data:`OUTLIER_KINDS`.

    blank: all black; constant: one grey level 40-255; inverted: ``like`` with black and white
    swapped; noise: uniform random pixels; glyph: a large digit or letter drawn in white.
    """
    if kind == "blank":
        return np.zeros_like(like)
    if kind == "constant":
        return np.full_like(like, int(rng.integers(40, 256)))
    if kind == "inverted":
        return 255 - like
    if kind == "noise":
        return rng.integers(0, 256, like.shape).astype(np.uint8)
    if kind == "glyph":
        from PIL import Image, ImageDraw, ImageFont

        h, w = like.shape
        canvas = Image.new("L", (w, h))
        font = ImageFont.load_default(size=int(rng.integers(20, 27)))
        ImageDraw.Draw(canvas).text((w / 2, h / 2), str(rng.choice(list("0123456789AEKRSWXZ"))), fill=255,
                                    font=font, anchor="mm")
        return np.asarray(canvas, dtype=np.uint8)
    raise ValueError(f"unknown outlier {kind!r}; choose from {OUTLIER_KINDS}")


def plant_faults(x_train, y_train, x_test, y_test, *, seed: int, flips: int = 0, test_flips: int = 0,
                 exact_leaks: int = 0, near_leaks: int = 0, hard_leaks: int = 0, duplicates: int = 0,
                 near_duplicates: int = 0,
                 outliers: int = 0, near_kinds: tuple[str, ...] = NEAR_KINDS,
                 num_classes: int | None = None) -> Planted:
    """A copy of the data with faults planted at distinct random places (see :class:`Planted`).

    Near leaks and near duplicates take the ``near_kinds`` in turn, hard leaks :data:`HARD_KINDS`; outliers take
    :data:`OUTLIER_KINDS` in turn, alternately in train and test. A flipped label becomes
    another class drawn uniformly. A leaked test image takes its training original's label, as
    a real leak would carry it.
    """
    rng = np.random.default_rng(seed)
    xtr, ytr, xte, yte = (np.array(a) for a in (x_train, y_train, x_test, y_test))
    num_classes = num_classes or int(max(ytr.max(), yte.max())) + 1
    train_outliers, test_outliers = (outliers + 1) // 2, outliers // 2
    n_train = exact_leaks + near_leaks + hard_leaks + 2 * (duplicates + near_duplicates) + train_outliers + flips
    n_test = exact_leaks + near_leaks + hard_leaks + test_outliers + test_flips
    if n_train > len(xtr) or n_test > len(xte):
        raise ValueError("more faults asked for than there are images")
    tr = iter(rng.permutation(len(xtr))[:n_train].tolist())
    te = iter(rng.permutation(len(xte))[:n_test].tolist())
    planted = Planted(xtr, ytr, xte, yte)
    # Pairs first, flips last: a flipped image is never also a pair's source.
    for _ in range(exact_leaks):
        i, j = next(tr), next(te)
        xte[j], yte[j] = xtr[i], ytr[i]
        planted.exact_leaks.append((i, j))
    for leaks, count, kinds in ((planted.near_leaks, near_leaks, near_kinds),
                                (planted.hard_leaks, hard_leaks, HARD_KINDS)):
        for n in range(count):
            i, j, kind = next(tr), next(te), kinds[n % len(kinds)]
            xte[j], yte[j] = perturb(xtr[i], kind, rng), ytr[i]
            leaks.append((i, j, kind))
    for _ in range(duplicates):
        i, j = next(tr), next(tr)
        xtr[j], ytr[j] = xtr[i], ytr[i]
        planted.duplicates.append((i, j))
    for n in range(near_duplicates):
        i, j, kind = next(tr), next(tr), near_kinds[n % len(near_kinds)]
        xtr[j], ytr[j] = perturb(xtr[i], kind, rng), ytr[i]
        planted.near_duplicates.append((i, j, kind))
    for n in range(outliers):
        split, x, source = ("train", xtr, tr) if n % 2 == 0 else ("test", xte, te)
        i, kind = next(source), OUTLIER_KINDS[(n // 2) % len(OUTLIER_KINDS)]
        x[i] = outlier_image(kind, x[i], rng)
        planted.outliers.append((split, i, kind))
    for split, labels, source, count in (("train", ytr, tr, flips), ("test", yte, te, test_flips)):
        for _ in range(count):
            i = next(source)
            original = int(labels[i])
            labels[i] = (original + rng.integers(1, num_classes)) % num_classes
            planted.flips.append((split, i, original))
    return planted


def score_audit(result: dict[str, Any], planted: Planted) -> dict[str, Any]:
    """Which planted faults an audit result (``audit.json``'s structure) found: recall per kind.

    A leak or duplicate counts as found when the pair appears among the exact or near
    duplicates (in any space); an outlier when its image is among the outliers. A flip counts among the first ``n`` label issues of its split,
    ``n`` the number of flips planted there; ``recall_all`` counts it anywhere in the list.
    """
    pairs = set()
    for item in result["exact_duplicates"] + result["near_duplicates"]:
        a, b = (item["a"]["split"], item["a"]["index"]), (item["b"]["split"], item["b"]["index"])
        pairs |= {(a, b), (b, a)}

    def recall(found: list[bool]) -> float | None:
        return None if not found else sum(found) / len(found)

    out: dict[str, Any] = {
        "exact_leaks": recall([(("train", i), ("test", j)) in pairs for i, j in planted.exact_leaks]),
        "near_leaks": recall([(("train", i), ("test", j)) in pairs for i, j, _ in planted.near_leaks]),
        "duplicates": recall([(("train", i), ("train", j)) in pairs for i, j in planted.duplicates]),
        "near_duplicates": recall([(("train", i), ("train", j)) in pairs for i, j, _ in planted.near_duplicates]),
    }
    out["hard_leaks"] = recall([(("train", i), ("test", j)) in pairs for i, j, _ in planted.hard_leaks])
    for name, leaks, kinds in (("near_leaks", planted.near_leaks, NEAR_KINDS), ("hard_leaks", planted.hard_leaks, HARD_KINDS)):
        for kind in kinds:
            out[f"{name}_{kind}"] = recall([(("train", i), ("test", j)) in pairs for i, j, k in leaks if k == kind])
    flagged = {(d["split"], d["index"]) for d in result["outliers"]}
    out["outliers"] = recall([(split, i) in flagged for split, i, _ in planted.outliers])
    for kind in OUTLIER_KINDS:
        out[f"outliers_{kind}"] = recall([(split, i) in flagged for split, i, k in planted.outliers if k == kind])
    for split in ("train", "test"):
        flipped = {i for s, i, _ in planted.flips if s == split}
        ranked = [issue["index"] for issue in result["label_issues"] if issue["split"] == split]
        if flipped:
            first = set(ranked[:len(flipped)])
            out[f"flips_{split}"] = {"planted": len(flipped), "recall_first_n": len(flipped & first) / len(flipped),
                                     "recall_all": len(flipped & set(ranked)) / len(flipped),
                                     "flagged": len(ranked)}
    return out
