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
