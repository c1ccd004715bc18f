"""NetClassifier: scikit-learn's own estimator checks, model selection as on SGDClassifier,
and the image input forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.utils.estimator_checks import parametrize_with_checks

from fmnist.errors import ModelError
from fmnist.estimators import NetClassifier
from tests.conftest import learnable_images

SMALL = "flatten,dense:32:relu,dense:10"


# The default estimator, as a user gets it (only the device pinned: checks compare fits).
@parametrize_with_checks([NetClassifier(device="cpu")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture
def images():
    y = np.arange(120) % 10 + 3  # labels 3..12: not 0..C-1
    return learnable_images(y % 10), y


def test_fit_predict_on_images(images):
    x, y = images
    clf = NetClassifier(SMALL, epochs=4, device="cpu")
    assert clf.fit(x, y) is clf
    assert clf.n_features_in_ == 784 and list(clf.classes_) == list(range(3, 13))
    assert len(clf.history_) == 4 and clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    proba = clf.predict_proba(x)
    assert proba.shape == (120, 10)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert set(clf.predict(x)) <= set(clf.classes_)
    assert clf.score(x, y) == np.mean(clf.predict(x) == y)
    assert clf.score(x, y) > 0.5  # learnable data, well above chance (0.1)


def test_no_images_get_scikit_learns_own_message(images):
    x, y = images
    with pytest.raises(ValueError, match=r"0 sample\(s\) \(shape=\(0, 784\)\)"):
        NetClassifier(SMALL, epochs=1, device="cpu").fit(x[:0], y[:0])
    clf = NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y)
    with pytest.raises(ValueError, match=r"0 sample\(s\) \(shape=\(0, 784\)\)"):
        clf.predict(x[:0])


def test_input_forms_agree(images):
    """(N, 28, 28) uint8, (N, 784) uint8 and (N, 784) float in [0, 1] are the same data."""
    x, y = images
    flat = x.reshape(len(x), -1)
    probs = [NetClassifier(SMALL, epochs=2, device="cpu").fit(form, y).predict_proba(form)
             for form in (x, flat, flat / 255.0)]
    np.testing.assert_allclose(probs[0], probs[1], atol=0)
    np.testing.assert_allclose(probs[0], probs[2], atol=1e-5)


def test_conv_preset_on_images(images):
    x, y = images
    clf = NetClassifier("conv:4:3,maxpool:2,flatten,dense:10", epochs=1, device="cpu").fit(x, y)
    assert clf.model_.spec.input_shape == (28, 28)
    assert clf.predict(x[:5]).shape == (5,)


def test_seeded_fits_are_identical_and_clone_keeps_params(images):
    x, y = images
    clf = NetClassifier(SMALL, epochs=2, lr=3e-3, seed=7, device="cpu")
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "model_")
    np.testing.assert_array_equal(clf.fit(x, y).predict_proba(x), twin.fit(x, y).predict_proba(x))
    other = clone(clf).set_params(seed=8).fit(x, y)
    assert not np.array_equal(other.predict_proba(x), clf.predict_proba(x))


def test_sklearn_preset_is_refused(images):
    x, y = images
    with pytest.raises(ModelError, match="scikit-learn model"):
        NetClassifier("sgd-logreg").fit(x, y)


def test_the_presets_recipe_is_used_unless_overridden(images):
    x, y = images
    recipe = NetClassifier("mlp-best", epochs=1, device="cpu").fit(x, y).config_
    assert (recipe.optimizer, recipe.batch_size, recipe.lr, recipe.schedule, recipe.flip) == (
        "adamw", 256, 2e-3, "onecycle", True)
    mine = NetClassifier("mlp-best", epochs=1, optimizer="sgd", batch_size=16, schedule="none", flip=False,
                         device="cpu").fit(x, y).config_
    assert (mine.optimizer, mine.batch_size, mine.schedule, mine.flip, mine.lr) == ("sgd", 16, None, False, 2e-3)
    # The tutorial's presets keep Keras's defaults, as `fmnist train` gives them.
    plain = NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y).config_
    assert (plain.optimizer, plain.batch_size) == ("rmsprop", 32)


def test_config_holds_the_precision_it_trained_in(images, monkeypatch):
    from fmnist.training import loop

    x, y = images
    monkeypatch.setattr(loop, "bfloat16_native", lambda device: False)
    assert NetClassifier(SMALL, epochs=1, precision="auto", device="cpu").fit(x, y).config_.precision == "float32"


def test_early_stopping_presets_hold_out_validation_data(images):
    x, y = images
    clf = NetClassifier("cnn-book", epochs=2, device="cpu").fit(x, y)  # patience 2: watches val_loss
    assert clf.config_.patience == 2 and len(clf.history_) == 2 and "val_loss" in clf.history_[-1]
    assert clf.predict(x[:3]).shape == (3,)
    with pytest.raises(ValueError, match="validation_fraction=0 holds out no data"):
        NetClassifier("mlp-100-dropout", epochs=1, validation_fraction=0.0, device="cpu").fit(x, y)
    for bad in ("0.1", 1.0, True):
        with pytest.raises(ValueError, match=rf"validation_fraction must be a number in \[0, 1\), got {bad!r}"):
            NetClassifier(SMALL, epochs=1, validation_fraction=bad, device="cpu").fit(x, y)
    no_stop = NetClassifier("mlp-100-dropout", epochs=1, patience=0, device="cpu").fit(x, y)
    assert no_stop.config_.patience is None and "val_loss" not in no_stop.history_[0]
    held = NetClassifier(SMALL, epochs=1, validation_fraction=0.25, device="cpu").fit(x, y)
    assert "val_accuracy" in held.history_[0]


def test_cross_validate_like_sgdclassifier(images):
    x, y = images
    flat = x.reshape(len(x), -1) / 255.0
    net = cross_validate(NetClassifier(SMALL, epochs=3, device="cpu"), x, y, cv=3,
                         scoring=["accuracy", "neg_log_loss"], return_train_score=True)
    sgd = cross_validate(SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0), flat, y, cv=3,
                         scoring=["accuracy", "neg_log_loss"], return_train_score=True)
    assert net.keys() == sgd.keys()
    assert len(net["test_accuracy"]) == 3 and np.all(net["test_accuracy"] > 0.3)
    assert np.all(net["test_neg_log_loss"] < 0)


def test_grid_search(images):
    x, y = images
    search = GridSearchCV(NetClassifier(SMALL, epochs=2, device="cpu"),
                          {"lr": [1e-4, 3e-3], "model": [SMALL, "flatten,dense:10"]}, cv=2).fit(x, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["lr"] in (1e-4, 3e-3)
    # refit on all data with the best parameters, then predicts the original labels
    assert isinstance(search.best_estimator_, NetClassifier)
    assert set(search.predict(x)) <= set(y)
    # lr 1e-4 for two epochs of 60 images barely moves the weights: the search must notice
    scores = dict(zip(map(str, search.cv_results_["params"]), search.cv_results_["mean_test_score"]))
    assert scores[str({"lr": 3e-3, "model": SMALL})] > scores[str({"lr": 1e-4, "model": SMALL})]


def test_other_image_sizes_keep_their_shape():
    """(N, 14, 14) images: conv presets see 14 x 14, not a row of 196 pixels."""
    y = np.arange(40) % 4
    x = learnable_images(y)[:, ::2, ::2].copy()
    clf = NetClassifier("conv:4:3,maxpool:2,flatten,dense:10", epochs=1, device="cpu").fit(x, y)
    assert clf.image_shape_ == (14, 14) and clf.n_features_in_ == 196
    assert clf.model_.spec.input_shape == (14, 14) and clf.model_.spec.num_classes == 4
    assert clf.predict_proba(x).shape == (40, 4)
    with pytest.raises(ValueError, match="784 features"):
        clf.predict(learnable_images(y))


def test_fitted_estimator_saves_and_loads_as_its_network(images, tmp_path):
    import fmnist

    x, y = images
    clf = NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y)
    loaded = fmnist.load_model(fmnist.save_model(clf, tmp_path / "clf"))
    np.testing.assert_array_equal(fmnist.predict_proba(loaded, x), fmnist.predict_proba(clf.model_, x))
    names = json.loads((tmp_path / "clf" / "model.json").read_text())["class_names"]
    assert names == [str(c) for c in clf.classes_]
    np.testing.assert_allclose(clf.predict_proba(x), fmnist.predict_proba(loaded, x), atol=1e-6)


def test_saved_estimator_loads_back_as_a_net_classifier(images, tmp_path):
    import fmnist

    x, y = images  # int labels 3..12
    clf = NetClassifier(SMALL, epochs=2, lr=3e-3, seed=5, device="cpu").fit(x, y)
    loaded = NetClassifier.load(fmnist.save_model(clf, tmp_path / "clf"))
    assert isinstance(loaded, NetClassifier) and loaded.get_params() == clf.get_params()
    assert loaded.classes_.dtype == clf.classes_.dtype and loaded.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_array_equal(loaded.predict(x), clf.predict(x))  # the original labels, as ints
    np.testing.assert_array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    assert loaded.score(x, y) == clf.score(x, y)
    assert (loaded.n_features_in_, loaded.image_shape_) == (clf.n_features_in_, clf.image_shape_)
    assert loaded.config_ == clf.config_ and loaded.history_ == clf.history_
    assert clone(loaded).get_params() == clf.get_params()
    # The model.json file too (not only the folder) works, and load_model still gives the bare network.
    assert NetClassifier.load(tmp_path / "clf" / "model.json").predict(x[:3]).tolist() == clf.predict(x[:3]).tolist()
    assert type(fmnist.load_model(tmp_path / "clf")).__name__ == "Network"


def test_string_labels_and_small_images_survive_a_round_trip(tmp_path):
    import fmnist

    y_index = np.arange(40) % 4
    x = learnable_images(y_index)[:, ::2, ::2].copy()
    y = np.array(["boot", "coat", "bag", "shirt"])[y_index]
    clf = NetClassifier("conv:4:3,maxpool:2,flatten,dense:10", epochs=1, device="cpu").fit(x, y)
    loaded = NetClassifier.load(fmnist.save_model(clf, tmp_path / "clf"))
    assert loaded.classes_.dtype == clf.classes_.dtype and loaded.image_shape_ == (14, 14)
    assert loaded.predict(x).tolist() == clf.predict(x).tolist()
    assert set(loaded.predict(x)) <= {"boot", "coat", "bag", "shirt"}


def test_load_refuses_what_is_not_a_saved_net_classifier(images, tmp_path):
    import fmnist

    fmnist.save_model(fmnist.create_model(SMALL), tmp_path / "net")
    with pytest.raises(ModelError, match="not a saved NetClassifier.*fmnist.load_model") as info:
        NetClassifier.load(tmp_path / "net")
    assert "\n" not in str(info.value)

    x, y = images
    folder = fmnist.save_model(NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y), tmp_path / "clf")
    original = json.loads((folder / "model.json").read_text())
    for change, fragment in [
        (lambda m: m["net_classifier"].update(classes=[3.5, *range(4, 13)]), "malformed"),  # not int labels
        (lambda m: m["net_classifier"].update(classes_dtype="<U1"), "malformed"),
        (lambda m: m["net_classifier"].update(classes_dtype="|V8"), "malformed"),
        (lambda m: m["net_classifier"].update(classes=list(range(9)), classes_dtype="<i8"), "9 labels"),
        (lambda m: m["net_classifier"]["params"].update(bogus=1), "malformed"),
        (lambda m: m["net_classifier"].update(n_features_in=100), "n_features_in"),
        (lambda m: m["net_classifier"].pop("config"), "malformed"),
    ]:
        meta = json.loads(json.dumps(original))
        change(meta)
        (folder / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match=fragment) as info:
            NetClassifier.load(folder)
        assert "\n" not in str(info.value) and "model.json" in str(info.value)


def test_fitting_leaves_the_callers_random_numbers_alone(images):
    import torch

    x, y = images
    torch.manual_seed(1)
    NetClassifier(SMALL, epochs=1, device="cpu", seed=5).fit(x, y)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(3))


def test_integer_pixels_of_any_type_are_pixels_and_lists_are_arrays(images):
    x, y = images
    clf = NetClassifier(SMALL, epochs=1, device="cpu").fit(x.astype(np.int64), y)
    reference = NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y)
    np.testing.assert_array_equal(clf.predict_proba(x.astype(np.int64)), reference.predict_proba(x))
    np.testing.assert_array_equal(NetClassifier(SMALL, epochs=1, device="cpu").fit(x.tolist(), y.tolist())
                                  .predict_proba(x.tolist()), reference.predict_proba(x))
    bright = x.astype(np.int64)
    bright[0, 0, 0] = 256
    with pytest.raises(ValueError, match="integer images hold values from 0 to 256"):
        clf.predict(bright)


def test_a_layer_string_may_end_in_one_output_per_class_of_y():
    y = np.arange(60) % 3
    x = learnable_images(y)
    assert NetClassifier("flatten,dense:3", epochs=1, device="cpu").fit(x, y).model_.spec.num_classes == 3
    assert NetClassifier("flatten,dense:10", epochs=1, device="cpu").fit(x, y).model_.spec.num_classes == 3
    with pytest.raises(ModelError, match="the last layer must be dense:3"):
        NetClassifier("flatten,dense:4", epochs=1, device="cpu").fit(x, y)


def test_fmnist_evaluate_scores_a_classifier_of_other_image_sizes():
    import fmnist

    y = np.arange(40) % 4
    x = learnable_images(y)[:, ::2, ::2].copy()
    clf = NetClassifier(SMALL, epochs=1, device="cpu").fit(x, y)
    assert fmnist.evaluate(clf, x, y)["accuracy"] == clf.score(x, y)


def test_fmnist_evaluate_gives_a_model_fitted_on_a_data_frame_its_column_names():
    import warnings

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import fmnist

    y = np.arange(60) % 3
    x = learnable_images(y)
    frame = pd.DataFrame(x.reshape(len(x), -1) / 255.0, columns=[f"px{i}" for i in range(784)])
    model = LogisticRegression(max_iter=200).fit(frame, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn: "X does not have valid feature names"
        scored = fmnist.evaluate(model, x, y)
    assert scored["accuracy"] == model.score(frame, y)
