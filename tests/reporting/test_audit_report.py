"""audit.html's counts per class: images, not the pairs audit.json lists."""

import numpy as np

from fmnist.reporting.audit_report import findings_per_class


def _pair(a, b, **extra):
    return {"a": {"split": a[0], "index": a[1]}, "b": {"split": b[0], "index": b[1]}, **extra}


def test_findings_per_class_count_images_not_pairs():
    labels = {"train": np.array([0, 0, 0, 1, 1, 1, 2]), "test": np.array([0, 1, 2, 2])}
    result = {
        # Three copies of train #0 (three pairs: two second copies); test #0 copied as test #2
        # and test #3 with another label (three pairs: two second copies, one of class 2).
        "exact_duplicates": [_pair(("train", 0), ("train", 1)), _pair(("train", 0), ("train", 2)),
                             _pair(("train", 1), ("train", 2)),
                             _pair(("test", 0), ("test", 2)), _pair(("test", 0), ("test", 3)),
                             _pair(("test", 2), ("test", 3))],
        # Two near pairs, each found in all three spaces: two images.
        "near_duplicates": [_pair(("train", 3), ("train", 4), space=s) for s in ("pixel", "aligned", "embedding")]
                           + [_pair(("train", 5), ("test", 1), space=s) for s in ("pixel", "aligned", "embedding")],
        "label_issues": [{"split": "train", "index": 6}],
        "outliers": [],
    }
    counts = findings_per_class(result, labels, 3)
    assert counts == {"exact duplicates (second copy)": [2, 0, 2],
                      "near duplicates (second image)": [0, 2, 0],
                      "label issues (given label)": [0, 0, 1],
                      "outliers": [0, 0, 0]}
