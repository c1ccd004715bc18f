"""What a model computes on the way to its answer: first-layer feature maps, penultimate features.

These feed the inspection figures (:func:`fmnist.plots.feature_maps`,
:func:`fmnist.plots.embedding_2d`). They read a :class:`~fmnist.models.network.Network` by
slicing its ``.layers`` (an ``nn.Sequential``) or with a forward hook, so no model needs to
expose anything for them. A scikit-learn linear model has no hidden layer: its "features"
are its input pixels, and it has no convolution.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fmnist.evaluation.metrics import as_features, images_to_tensor
from fmnist.models.network import ACTIVATIONS, Residual

__all__ = ["first_conv", "first_conv_maps", "penultimate_features", "feature_source"]


def _network_layers(model) -> nn.Sequential | None:
    layers = getattr(model, "layers", None)
    return layers if isinstance(model, nn.Module) and isinstance(layers, nn.Sequential) else None


def _first_conv_layer(layers: nn.Sequential) -> int | None:
    """Index of the first layer that is, or (a residual block) starts with, a convolution."""
    return next((i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d | Residual)), None)


def first_conv(model) -> nn.Conv2d | None:
    """The model's first ``nn.Conv2d`` (a residual block's first), or None (dense networks,
    scikit-learn models)."""
    layers = _network_layers(model)
    i = None if layers is None else _first_conv_layer(layers)
    if i is None:
        return None
    return layers[i].conv1 if isinstance(layers[i], Residual) else layers[i]


@torch.inference_mode()
def first_conv_maps(model, image: np.ndarray) -> np.ndarray:
    """The first conv layer's output for one image, after its activation: float32 (C, H, W).

    ``image``: uint8 (28, 28). The activation is included because a Keras ``Conv2D`` layer
    (and the book's 8-3 figures) shows the activated maps. Raises ValueError when the model
    has no convolution (check :func:`first_conv` first).
    """
    layers = _network_layers(model)
    i = None if layers is None else _first_conv_layer(layers)
    if i is None:
        raise ValueError(f"a {type(model).__name__} has no convolutional layer")
    block = layers[i] if isinstance(layers[i], Residual) else None
    end = i + 1
    # Keep the activation module that the spec builds right after the conv, if any.
    if block is None and end < len(layers) and isinstance(layers[end], tuple(ACTIVATIONS.values())):
        end += 1
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = model.adapt_input(images_to_tensor(np.asarray(image)[None], device))
        if block is not None:  # the block's first convolution, activated as the block does (after its batch norm)
            return torch.relu(block.bn1(block.conv1(layers[:i](x))))[0].float().cpu().numpy()
        return layers[:end](x)[0].float().cpu().numpy()
    finally:
        model.train(was_training)


def feature_source(model) -> str:
    """In words, what :func:`penultimate_features` returns for ``model`` (for figure captions)."""
    layers = _network_layers(model)
    if layers is None:
        return "input pixels (a linear model has no hidden layer)"
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if len(linears) < 2 and first_conv(model) is None:
        return "input pixels (the network's only dense layer reads them directly)"
    return f"the {linears[-1].in_features} inputs of the final dense layer (penultimate layer)"


@torch.inference_mode()
def penultimate_features(model, images: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """What the model's final dense layer reads, for each image: float32 (N, D).

    ``images``: uint8 (N, 28, 28). For a torch network this is the input of its last
    ``nn.Linear``, caught with a forward hook (after activation and dropout, in eval mode);
    for a single-layer network and for a scikit-learn linear model it is the pixels scaled
    to [0, 1], (N, 784).
    """
    layers = _network_layers(model)
    if layers is None:
        return as_features(images).astype(np.float32)
    last = [m for m in layers if isinstance(m, nn.Linear)][-1]
    caught: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, inputs, _out: caught.append(inputs[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for i in range(0, len(images), batch_size):
            model(images_to_tensor(images[i:i + batch_size], device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(caught).reshape(len(images), -1).numpy()
