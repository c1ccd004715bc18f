"""The torch network a :class:`~fmnist.models.spec.ModelSpec` builds."""

from __future__ import annotations

import math

import torch
from torch import nn

from fmnist.models import _fused
from fmnist.models.spec import IMAGE_LAYERS, ModelSpec, layer_shapes

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


class _WarmStart:
    """Keras's BatchNormalization (momentum 0.99, eps 1e-3), whose moving statistics start as the
    plain mean of the batches seen so far rather than decaying from mean 0 and variance 1.

    With Keras's start, 0.99**t of that initial variance is still in the estimate after t steps:
    2% after 375 steps, while a normalised layer's true variance can be 1e-4, so a model scored
    after an epoch or two predicts near chance though it trains well. Averaging the first 100
    batches (rate 1/t, which meets 0.01 at t = 100) gives the same estimate from then on as
    decaying from a start that matched the data; the initial values are gone by the end of any
    run long enough to matter, so long runs score as Keras's do.
    """

    _rate = 0.01  # 1 - Keras's momentum: the moving average's weight on each new batch

    _seen: int | None = None  # num_batches_tracked, counted here too so a step does not read the device

    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-3, momentum=self._rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            if self._seen is None:
                self._seen = int(self.num_batches_tracked)
            self._seen += 1
            self.momentum = max(self._rate, 1.0 / self._seen)
        return super().forward(x)

    def step_is_static(self) -> bool:
        """Whether every later training step updates the statistics as the next one will (the
        rate has reached its floor): a CUDA graph records one step and replays it unchanged."""
        if not (self.training and self.track_running_stats):
            return True
        seen = self._seen if self._seen is not None else int(self.num_batches_tracked)
        return 1.0 / (seen + 1) <= self._rate

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self._seen = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._seen = None  # a resumed run continues from the loaded count
        return super()._load_from_state_dict(*args, **kwargs)


class BatchNorm1d(_WarmStart, nn.BatchNorm1d):
    pass


class BatchNorm2d(_WarmStart, nn.BatchNorm2d):
    pass


class Residual(nn.Module):
    """``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``: the basic block of He et al.'s ResNets
    (stride 1: the pools between blocks shrink the map). The shortcut is the identity, or a 1x1
    convolution and batch norm where the block changes the channel count."""

    def __init__(self, channels: int, filters: int, kernel: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, filters, kernel, padding=kernel // 2)
        self.bn1 = BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, kernel, padding=kernel // 2)
        self.bn2 = BatchNorm2d(filters)
        self.shortcut = nn.Sequential(nn.Conv2d(channels, filters, 1), BatchNorm2d(filters)) \
            if channels != filters else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_convs(x, _plain_conv)

    def forward_convs(self, x: torch.Tensor, conv) -> torch.Tensor:
        """``forward`` with each convolution ``m`` computed as ``conv(x, m)`` (``Network``'s plan
        passes its compiled 3x3 convolutions)."""
        y = torch.relu(self.bn1(conv(x, self.conv1)))
        return torch.relu(self.shortcut(x) + self.bn2(conv(y, self.conv2)))


def _plain_conv(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    return conv(x)


class Network(nn.Module):
    """The torch module a :class:`ModelSpec` builds. ``forward`` returns logits (N, num_classes)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.layers = nn.Sequential(*(m for group in _build_groups(spec) for m in group))
        # Conv -> ReLU -> 2x2 max-pool runs as compiled nodes on the CPU (models/_fused.py: the
        # same numbers, with a fraction of the memory traffic of the separate modules).
        self._plan = _fused.Plan(list(self.layers))
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.stack(x)
        if self.spec.tta == "flip" and not self.training:
            # Training sees mirrored images through augmentation; a prediction averages the two
            # views' log-probabilities (a valid set of logits: softmax gives their normalised
            # geometric mean).
            mirrored = self.stack(x.reshape(x.shape[0], *self.spec.input_shape).flip(-1))
            return (torch.log_softmax(logits.float(), 1) + torch.log_softmax(mirrored.float(), 1)) / 2
        return logits

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """The layers' logits for one view of the images (no test-time augmentation)."""
        x = self.adapt_input(x)
        if not self._plan.pays(x) or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.layers(x)  # exporters trace torch's own modules, not the compiled kernels
        return self._plan.run(self.layers, x)

    def adapt_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bring (N, 28, 28), (N, 784) or (N, 1, 28, 28) to what the first layer expects."""
        h, w = self.spec.input_shape
        if self.spec.layers[0]["type"] in (*IMAGE_LAYERS, "batchnorm") and self.spec.takes_images:
            # Channels-last (NHWC) strides: with one channel this is the same memory, no copy, and
            # every conv and pool after it keeps the layout. oneDNN's NHWC pooling is vectorised
            # over channels (max-pool 5-10x faster than NCHW on this CPU) and its convolutions
            # skip the NCHW<->blocked reorders; the weights stay in the default layout.
            return x.reshape(x.shape[0], h * w).contiguous().as_strided((x.shape[0], 1, h, w), (h * w, 1, w, 1))
        if x.dim() != 2:
            return x.reshape(x.shape[0], -1)
        return x

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Keras's defaults: Glorot-uniform kernels and zero biases (not PyTorch's Kaiming)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.reset_parameters()


def _build_groups(spec: ModelSpec) -> list[list[nn.Module]]:
    """Translate each layer into its modules, with the input sizes ``layer_shapes`` inferred."""
    groups: list[list[nn.Module]] = []
    for layer, (shape, _, _) in zip(spec.layers, layer_shapes(spec)):
        kind = layer["type"]
        modules: list[nn.Module] = []
        groups.append(modules)
        if kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "dense":
            if len(shape) != 1:
                modules.append(nn.Flatten())
            modules.append(nn.Linear(math.prod(shape), layer["units"]))
        elif kind == "conv":
            pad = layer["kernel"] // 2 if layer["padding"] == "same" else 0
            modules.append(nn.Conv2d(shape[0], layer["filters"], layer["kernel"], padding=pad))
        elif kind == "residual":
            modules.append(Residual(shape[0], layer["filters"], layer["kernel"]))
        elif kind in ("maxpool", "avgpool"):
            pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            modules.append(pool(layer["size"]))
        elif kind == "globalavgpool":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["rate"]))
        elif kind == "batchnorm":
            norm = BatchNorm2d if len(shape) == 3 else BatchNorm1d
            modules.append(norm(shape[0]))
        if layer.get("activation") in ACTIVATIONS:
            modules.append(ACTIVATIONS[layer["activation"]]())
    return groups
