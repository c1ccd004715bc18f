import numpy as np
import pytest
import torch
from sklearn.linear_model import SGDClassifier

from fmnist.errors import DataError
from fmnist.evaluation import evaluate, predict_proba
from fmnist.evaluation.metrics import as_features, score
from fmnist.models import create_model
from tests.conftest import learnable_images

Y = np.arange(100) % 10
X = learnable_images(Y)


def test_score_matches_hand_computation():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]]).log()
    y = torch.tensor([0, 1, 0])
    s = score(p, y)
    assert s["accuracy"] == 2 / 3 and s["n"] == 3
    assert abs(s["loss"] - float(-(np.log(0.7) + np.log(0.1) + np.log(0.5)) / 3)) < 1e-6


def test_certain_mistake_is_clipped_like_keras():
    s = score(torch.tensor([[0.0, float("-inf")]]), torch.tensor([1]))
    assert np.isfinite(s["loss"]) and abs(s["loss"] + np.log(1e-7)) < 1e-4


def test_a_certain_right_answer_costs_keras_floor_never_a_negative_loss():
    # log-probability 0 (certain), and one a rounding put just above 0
    s = score(torch.tensor([[0.0, float("-inf")], [1e-9, -30.0]]), torch.tensor([0, 0]))
    assert s["loss"] > 0 and abs(s["loss"] + np.log1p(-1e-7)) < 1e-12
    assert f"{s['loss']:.4f}" == "0.0000"


def test_one_path_for_torch_and_sklearn():
    torch.manual_seed(0)
    net = create_model("softmax")
    sk = SGDClassifier(loss="log_loss", random_state=0).fit(as_features(X), Y)
    for model in (net, sk):
        proba = predict_proba(model, X)
        assert proba.shape == (100, 10)
        np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
        result = evaluate(model, X, Y)
        assert result["accuracy"] == float((proba.argmax(1) == Y).mean())
    assert evaluate(sk, X, Y)["accuracy"] > 0.9


def test_evaluation_leaves_training_mode_alone():
    net = create_model("flatten,dense:20:relu,dropout:0.5,dense:10")
    net.train()
    a, b = predict_proba(net, X[:5]), predict_proba(net, X[:5])
    np.testing.assert_array_equal(a, b)  # dropout off while predicting
    assert net.training


def test_convolutional_networks_are_scored_in_cache_sized_batches():
    import torch

    from fmnist.evaluation import metrics
    from fmnist.models import create_model

    torch.manual_seed(0)
    sizes = {}
    x = torch.rand(metrics.CONV_EVAL_BATCH + 7, 28, 28)
    for name in ("conv:4:3,maxpool:2,flatten,dense:10", "flatten,dense:8:relu,dense:10"):
        model = create_model(name)
        seen = sizes.setdefault(name, [])
        model.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(len(args[0])))
        batched = metrics.log_proba_tensors(model, x)
        torch.testing.assert_close(batched, metrics.log_proba_tensors(model, x, batch_size=len(x)))
    assert sizes["conv:4:3,maxpool:2,flatten,dense:10"][:2] == [metrics.CONV_EVAL_BATCH, 7]
    assert sizes["flatten,dense:8:relu,dense:10"][0] == len(x)  # dense: one large product


def test_a_models_own_labels_are_mapped_to_its_probability_columns():
    # A scikit-learn model trained on classes 3, 5 and 7 has three columns, in that order.
    y = np.array([3, 5, 7] * 20)
    images = learnable_images(y)
    est = SGDClassifier(loss="log_loss", max_iter=20, tol=None, random_state=0).fit(as_features(images), y)
    ours = evaluate(est, images, y)
    assert ours["accuracy"] == est.score(as_features(images), y)
    named = SGDClassifier(loss="log_loss", max_iter=20, tol=None, random_state=0).fit(
        as_features(images), np.array(["shirt", "bag", "boot"])[y // 2 - 1])
    assert evaluate(named, images, np.array(["shirt", "bag", "boot"])[y // 2 - 1])["accuracy"] == ours["accuracy"]
    with pytest.raises(DataError, match=r"labels hold 4, which is not one of the model's classes \(3, 5, 7\)"):
        evaluate(est, images, y + 1)


def test_labels_as_a_column_score_as_labels_and_wrong_shapes_are_one_line():
    y = np.arange(50) % 10
    images = learnable_images(y)
    model = create_model("flatten,dense:10")
    assert evaluate(model, images, y[:, None]) == evaluate(model, images, y)
    for bad, match in [((images, y[:10]), r"labels of shape \(10,\) for 50 images"),
                       ((images[0], y[:1]), r"images of shape \(28, 28\): .*one image: pass images\[None\]"),
                       ((images[:0], y[:0]), "no images"),
                       ((images.reshape(50, 2, 392)[:, :, :100], y), r"images of shape \(50, 2, 100\)")]:
        with pytest.raises(DataError, match=match):
            evaluate(model, *bad)


def test_integer_pixels_of_any_type_are_scaled_like_uint8():
    y = np.arange(30) % 10
    images = learnable_images(y)
    model = create_model("flatten,dense:10")
    expected = predict_proba(model, images)
    for dtype in (np.int64, np.int16, np.uint16):
        np.testing.assert_array_equal(predict_proba(model, images.astype(dtype)), expected)
    np.testing.assert_array_equal(as_features(images.astype(np.int32)), as_features(images))
    with pytest.raises(DataError, match="integer images hold values from 0 to 300"):
        predict_proba(model, np.minimum(images.astype(np.int64) * 2, 300))


class _Tied:
    """A scikit-learn-like model whose probabilities tie where its decision does not (as a
    one-vs-rest model's saturate): it predicts its second class, at the same probability as the first."""

    classes_ = np.array([3, 7, 9])

    def predict_log_proba(self, x):
        return np.log(np.tile([0.4, 0.4, 0.2], (len(x), 1)))

    def predict(self, x):
        return np.full(len(x), 7)


def test_a_scikit_learn_models_accuracy_is_that_of_its_own_predict():
    from fmnist.evaluation.metrics import predictions

    x, y = np.zeros((4, 28, 28), np.uint8), np.array([7, 7, 7, 3])
    assert evaluate(_Tied(), x, y)["accuracy"] == 0.75  # as model.score: predict is right 3 times of 4
    proba, predicted = predictions(_Tied(), x)
    assert predicted.tolist() == [1, 1, 1, 1] and proba.shape == (4, 3)
    net = create_model("softmax")
    proba, predicted = predictions(net, x)
    assert np.array_equal(predicted, proba.argmax(1))


def _overflowing() -> torch.nn.Module:
    """Finite weights (1e37) that overflow float32 (3.4e38 at most) on any image with a few lit
    pixels: +inf logits, whose softmax is NaN; a blank image scores 0 for every class."""
    model = create_model("flatten,dense:10").eval()
    with torch.no_grad():
        model.layers[-1].weight.fill_(1e37)
        model.layers[-1].bias.zero_()
    return model


def test_outputs_that_are_not_numbers_are_refused_never_returned():
    from fmnist.errors import ModelError
    from fmnist.evaluation.metrics import predictions

    model = _overflowing()
    images = np.concatenate([np.zeros((3, 28, 28), np.uint8), X[:5]])
    for use in (lambda: evaluate(model, images, Y[:8]), lambda: predict_proba(model, images),
                lambda: predictions(model, images)):
        with pytest.raises(ModelError, match=r"^the model's outputs are not numbers \(NaN\) for 5 of 8 images: "
                                             r"its weights overflow"):
            use()
    assert np.isfinite(predict_proba(model, images[:3])).all()  # blank images are scored as before
