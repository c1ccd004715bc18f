"""The torch network agrees with the spec's arithmetic: every layer's shape and parameter count."""

import math

import pytest
import torch
from torch import nn

from fmnist.models import get_preset, list_models
from fmnist.models.network import ACTIVATIONS, BatchNorm1d, BatchNorm2d, Network, Residual, _build_groups
from fmnist.models.spec import ModelSpec, layer_shapes

EXTRA = [
    "conv:8:4:valid:tanh,avgpool:3,batchnorm,conv:6:5:valid,globalavgpool,dense:10",
    "batchnorm,conv:5:2:valid,maxpool:3,dense:7:gelu,batchnorm,dense:10",
    "batchnorm,dense:30:sigmoid,dropout:0.5,dense:10",
    "residual:6,maxpool:2,residual:6:3,residual:8:5,flatten,dense:10",
]


@pytest.mark.parametrize("text", [n for n in list_models() if get_preset(n).spec is not None] + EXTRA)
def test_arithmetic_shapes_and_counts_match_the_built_modules(text):
    spec = get_preset(text).spec
    with torch.device("meta"):
        groups = _build_groups(spec)
        x = torch.empty((2, 1, *spec.input_shape) if spec.is_convolutional else (2, math.prod(spec.input_shape)))
        for (before, after, params), modules in zip(layer_shapes(spec), groups, strict=True):
            assert tuple(x.shape[1:]) == before
            for module in modules:
                x = module.eval()(x)
            assert tuple(x.shape[1:]) == after
            # Keras's count: parameters and the floating-point buffers (batch norm's moving statistics).
            assert params == sum(p.numel() for m in modules for p in m.parameters()) + sum(
                b.numel() for m in modules for b in m.buffers() if b.is_floating_point())


# Each layer type's modules, in order (an activation adds its module after them).
MODULES = {"flatten": [nn.Flatten], "dense": [nn.Linear], "conv": [nn.Conv2d], "maxpool": [nn.MaxPool2d],
           "avgpool": [nn.AvgPool2d], "globalavgpool": [nn.AdaptiveAvgPool2d, nn.Flatten], "dropout": [nn.Dropout],
           "batchnorm": None, "activation": [], "residual": [Residual]}


def test_every_layer_type_builds_its_modules():
    spec = ModelSpec.parse("conv:4:3:same:tanh,maxpool:2,batchnorm,residual:4,avgpool:2,dropout:0.25,conv:4:3,"
                           "globalavgpool,batchnorm,activation:gelu,dense:16:sigmoid,flatten,dense:10")
    assert {layer["type"] for layer in spec.layers} == set(MODULES)
    for layer, (before, _, _), modules in zip(spec.layers, layer_shapes(spec), _build_groups(spec), strict=True):
        own = MODULES[layer["type"]]
        if layer["type"] == "batchnorm":
            own = [BatchNorm2d if len(before) == 3 else BatchNorm1d]
        activation = [ACTIVATIONS[layer["activation"]]] if layer.get("activation") else []
        assert [type(m) for m in modules] == own + activation, layer
    assert [m.p for m in Network(spec).modules() if isinstance(m, nn.Dropout)] == [0.25]


@pytest.mark.parametrize("channels", [4, 3])
def test_a_residual_block_adds_its_input_or_the_projection_of_it(channels):
    # With its second convolution zeroed the block's branch adds nothing (batch norm in eval mode
    # with fresh statistics is the identity), so the block is relu(shortcut(x)): x itself where the
    # channel count stays, else the shortcut's 1x1 convolution.
    torch.manual_seed(0)
    block = Residual(channels, 4, 3).eval()
    torch.nn.init.zeros_(block.conv2.weight)
    torch.nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, channels, 5, 5)
    if channels == 4:
        shortcut = x
    else:  # the projection, then batch norm's eval-mode scaling by 1/sqrt(1 + epsilon)
        shortcut = torch.nn.functional.conv2d(x, block.shortcut[0].weight, block.shortcut[0].bias) / (1 + 1e-3) ** 0.5
    assert torch.allclose(block(x), torch.relu(shortcut), atol=1e-6)
    torch.manual_seed(1)
    live = Residual(channels, 4, 3).eval()
    assert not torch.allclose(live(x), torch.relu(live.shortcut(x)))  # the branch counts once trained


def test_batch_norm_starts_from_the_batches_mean_then_decays_as_keras_does():
    torch.manual_seed(0)
    norm = BatchNorm1d(3)
    assert (norm.eps, norm.momentum) == (1e-3, 0.01)
    batches = [torch.randn(8, 3) * 0.01 + 5 for _ in range(105)]
    for t, x in enumerate(batches, 1):
        before_mean, before_var = norm.running_mean.clone(), norm.running_var.clone()
        torch.testing.assert_close(norm(x), (x - x.mean(0)) / (x.var(0, unbiased=False) + 1e-3).sqrt(),
                                   rtol=1e-3, atol=1e-4)  # a batch is scored with its own statistics
        if t <= 100:  # the plain mean of every batch so far: nothing left of the start (0, 1)
            seen = torch.stack(batches[:t])
            torch.testing.assert_close(norm.running_mean, seen.mean(1).mean(0))
            torch.testing.assert_close(norm.running_var, seen.var(1).mean(0))
        else:  # Keras's moving average, momentum 0.99
            torch.testing.assert_close(norm.running_mean, 0.99 * before_mean + 0.01 * x.mean(0))
            torch.testing.assert_close(norm.running_var, 0.99 * before_var + 0.01 * x.var(0))
    # Scoring does not move the statistics.
    norm.eval()
    norm(batches[0])
    assert norm.num_batches_tracked == 105


def test_batch_norm_says_its_step_is_static_once_its_rate_reaches_the_floor():
    """What a CUDA graph may record: from the 100th training step on, each updates the statistics alike."""
    norm, x = BatchNorm1d(3), torch.randn(8, 3)
    static = []
    for _ in range(101):
        static.append(norm.step_is_static())  # about the step that comes next
        norm(x)
    assert static == [False] * 99 + [True] * 2
    fresh = BatchNorm1d(3)
    fresh.load_state_dict(norm.state_dict())  # a loaded model counts the batches its statistics saw
    assert fresh.step_is_static()
    assert BatchNorm1d(3).eval().step_is_static()  # scoring moves nothing


def test_batch_norm_statistics_continue_where_a_saved_model_left_off():
    torch.manual_seed(0)
    batches = [torch.randn(4, 2, 3, 3) + i for i in range(6)]
    straight, resumed = BatchNorm2d(2), BatchNorm2d(2)
    for x in batches:
        straight(x)
    for x in batches[:3]:
        resumed(x)
    resumed.load_state_dict(BatchNorm2d(2).state_dict())  # a fresh start forgets the batches seen
    for x in batches[:3]:
        resumed(x)
    fresh = BatchNorm2d(2)
    fresh.load_state_dict(resumed.state_dict())
    for x in batches[3:]:
        fresh(x)
    torch.testing.assert_close(fresh.running_mean, straight.running_mean)
    torch.testing.assert_close(fresh.running_var, straight.running_var)
    resumed.reset_running_stats()
    for x in batches:
        resumed(x)
    torch.testing.assert_close(resumed.running_var, straight.running_var)


def test_odd_sizes_round_down_as_torch_does():
    spec = ModelSpec.parse("conv:3:2:valid,maxpool:2,conv:3:4:valid,avgpool:2,flatten,dense:10")
    # 28 -> 27 (even kernel, no padding) -> 13 -> 10 -> 5
    assert [after for _, after, _ in layer_shapes(spec)] == [(3, 27, 27), (3, 13, 13), (3, 10, 10), (3, 5, 5),
                                                            (75,), (10,)]


@pytest.mark.parametrize("text", ["conv:4:3,maxpool:2,batchnorm,flatten,dropout:0.3,dense:10",
                                  "flatten,dense:16:relu,dense:10"])
def test_test_time_flip_averages_the_log_probabilities_of_the_image_and_its_mirror(text):
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(text, tta="flip"))
    x = torch.rand(5, 28, 28)
    model.eval()
    with torch.no_grad():
        expected = (torch.log_softmax(model.stack(x), 1) + torch.log_softmax(model.stack(x.flip(-1)), 1)) / 2
        torch.testing.assert_close(model(x), expected)
        # The same for every input shape the network accepts, and a mirror is predicted alike.
        torch.testing.assert_close(model(x.reshape(5, 784)), expected)
        torch.testing.assert_close(model(x.unsqueeze(1)), expected)
        torch.testing.assert_close(model(x.flip(-1)), expected)
        assert not torch.allclose(model.stack(x), model.stack(x.flip(-1)))
    # Training steps see one view: augmentation supplies the mirrors.
    model.train()
    torch.manual_seed(1)
    train_out = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(train_out, model.stack(x))
