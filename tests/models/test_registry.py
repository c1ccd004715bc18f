import pytest
import torch
from sklearn.base import clone

from fmnist.errors import ModelError
from fmnist.models import create_model, get_preset, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_has_the_right_output(name):
    model = create_model(name)
    preset = get_preset(name)
    if preset.family == "torch":
        assert model(torch.zeros(3, 28, 28)).shape == (3, 10)
        assert model(torch.zeros(3, 784)).shape == (3, 10)
    else:
        clone(model)  # a real scikit-learn estimator
        assert model.get_params()["random_state"] == 42


def test_study_presets_are_the_tutorials_models():
    assert str(get_preset("mlp-200-100").spec) == "flatten,dense:200:relu,dense:100:relu,dense:10:softmax"
    params = create_model("sgd-logreg").get_params()
    assert (params["loss"], params["max_iter"], params["random_state"]) == ("log_loss", 5, 42)


def test_overrides_and_layer_strings():
    assert create_model("sgd-logreg", max_iter=20).max_iter == 20
    assert create_model("flatten,dense:7:relu,dense:10")(torch.zeros(2, 784)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mlp-200", "cnn-best", "flatten,dense:7:relu,dense:3"])
def test_num_classes_sets_the_width_of_the_last_layer(name):
    model = create_model(name, num_classes=3)
    assert model.spec.num_classes == 3 and model.spec.layers[-1]["units"] == 3
    assert model.eval()(torch.zeros(2, 28, 28)).shape == (2, 3)
    assert model.spec.layers[:-1] == get_preset(name, num_classes=3).spec.layers[:-1]
    with pytest.raises(ModelError, match="num_classes must be a whole number of at least 2, got 1"):
        create_model(name, num_classes=1)


def test_unknown_names_fail_loudly():
    with pytest.raises(ModelError, match="a model is named by a preset name or a layer string, got NoneType"):
        create_model(None)
    with pytest.raises(ModelError, match="unknown model 'nope'; known: .*mlp-200"):  # no guess for nothing like one
        create_model("nope")
    slips = (("mlp200", "mlp-200"), ("cnnbest", "cnn-best"), ("CNN-Book", "cnn-book"), ("sofmax", "softmax"))
    for slip, meant in slips:
        with pytest.raises(ModelError, match=f"unknown model '{slip}'; did you mean '{meant}'\\? known: "):
            create_model(slip)
    with pytest.raises(ModelError, match=r"'softmax, mlp-200' names presets, not the layers of one network; give "
                                         r"each model on its own \(fmnist compare softmax mlp-200\)"):
        create_model("softmax, mlp-200")
    with pytest.raises(ModelError, match="overrides"):
        create_model("mlp-200", hidden=3)
