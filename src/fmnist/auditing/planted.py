"""Faults planted on purpose, to measure what the audit finds.

:func:`plant_faults` copies a dataset and, at places drawn from a seeded generator, flips
labels, copies training images into the test set (exactly, or changed by noise, a shift of a
pixel or two, or a JPEG round trip), and copies training images over other training images.
:func:`score_audit` says which of them an audit result found. ``scripts/audit_planted.py``
runs both on Fashion-MNIST; the tests run them on small subsets.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

__all__ = ["Planted", "plant_faults", "perturb", "score_audit", "NEAR_KINDS"]

NEAR_KINDS = ("noise", "shift", "jpeg")


@dataclasses.dataclass
class Planted:
    """The faulty copy (uint8 images, int labels) and where each fault went.

    ``flips``: (split, index, original label); ``exact_leaks``/``near_leaks``: (train index,
    test index[, kind]); ``duplicates``: (train original, train copy).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    flips: list[tuple[str, int, int]]
    exact_leaks: list[tuple[int, int]]
    near_leaks: list[tuple[int, int, str]]
    duplicates: list[tuple[int, int]]


def perturb(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` (28, 28) uint8 changed a little: Gaussian noise (sd 8 grey levels), a shift of 1-2 pixels, or JPEG."""
    if kind == "noise":
        return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).round().astype(np.uint8)
    if kind == "shift":
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        out = np.zeros_like(image)
        h, w = image.shape
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out
    if kind == "jpeg":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="JPEG", quality=int(rng.integers(70, 95)))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.uint8)
    raise ValueError(f"unknown perturbation {kind!r}; choose from {NEAR_KINDS}")


def plant_faults(x_train, y_train, x_test, y_test, *, seed: int, flips: int = 0, test_flips: int = 0,
                 exact_leaks: int = 0, near_leaks: int = 0, duplicates: int = 0,
                 num_classes: int | None = None) -> Planted:
    """A copy of the data with faults planted at distinct random places (see :class:`Planted`).

    A flipped label becomes another class drawn uniformly. A leaked test image takes its
    training original's label, as a real leak would carry it.
    """
    rng = np.random.default_rng(seed)
    xtr, ytr, xte, yte = (np.array(a) for a in (x_train, y_train, x_test, y_test))
    num_classes = num_classes or int(max(ytr.max(), yte.max())) + 1
    n_pairs = exact_leaks + near_leaks + duplicates
    train_pick = rng.permutation(len(xtr))[:flips + n_pairs + duplicates]
    test_pick = rng.permutation(len(xte))[:test_flips + exact_leaks + near_leaks]
    if len(train_pick) < flips + n_pairs + duplicates or len(test_pick) < test_flips + exact_leaks + near_leaks:
        raise ValueError("more faults asked for than there are images")
    tr, te = iter(train_pick.tolist()), iter(test_pick.tolist())
    planted = Planted(xtr, ytr, xte, yte, [], [], [], [])
    # Pairs first, flips last: a flipped image is never also a pair's source.
    for _ in range(exact_leaks):
        i, j = next(tr), next(te)
        xte[j], yte[j] = xtr[i], ytr[i]
        planted.exact_leaks.append((i, j))
    for n in range(near_leaks):
        i, j, kind = next(tr), next(te), NEAR_KINDS[n % len(NEAR_KINDS)]
        xte[j], yte[j] = perturb(xtr[i], kind, rng), ytr[i]
        planted.near_leaks.append((i, j, kind))
    for _ in range(duplicates):
        i, j = next(tr), next(tr)
        xtr[j], ytr[j] = xtr[i], ytr[i]
        planted.duplicates.append((i, j))
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
    duplicates (in any space). A flip counts among the first ``n`` label issues of its split,
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
    }
    for kind in NEAR_KINDS:
        out[f"near_leaks_{kind}"] = recall([(("train", i), ("test", j)) in pairs
                                            for i, j, k in planted.near_leaks if k == kind])
    for split in ("train", "test"):
        flipped = {i for s, i, _ in planted.flips if s == split}
        ranked = [issue["index"] for issue in result["label_issues"] if issue["split"] == split]
        if flipped:
            first = set(ranked[:len(flipped)])
            out[f"flips_{split}"] = {"planted": len(flipped), "recall_first_n": len(flipped & first) / len(flipped),
                                     "recall_all": len(flipped & set(ranked)) / len(flipped),
                                     "flagged": len(ranked)}
    return out
