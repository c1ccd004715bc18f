"""Every registered preset, parametrized over the registry: it builds, has the right output shape,
can memorise one batch with the one training loop, and carries training defaults the config accepts."""

import numpy as np
import pytest
import torch

from fmnist.evaluation.metrics import images_to_tensor, score
from fmnist.models import create_model, get_preset, list_models
from fmnist.training import TrainConfig, Trainer

TORCH_PRESETS = [n for n in list_models() if get_preset(n).family == "torch"]


@pytest.mark.parametrize("name", list_models())
def test_preset_training_defaults_are_a_valid_config(name):
    preset = get_preset(name)
    TrainConfig(**preset.train)
    assert preset.source and preset.description


@pytest.mark.parametrize("name", TORCH_PRESETS)
def test_forward_shape(name):
    model = create_model(name).eval()
    for shape in [(5, 28, 28), (5, 784), (5, 1, 28, 28)]:
        out = model(torch.rand(shape))
        assert out.shape == (5, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", TORCH_PRESETS)
def test_one_batch_overfit(name):
    # Random images with arbitrary labels: only memorisation drives the loss to ~0.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 28, 28)).astype(np.uint8)
    y = np.arange(10)
    torch.manual_seed(0)
    model = create_model(name)
    Trainer(model, TrainConfig(epochs=50, batch_size=10, optimizer="adam", lr=3e-3)).fit(x, y)
    # Scored as trained: dropout off, batch norm on the batch's own statistics (its running
    # averages, Keras's momentum 0.99, lag far behind after 50 steps).
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():
        log_proba = torch.log_softmax(model(images_to_tensor(x)), dim=1)
    result = score(log_proba, torch.as_tensor(y))
    assert result["accuracy"] == 1.0 and result["loss"] < 0.1, result


def test_book_presets_are_the_books_models():
    assert str(get_preset("mlp-100-sigmoid").spec) == "flatten,dense:100:sigmoid,dense:10:softmax"
    assert str(get_preset("mlp-100-dropout").spec) == "flatten,dense:100:relu,dropout:0.3,dense:10:softmax"
    assert str(get_preset("cnn-book").spec) == ("conv:32:3,maxpool,conv:64:3,maxpool,flatten,dense:100:relu,"
                                                "dropout:0.4,dense:10:softmax")
    assert get_preset("cnn-book").train == {"epochs": 20, "optimizer": "adam", "patience": 2}
