"""The torch network agrees with the spec's arithmetic: every layer's shape and parameter count."""

import math

import pytest
import torch

from fmnist.models import get_preset, list_models
from fmnist.models.network import _build_groups
from fmnist.models.spec import ModelSpec, layer_shapes

EXTRA = [
    "conv:8:4:same:tanh,avgpool:3,batchnorm,conv:6:5:valid,globalavgpool,dense:10",
    "batchnorm,conv:5:2:valid,maxpool:3,dense:7:gelu,batchnorm,dense:10",
    "batchnorm,dense:30:sigmoid,dropout:0.5,dense:10",
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


def test_odd_sizes_round_down_as_torch_does():
    spec = ModelSpec.parse("conv:3:2:same,maxpool:2,conv:3:4:valid,avgpool:2,flatten,dense:10")
    # 28 -> 29 (even kernel, padding 1 each side) -> 14 -> 11 -> 5
    assert [after for _, after, _ in layer_shapes(spec)] == [(3, 29, 29), (3, 14, 14), (3, 11, 11), (3, 5, 5),
                                                            (75,), (10,)]
