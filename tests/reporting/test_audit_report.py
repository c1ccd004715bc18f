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


def test_the_outlier_histogram_counts_the_outliers_the_audit_flags(monkeypatch, tmp_path):
    import fmnist.plots.audit
    from fmnist.reporting import audit_report

    seen = {}

    def histogram(series, threshold, *, xlabel, flagged_below=True, flagged=None):
        seen[xlabel] = flagged
        return fmnist.plots.audit.new_figure(1, 1)

    monkeypatch.setattr(fmnist.plots.audit, "distance_histogram", histogram)
    # A blank test image and a train image far by its roughness alone: both left of the pixel-distance line.
    result = {"summary": {"thresholds": {"pixel": 0.1, "aligned": 0.01, "embedding": 0.01, "outlier_pixel": 0.5}},
              "outliers": [{"split": "test", "index": 3}, {"split": "train", "index": 0}]}
    distances = {f"{space}_{split}": np.full(4, 0.2) for space in ("pixel", "aligned", "embedding", "outlier")
                 for split in ("test", "train")}
    audit_report._histograms_html(result, distances, tmp_path, 50)
    outliers = next(flagged for xlabel, flagged in seen.items() if xlabel.startswith("mean RMS"))
    assert outliers == {"test → train": 1, "train → train": 1}


def test_a_tiny_label_score_is_not_printed_as_zero():
    from fmnist.reporting.audit_report import _issues_html

    page = _issues_html([{"split": "train", "index": 0, "given": 1, "suggested": 2, "score": 9.85e-05}],
                        {"train": np.zeros((1, 28, 28), np.uint8)}, ["a", "b", "c"], "self-confidence")
    assert "b → c (9.8e-05)" in page
