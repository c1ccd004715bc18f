import json

import pytest
import torch

from fmnist.errors import ModelError
from fmnist.models import ModelSpec, Network, count_parameters, summary


def test_parse_and_format_round_trip():
    text = "conv:32:3,maxpool:2,conv:64:3:valid:tanh,flatten,dense:100:relu,dropout:0.4,batchnorm,dense:10"
    spec = ModelSpec.parse(text)
    assert ModelSpec.parse(str(spec)) == spec
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 784), (4, 1, 28, 28)])
@pytest.mark.parametrize("text", ["flatten,dense:10", "dense:50:gelu,dense:10:softmax",
                                  "conv:8:3,maxpool:2,globalavgpool,dense:10"])
def test_accepts_every_input_layout(text, shape):
    assert Network(ModelSpec.parse(text))(torch.zeros(shape)).shape == (4, 10)


def test_keras_parameter_counts():
    # Keras reports 79,510 for Dense(100, sigmoid) + Dense(10) on 784 inputs (the book's 7-2).
    assert count_parameters(ModelSpec.parse("flatten,dense:100:sigmoid,dense:10")) == 79_510
    book_cnn = "conv:32:3,maxpool:2,conv:64:3,maxpool:2,flatten,dense:100:relu,dropout:0.4,dense:10"
    # Keras's model.summary() for the book's 8-2 CNN: 320 + 18,496 + 313,700 + 1,010.
    assert count_parameters(ModelSpec.parse(book_cnn)) == 333_526
    text = summary(ModelSpec.parse(book_cnn), "cnn")
    assert "(None, 7, 7, 64)" not in text and "(None, 64, 7, 7)" in text and "Total params: 333,526" in text


def test_glorot_uniform_and_zero_bias():
    torch.manual_seed(0)
    net = Network(ModelSpec.parse("flatten,dense:200:relu,dense:10"))
    w = net.layers[1].weight
    limit = (6 / (784 + 200)) ** 0.5
    assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit
    assert torch.count_nonzero(net.layers[1].bias) == 0


@pytest.mark.parametrize("text, fragment", [
    ("", "empty layer"),
    ("dense:10,,dense:10", "empty layer"),
    ("flatten,dense:abc", "whole number"),
    ("flatten,dense:0", "at least 1"),
    ("flatten,dense:10:swish", "unknown activation"),
    ("flatten,dropout:1.5,dense:10", "rate"),
    ("flatten,warp:3,dense:10", "unknown layer type"),
    ("flatten,dense:20", "last layer must be dense:10"),
    ("flatten,conv:8:3,dense:10", "needs an image input"),
    ("conv:8:3:valid,maxpool:2,maxpool:2,maxpool:2,maxpool:2,maxpool:2,dense:10", "below 1 pixel"),
    ("flatten,dense:10:relu:extra", "too many values"),
])
def test_bad_specs_fail_with_a_reason(text, fragment):
    with pytest.raises(ModelError, match=fragment):
        ModelSpec.parse(text)
