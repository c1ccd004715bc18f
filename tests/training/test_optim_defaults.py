"""The optimizer table's defaults are Keras's (keras.optimizers.*), so the book's runs reproduce."""

import pytest
import torch

from fmnist.training import build_optimizer

KERAS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-7, "momentum": 0.0},
    "adagrad": {"lr": 0.001, "initial_accumulator_value": 0.1, "eps": 1e-7},
    "adam": {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7},
    "adamw": {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.004},
}


@pytest.mark.parametrize("name", KERAS)
def test_defaults_are_keras(name):
    group = build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))]).param_groups[0]
    for key, value in KERAS[name].items():
        assert group[key] == pytest.approx(value), key


@pytest.mark.parametrize("name", KERAS)
def test_an_explicit_weight_decay_is_honoured_even_zero(name):
    param = [torch.nn.Parameter(torch.zeros(2))]
    assert build_optimizer(name, param, weight_decay=0.0).param_groups[0]["weight_decay"] == 0.0
    assert build_optimizer(name, param, weight_decay=0.01).param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("name", ["adam", "adamw", "adagrad"])
def test_momentum_is_refused_where_the_update_has_none(name):
    from fmnist.errors import UsageError

    param = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(UsageError, match=f"momentum=0.9: {name} has no momentum setting"):
        build_optimizer(name, param, momentum=0.9)
    build_optimizer(name, param, momentum=0.0)  # no momentum is what it has


def test_momentum_reaches_the_optimizers_that_have_it():
    param = [torch.nn.Parameter(torch.zeros(2))]
    for name in ("sgd", "rmsprop"):
        assert build_optimizer(name, param, momentum=0.9).param_groups[0]["momentum"] == 0.9
