"""The first convolution and its feature maps, found in plain and residual networks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist.evaluation.features import feature_source, first_conv, first_conv_maps
from fmnist.models import ModelSpec, Network


def _image():
    return np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def _pixels(image):
    return torch.from_numpy(image.astype(np.float32) / 255)[None, None]


def test_a_plain_networks_first_conv_and_its_activated_maps():
    torch.manual_seed(0)
    net = Network(ModelSpec.parse("conv:4:3:same:tanh,maxpool:2,conv:6:3,flatten,dense:10"))
    conv = first_conv(net)
    assert conv is net.layers[0]
    expected = torch.tanh(F.conv2d(_pixels(_image()), conv.weight, conv.bias, padding=1))[0]
    assert np.allclose(first_conv_maps(net, _image()), expected.detach().numpy(), atol=1e-6)


def test_a_residual_block_first_gives_its_first_conv_activated_after_its_batch_norm():
    torch.manual_seed(0)
    net = Network(ModelSpec.parse("residual:4,maxpool:2,globalavgpool,dense:10"))
    block = net.layers[0]
    with torch.no_grad():  # statistics a trained block would have, so batch norm is not the identity
        block.bn1.running_mean.uniform_(-0.5, 0.5)
        block.bn1.running_var.uniform_(0.5, 2.0)
    assert first_conv(net) is block.conv1
    y = F.conv2d(_pixels(_image()), block.conv1.weight, block.conv1.bias, padding=1)
    y = F.batch_norm(y, block.bn1.running_mean, block.bn1.running_var, block.bn1.weight, block.bn1.bias,
                     eps=block.bn1.eps)
    assert np.allclose(first_conv_maps(net, _image()), torch.relu(y)[0].detach().numpy(), atol=1e-5)
    # What the embedding describes: the pooled features the final dense layer reads, not pixels.
    assert feature_source(net) == "the 4 inputs of the final dense layer (penultimate layer)"


def test_a_dense_network_has_no_first_conv():
    net = Network(ModelSpec.parse("flatten,dense:10"))
    assert first_conv(net) is None
    assert feature_source(net).startswith("input pixels")
    with pytest.raises(ValueError, match="no convolutional layer"):
        first_conv_maps(net, _image())
