import json

import pytest
import torch

from fmnist.errors import ModelError
from fmnist.models import ModelSpec, Network, count_parameters, summary
from fmnist.models.spec import _normalise_layer


def test_parse_and_format_round_trip():
    text = "conv:32:3,maxpool:2,residual:48,residual:48:5,conv:64:3:valid:tanh,flatten,dense:100:relu,dropout:0.4," \
           "batchnorm,dense:10"
    spec = ModelSpec.parse(text)
    assert ModelSpec.parse(str(spec)) == spec
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 784), (4, 1, 28, 28)])
@pytest.mark.parametrize("text", ["flatten,dense:10", "dense:50:gelu,dense:10:softmax",
                                  "conv:8:3,maxpool:2,globalavgpool,dense:10",
                                  "maxpool:2,flatten,dense:10", "avgpool:2,dense:10"])  # a pool reads the image too
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
    ("residual:8:2,flatten,dense:10", "kernel must be odd"),
    ("conv:8:4,flatten,dense:10", "'same' padding needs an odd kernel, got 4"),
    ("flatten,residual:8,dense:10", "needs an image input"),
])
def test_bad_specs_fail_with_a_reason(text, fragment):
    with pytest.raises(ModelError, match=fragment):
        ModelSpec.parse(text)


def test_an_even_kernel_with_valid_padding_is_built_as_its_shapes_say():
    from fmnist.models.spec import layer_shapes

    spec = ModelSpec.parse("conv:4:4:valid,conv:4:3,flatten,dense:10")
    assert layer_shapes(spec)[0][1] == (4, 25, 25)
    assert tuple(Network(spec).layers[0](torch.zeros(1, 1, 28, 28)).shape[1:]) == (4, 25, 25)


def test_explicit_no_activation_survives_a_round_trip():
    spec = ModelSpec.parse("conv:8:3:same:none,batchnorm,activation:relu,flatten,dense:10")
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.layers[0]["activation"] is None
    assert [type(m).__name__ for m in Network(again).layers][:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert ModelSpec.parse("conv:8:3,flatten,dense:10").layers[0]["activation"] == "relu"  # the default


def test_conv_input_is_channels_last_and_matches_a_plain_conv():
    torch.manual_seed(0)
    net = Network(ModelSpec.parse("conv:4:3,maxpool:2,flatten,dense:10"))
    x = torch.rand(6, 28, 28)
    adapted = net.adapt_input(x)
    # With one channel both layouts hold (N, 1, H, W) as the same memory; what tells convs and
    # pools to stay NHWC is the channel stride of 1 (NCHW's would be H * W).
    assert adapted.shape == (6, 1, 28, 28) and adapted.stride() == (784, 1, 28, 1)
    assert net.layers[0](adapted).is_contiguous(memory_format=torch.channels_last)
    # Same pixels as the plain NCHW view, also from a non-contiguous (strided) batch.
    wide = torch.rand(6, 28, 56)[:, :, ::2]
    assert torch.equal(net.adapt_input(wide), wide.reshape(6, 1, 28, 28))
    conv, pool = net.layers[0], net.layers[2]
    reference = net.layers[3:](pool(torch.relu(torch.nn.functional.conv2d(x.reshape(6, 1, 28, 28), conv.weight,
                                                                          conv.bias, padding=1))))
    torch.testing.assert_close(net(x), reference)


@pytest.mark.parametrize("layer, field", [
    ({"type": "dense", "units": 8.7}, "units"),
    ({"type": "dense", "units": "8.7"}, "units"),
    ({"type": "dense", "units": True}, "units"),
    ({"type": "conv", "filters": 8, "kernel": 2.5}, "kernel"),
    ({"type": "conv", "filters": "8.5", "kernel": 3}, "filters"),
    ({"type": "maxpool", "size": 1.5}, "size"),
])
def test_integer_fields_refuse_fractions(layer, field):
    """int() would truncate 8.7 to 8 and build another model than the spec says."""
    with pytest.raises(ModelError, match=f"{field} must be a whole number, got {layer[field]!r}") as info:
        _normalise_layer(layer)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("units", [8, "8", 8.0, "8.0", " 8 "])
def test_integer_fields_accept_whole_numbers(units):
    layer = _normalise_layer({"type": "dense", "units": units})
    assert layer["units"] == 8 and type(layer["units"]) is int


def test_compact_form_refuses_a_fraction():
    with pytest.raises(ModelError, match="units must be a whole number, got '8.7'"):
        ModelSpec.parse("flatten,dense:8.7:relu,dense:10")
    with pytest.raises(ModelError, match="units must be a whole number"):
        ModelSpec.from_dict({"layers": [{"type": "flatten"}, {"type": "dense", "units": 8.7}, {"type": "dense",
                                                                                               "units": 10}]})


def test_test_time_augmentation_round_trips_and_unknown_is_refused():
    spec = ModelSpec.parse("flatten,dense:10", tta="flip")
    assert ModelSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["tta"] == "flip"
    assert "tta" not in ModelSpec.parse("flatten,dense:10").to_dict()  # older readers see what they know
    assert ModelSpec.from_dict(ModelSpec.parse("flatten,dense:10").to_dict()).tta is None
    with pytest.raises(ModelError, match="test-time augmentation 'rotate'"):
        ModelSpec.parse("flatten,dense:10", tta="rotate")
