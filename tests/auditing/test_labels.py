"""Out-of-fold probabilities from the one training loop, and cleanlab's ranking of label issues."""

import sys

import numpy as np
import pytest

from fmnist.auditing.labels import find_label_issues, out_of_fold_proba, require_cleanlab
from fmnist.errors import FmnistError, UsageError
from fmnist.evaluation import predict_proba


def test_each_training_image_is_predicted_by_a_model_that_never_saw_it():
    # Random pixels and random labels: nothing to learn, everything to memorise. A model that
    # saw an image predicts its label; one that did not is at chance.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (150, 28, 28), dtype=np.uint8)
    y = np.arange(150) % 3
    rng.shuffle(y)
    fp = out_of_fold_proba(x, y, x[:10], model="flatten,dense:256:relu,dense:10", folds=3, seed=0,
                           overrides={"epochs": 25, "optimizer": "adam", "lr": 3e-3})
    seen = [(predict_proba(m, x[fp.fold != k]).argmax(1) == y[fp.fold != k]).mean() for k, m in enumerate(fp.models)]
    assert min(seen) > 0.9  # the fold models did memorise their own images...
    assert (fp.train.argmax(1) == y).mean() < 0.6  # ...and the out-of-fold predictions know none of it
    assert sorted(np.bincount(fp.fold).tolist()) == [50, 50, 50]
    each = [predict_proba(m, x[:10])[:, :3] for m in fp.models]  # 10 outputs, 3 classes: the rest never occur
    np.testing.assert_allclose(fp.test, np.mean([p / p.sum(1, keepdims=True) for p in each], axis=0), rtol=1e-5)
    np.testing.assert_allclose(fp.train.sum(1), 1.0, rtol=1e-5)


def test_folds_are_checked_before_training():
    x, y = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
    with pytest.raises(UsageError, match="at least 2 folds"):
        out_of_fold_proba(x, y, x, folds=1)
    with pytest.raises(UsageError, match="only 2 training images"):
        out_of_fold_proba(x, y, x, folds=3)


def test_cleanlab_ranks_the_confidently_wrong_labels_first():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    proba = np.full((300, 3), 0.05)
    proba[np.arange(300), y] = 0.9  # the models agree with the labels...
    flipped = np.array([5, 77, 200])  # all labelled 2
    proba[flipped] = [[0.98, 0.015, 0.005], [0.02, 0.96, 0.02], [0.92, 0.03, 0.05]]  # ...except on three
    proba += rng.uniform(0, 0.01, proba.shape)
    issues = find_label_issues(y, proba)
    assert [d["index"] for d in issues] == [5, 77, 200]  # most confidently wrong first
    p = proba / proba.sum(1, keepdims=True)
    assert [d["given"] for d in issues] == y[flipped].tolist()
    assert [d["suggested"] for d in issues] == [0, 1, 0]
    np.testing.assert_allclose([d["score"] for d in issues], p[flipped, y[flipped]])


def test_missing_cleanlab_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    with pytest.raises(FmnistError, match=r"pip install 'fmnist\[audit\]'"):
        require_cleanlab()


def test_folds_a_class_cannot_fill_are_refused_with_advice_that_can_be_followed():
    from fmnist.auditing.labels import check_folds
    from fmnist.errors import DataError

    y = np.array([0] * 10 + [1] * 3 + [2] * 5)
    check_folds(y, 3)
    with pytest.raises(UsageError, match=r"^folds=5: class 1 has only 3 training images; every fold needs one of each "
                                         r"class, so use at most folds=3$"):
        check_folds(y, 5)
    # One image of a class: no number of folds (at least 2) can hold it twice; the data must change.
    with pytest.raises(DataError, match=r"^folds=2: class 2 has only 1 training image, and auditing needs at least 2"):
        check_folds(np.array([0] * 10 + [1] * 3 + [2]), 2)


def test_images_of_a_class_no_model_could_predict_are_not_judged():
    import warnings

    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2] * 100 + [3] * 6)  # class 3: test images only
    proba = np.full((len(y), 4), 0.05)
    proba[np.arange(len(y)), np.minimum(y, 2)] = 0.9  # class 3 looks like class 2 to models that never saw it
    proba[:, 3] = 1e-6
    proba[5] = [0.98, 0.015, 0.005, 1e-6]  # a class-2 image the models call 0: a label error
    proba += rng.uniform(0, 0.01, proba.shape)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        issues = find_label_issues(y, proba, classes=[0, 1, 2])
        # Class 3 with one image in this split: cleanlab cannot prune it and warns; not on the terminal.
        one = find_label_issues(y[:301], proba[:301])
    assert [str(w.message) for w in seen] == []
    assert [(d["index"], d["given"], d["suggested"]) for d in issues] == [(5, 2, 0)]
    assert 5 in [d["index"] for d in one]
