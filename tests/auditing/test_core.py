"""fmnist.audit on tiny garment images with planted faults: what it finds, what it writes."""

import json

import numpy as np
import pytest

import fmnist
from fmnist.auditing.core import AUDIT_FILE
from fmnist.auditing.neighbours import correlation_distance
from fmnist.auditing.planted import NEAR_KINDS, plant_faults, score_audit
from fmnist.reporting.audit_report import AUDIT_HTML, AUDIT_SECTIONS
from tests.auditing.conftest import as_dataset


@pytest.fixture(scope="module")
def audited(garment_arrays, tmp_path_factory):
    """One audit shared by the module's tests (it trains three small models)."""
    planted = plant_faults(*garment_arrays, seed=0, flips=12, test_flips=4, exact_leaks=3, near_leaks=12,
                           duplicates=3, near_duplicates=6, outliers=8)
    x_train, y_train = planted.x_train, planted.y_train
    x_test, y_test = planted.x_test, planted.y_test
    # A training copy with another label (itself a label error).
    x_train[398], y_train[398] = x_train[397], (y_train[397] + 1) % 10
    out = tmp_path_factory.mktemp("audit")
    result = fmnist.audit(as_dataset(x_train, y_train, x_test, y_test), folds=3, out_dir=out, progress=False,
                          epochs=8)
    return result, planted, out


def test_the_json_has_exactly_the_issues_fields(audited):
    result, _, out = audited
    assert list(result) == ["data", "exact_duplicates", "near_duplicates", "label_issues", "outliers", "summary"]
    assert json.loads((out / AUDIT_FILE).read_text()) == json.loads(json.dumps(result))
    assert all(set(d) == {"a", "b", "labels"} and set(d["a"]) == {"split", "index"} for d in result["exact_duplicates"])
    assert all(set(d) == {"a", "b", "distance", "space"} for d in result["near_duplicates"])
    assert all(set(d) == {"split", "index", "given", "suggested", "score"} for d in result["label_issues"])
    assert result["data"]["counts"] == {"train": 400, "test": 100}
    assert result["data"]["per_class"]["test"] == np.bincount(audited[1].y_test, minlength=10).tolist()
    assert len(result["data"]["sha256"]["train_images"]) == 64
    assert (out / AUDIT_FILE).stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_planted_leaks_and_duplicates_are_found(audited):
    result, planted, _ = audited
    found = score_audit(result, planted)
    assert found["exact_leaks"] == 1.0 and found["duplicates"] == 1.0
    assert {kind: found[f"near_leaks_{kind}"] for kind in NEAR_KINDS} == {kind: 1.0 for kind in NEAR_KINDS}
    # Within train each image is searched once (test images also moved a pixel each way): most, not all.
    assert found["near_duplicates"] >= 5 / 6
    leak = next(d for d in result["exact_duplicates"] if d["a"]["index"] == planted.exact_leaks[0][0]
                and d["b"]["split"] == "test")
    assert leak["b"]["index"] == planted.exact_leaks[0][1]
    assert leak["labels"] == [int(planted.y_train[leak["a"]["index"]])] * 2
    for space in ("pixel", "aligned"):
        pairs = [d for d in result["near_duplicates"] if d["space"] == space]
        assert pairs and all(d["distance"] <= result["summary"]["thresholds"][space] for d in pairs)
    # The embedding only proposes: each of its pairs is one photo by the aligned measure too.
    images = {"train": planted.x_train, "test": planted.x_test}
    pairs = [d for d in result["near_duplicates"] if d["space"] == "embedding"]
    a = np.stack([images[d["a"]["split"]][d["a"]["index"]] for d in pairs])
    b = np.stack([images[d["b"]["split"]][d["b"]["index"]] for d in pairs])
    aligned = np.minimum(correlation_distance(a, b), correlation_distance(a[:, :, ::-1], b))
    assert pairs and (aligned <= result["summary"]["thresholds"]["aligned"]).all()
    # Not every pair of alike garments: about the planted ones (each may show in two spaces).
    assert len(result["near_duplicates"]) <= 3 * (12 + 6)


def test_a_duplicate_with_two_labels_is_reported_with_both(audited):
    result, planted, _ = audited
    pair = next(d for d in result["exact_duplicates"] if {d["a"]["index"], d["b"]["index"]} == {397, 398})
    assert pair["labels"][0] != pair["labels"][1]
    assert result["summary"]["exact_duplicates"]["with_different_labels"] >= 1


def test_flipped_labels_rank_first(audited):
    result, planted, _ = audited
    found = score_audit(result, planted)
    assert found["flips_train"]["recall_first_n"] >= 0.75
    train = [d for d in result["label_issues"] if d["split"] == "train"]
    first = train[0]
    assert first["given"] == int(planted.y_train[first["index"]]) and first["suggested"] != first["given"]
    assert [d["score"] for d in train] == sorted(d["score"] for d in train)  # self-confidence: lowest first


def test_blank_constant_inverted_and_noise_images_are_outliers(audited):
    result, planted, _ = audited
    found = score_audit(result, planted)
    assert {kind for _, _, kind in planted.outliers} == {"blank", "constant", "inverted", "noise"}
    assert found["outliers"] == 1.0, found
    # These garments' class bands sit at fixed rows: only a moved copy may stray from them.
    moved = {("test", j) for _, j, kind in planted.near_leaks if "shift" in kind}
    moved |= {("train", j) for _, j, kind in planted.near_duplicates if "shift" in kind}
    extra = {(d["split"], d["index"]) for d in result["outliers"]} - {(s, i) for s, i, _ in planted.outliers}
    assert extra <= moved, extra


def test_the_page_is_self_contained_with_every_section(audited):
    result, _, out = audited
    page = (out / AUDIT_HTML).read_text()
    for section in AUDIT_SECTIONS:
        assert f'id="{section}"' in page
    assert "src=\"http" not in page and "<script" not in page and "<link" not in page
    # Every finding's images are in the page: a pair shows both of its images.
    n_pairs = min(48, len(result["exact_duplicates"]))
    assert page.count('<div class="pair">') >= n_pairs + min(48, len(result["near_duplicates"]))
    assert (out / "histogram_pixel.png").stat().st_size > 0 and (out / "histogram_embedding.png").exists()
