"""fmnist.audit on tiny garment images with planted faults: what it finds, what it writes."""

import json

import numpy as np
import pytest

import fmnist
from fmnist.auditing.core import ALIGNED_FACTOR, AUDIT_FILE, NOISE_AUTOCORRELATION, NOISY_FACTOR
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
    # Beyond the aligned threshold a pair is a noisy copy, and says why (its residual's autocorrelation).
    threshold = result["summary"]["thresholds"]["aligned"]
    assert all(set(d) == {"a", "b", "distance", "space"} | ({"residual_autocorrelation"} if d["space"] == "aligned"
               and d["distance"] > threshold else set()) for d in result["near_duplicates"])
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
    thresholds = result["summary"]["thresholds"]
    for space in ("pixel", "aligned"):
        pairs = [d for d in result["near_duplicates"] if d["space"] == space and "residual_autocorrelation" not in d]
        assert pairs and all(d["distance"] <= thresholds[space] for d in pairs)
    # Beyond the aligned threshold only noisy copies: a residual without shape, within the wider limit.
    noisy = [d for d in result["near_duplicates"] if "residual_autocorrelation" in d]
    assert all(d["residual_autocorrelation"] <= NOISE_AUTOCORRELATION
               and thresholds["aligned"] < d["distance"] <= thresholds["aligned"] / ALIGNED_FACTOR * NOISY_FACTOR
               for d in noisy)
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


def test_noisy_moved_copies_are_found_beyond_the_aligned_threshold(real_data):
    # Real garments; test images replaced by training images moved and made noisy (sd 4-16):
    # as far from their originals as other garments are from one another, found by their
    # shapeless residual.
    x_train, y_train = real_data.x_train[:2000], real_data.y_train[:2000]
    x_test, y_test = real_data.x_test[:300], real_data.y_test[:300]
    planted = plant_faults(x_train, y_train, x_test, y_test, seed=3, near_leaks=16, near_kinds=("shift_noise",))
    # And garments alike but for a print: training images with noise on the garment only, the
    # black background untouched. Their residual is shapeless too, but not everywhere.
    rng = np.random.default_rng(4)
    printed = rng.choice(np.setdiff1d(np.arange(300), [j for _, j, _ in planted.near_leaks]), 16, replace=False)
    sources = rng.choice(np.setdiff1d(np.arange(2000), [i for i, _, _ in planted.near_leaks]), 16, replace=False)
    for j, i in zip(printed, sources):
        x = planted.x_train[i].astype(float)
        planted.x_test[j] = np.where(x > 0, np.clip(x + rng.normal(0, 20, x.shape), 0, 255), 0).astype(np.uint8)
    result = fmnist.audit(as_dataset(planted.x_train, planted.y_train, planted.x_test, planted.y_test), folds=2,
                          epochs=1, progress=False)
    assert score_audit(result, planted)["near_leaks"] >= 15 / 16
    noisy = [d for d in result["near_duplicates"] if "residual_autocorrelation" in d]
    leaks = {(i, j) for i, j, _ in planted.near_leaks}
    assert len(noisy) >= 4 and all((d["a"]["index"], d["b"]["index"]) in leaks for d in noisy
                                   if d["b"]["split"] == "test")
    assert not {d["b"]["index"] for d in noisy if d["b"]["split"] == "test"} & set(printed.tolist())


def test_thresholds_come_from_images_that_are_not_copies(garment_arrays):
    # Every test image an exact copy of a training image: their nearest distances are 0, and a
    # threshold drawn from them would switch every near-duplicate search off.
    x_train, y_train, _, _ = (a.copy() for a in garment_arrays)
    x_train[301] = x_train[300]
    x_train[301, 14, 14] = 255 - x_train[301, 14, 14]  # one pixel: a near duplicate
    y_train[301] = y_train[300]
    result = fmnist.audit(as_dataset(x_train, y_train, x_train[:100], y_train[:100]), folds=2, epochs=1,
                          progress=False)
    s = result["summary"]
    assert s["exact_duplicates"]["train-test"] == 100
    assert min(s["thresholds"][space] for space in ("pixel", "aligned", "embedding")) > 0
    assert any({d["a"]["index"], d["b"]["index"]} == {300, 301} and d["a"]["split"] == d["b"]["split"] == "train"
               for d in result["near_duplicates"])
    assert s["notes"] == ["near-duplicate thresholds set from the training images: only 0 of 100 test images are "
                          "not exact copies of training images"]


def test_the_threshold_reference_leaves_exact_copies_out():
    from fmnist.auditing.core import MIN_REFERENCE, _threshold_reference

    def copies(pairs):
        return [{"a": {"split": a[0], "index": a[1]}, "b": {"split": b[0], "index": b[1]}} for a, b in pairs]

    # Half the test images copies: the other half sets the thresholds, and nothing needs saying.
    (split, rows), note = _threshold_reference(copies((("train", i), ("test", 2 * i)) for i in range(15)), 50, 30)
    assert split == "test" and rows.tolist() == list(range(1, 30, 2)) and note is None
    # Copies within train leave both images out; copies within test none (train holds neither).
    (split, rows), note = _threshold_reference(copies([(("train", 0), ("train", 1)), (("test", 0), ("test", 1))])
                                               + copies((("train", 2), ("test", i)) for i in range(2, 30)), 50, 30)
    assert split == "train" and rows.tolist() == list(range(2, 50)) and "only 2 of 30 test images" in note
    # A test set smaller than MIN_REFERENCE, none of it copied, still sets them.
    (split, rows), note = _threshold_reference([], 50, MIN_REFERENCE - 2)
    assert split == "test" and len(rows) == MIN_REFERENCE - 2 and note is None
    # Nothing but copies: no threshold, and the note says the search is off.
    (split, rows), note = _threshold_reference(copies((("train", 0), ("train", i)) for i in range(1, 5)), 5, 0)
    assert len(rows) == 0 and note.startswith("near-duplicate search off")


def test_a_class_without_training_images_is_named_not_reported_as_label_errors(garment_arrays):
    import warnings

    from tests.auditing.conftest import garments

    x_train, y_train, x_test, y_test = garment_arrays
    kept = y_train != 9  # class 9: test images only, drawn as class 2 (models that never saw 9 say 2)
    x_test = x_test.copy()
    x_test[y_test == 9] = garments(np.full(int((y_test == 9).sum()), 2), 2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fmnist.audit(as_dataset(x_train[kept], y_train[kept], x_test, y_test), folds=2, epochs=1,
                              progress=False)
    s = result["summary"]
    assert s["classes_missing_from_train"] == [9]
    assert any(note.startswith("1 class with test images but none in train: 9;") for note in s["notes"])
    assert not [d for d in result["label_issues"] if d["given"] == 9]
    assert not [str(w.message) for w in seen if "label issues" in str(w.message)]


def test_few_clean_training_images_flag_no_ordinary_image_as_an_outlier():
    from tests.auditing.conftest import garments

    # 180 training images: a typical-image model of 64 components draws them nearly exactly,
    # and then a new garment badly.
    y_train, y_test = np.arange(180) % 10, np.arange(100) % 10
    x_test = garments(y_test, 1)
    x_test[0] = 255 - x_test[0]  # an inverted garment: still an outlier
    result = fmnist.audit(as_dataset(garments(y_train, 0), y_train, x_test, y_test), folds=2, epochs=1,
                          progress=False)
    assert [(d["split"], d["index"]) for d in result["outliers"]] == [("test", 0)]


def test_an_audit_interrupted_while_it_writes_leaves_the_earlier_audit_whole(garment_arrays, tmp_path, monkeypatch):
    """--overwrite replaces an audit only with a finished one: no new audit.json beside an old page."""
    import fmnist.reporting.audit_report as report

    data, out = as_dataset(*garment_arrays), tmp_path / "audit"
    fmnist.audit(data, folds=2, epochs=1, out_dir=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    draw = report.write_audit_report

    def interrupted(result, data, out_dir, *args, **kwargs):
        draw(result, data, out_dir, *args, **kwargs)  # the page and its figures written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_audit_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fmnist.audit(data, folds=3, epochs=1, out_dir=out, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
