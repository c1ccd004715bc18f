"""Models as data: a declarative layer spec and the torch network it builds.

A ``ModelSpec`` is a list of layers, each a small dict such as ``{"type": "dense", "units":
200, "activation": "relu"}``. It round-trips through JSON (it is what a run folder stores in
``model.json``) and through a compact string for the command line::

    flatten,dense:200:relu,dense:10
    conv:32:3:same:relu,maxpool:2,conv:64:3:same:relu,maxpool:2,flatten,dense:100:relu,dropout:0.4,dense:10

A final ``softmax`` is accepted for fidelity with Keras code but the network always returns
logits: the loss is computed from logits (numerically safer) and probabilities come from
``softmax`` at prediction time.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

import torch
from torch import nn

from fmnist.errors import ModelError
from fmnist.models import _fused

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}
# "softmax"/"linear"/None on a layer mean "no activation module": see the module docstring.
_NO_ACTIVATION = (None, "", "linear", "softmax")

# type -> (positional fields of the compact string form, defaults)
_LAYER_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "flatten": ((), {}),
    "dense": (("units", "activation"), {"activation": None}),
    "dropout": (("rate",), {}),
    "batchnorm": ((), {}),
    "conv": (("filters", "kernel", "padding", "activation"), {"padding": "same", "activation": "relu"}),
    "maxpool": (("size",), {"size": 2}),
    "avgpool": (("size",), {"size": 2}),
    "globalavgpool": ((), {}),
    "activation": (("activation",), {}),
}
_INT_FIELDS = {"units", "filters", "kernel", "size"}


def _normalise_layer(layer: dict[str, Any]) -> dict[str, Any]:
    """Validate one layer dict and fill its defaults; raises ModelError with a one-line reason."""
    if not isinstance(layer, dict) or "type" not in layer:
        raise ModelError(f"layer {layer!r} is not a dict with a 'type'")
    kind = layer["type"]
    if kind not in _LAYER_FIELDS:
        raise ModelError(f"unknown layer type {kind!r}; known: {', '.join(_LAYER_FIELDS)}")
    fields, defaults = _LAYER_FIELDS[kind]
    out: dict[str, Any] = {"type": kind}
    unknown = set(layer) - {"type", *fields}
    if unknown:
        raise ModelError(f"layer {kind!r} has unknown field(s) {sorted(unknown)}; it takes {list(fields) or 'none'}")
    for field in fields:
        # An explicit activation of None (from "none", or a saved spec) means none, not the default.
        if field in layer and (layer[field] is not None or field == "activation"):
            value = layer[field]
        elif field in defaults:
            value = defaults[field]
        else:
            raise ModelError(f"layer {kind!r} needs {field!r} (e.g. {_example(kind)})")
        if field in _INT_FIELDS:
            whole = _whole_number(value)
            if whole is None:
                raise ModelError(f"layer {kind!r}: {field} must be a whole number, got {value!r}")
            value = whole
            if value < 1:
                raise ModelError(f"layer {kind!r}: {field} must be at least 1, got {value}")
        elif field == "rate":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ModelError(f"layer 'dropout': rate must be a number, got {value!r}") from None
            if not 0.0 <= value < 1.0:
                raise ModelError(f"layer 'dropout': rate must be in [0, 1), got {value}")
        elif field == "activation":
            if value == "none":
                value = None
            if value not in _NO_ACTIVATION and value not in ACTIVATIONS:
                raise ModelError(
                    f"layer {kind!r}: unknown activation {value!r}; known: {', '.join(ACTIVATIONS)}, softmax, linear"
                )
            if kind == "activation" and value in _NO_ACTIVATION:
                raise ModelError(f"layer 'activation' needs one of {', '.join(ACTIVATIONS)}")
        elif field == "padding":
            if value not in ("same", "valid"):
                raise ModelError(f"layer 'conv': padding must be 'same' or 'valid', got {value!r}")
        out[field] = value
    return out


def _whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (8, "8", 8.0, "8.0"), else None (8.7, "8.7", True, "abc").

    ``int()`` alone would truncate 8.7 to 8: a typo in a spec would silently build another model.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # int and numpy integers
    except TypeError:
        pass
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _example(kind: str) -> str:
    fields, _ = _LAYER_FIELDS[kind]
    sample = {"units": "200", "activation": "relu", "rate": "0.3", "filters": "32", "kernel": "3",
              "padding": "same", "size": "2"}
    return ":".join([kind, *(sample[f] for f in fields)])


def parse_layers(text: str) -> list[dict[str, Any]]:
    """Parse the compact form ``"flatten,dense:200:relu,dense:10"`` into layer dicts."""
    layers = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ModelError(f"spec {text!r} has an empty layer (two commas in a row?)")
        kind, *values = part.split(":")
        if kind not in _LAYER_FIELDS:
            raise ModelError(f"spec {text!r}: unknown layer type {kind!r}; known: {', '.join(_LAYER_FIELDS)}")
        fields, _ = _LAYER_FIELDS[kind]
        if len(values) > len(fields):
            raise ModelError(f"spec {text!r}: layer {part!r} has too many values; form: {_example(kind)}")
        layers.append(_normalise_layer({"type": kind, **dict(zip(fields, values))}))
    return layers


def format_layers(layers: list[dict[str, Any]], *, full: bool = False) -> str:
    """Inverse of :func:`parse_layers`.

    Short by default (trailing fields equal to their defaults dropped: ``conv:32:3``); with
    ``full``, every field a reader may not know the default of (``conv:32:3:same:relu``).
    """
    parts = []
    for layer in layers:
        fields, defaults = _LAYER_FIELDS[layer["type"]]
        values = [layer.get(f) for f in fields]
        # Drop trailing fields that equal their defaults so round trips stay short; a dense
        # layer's absent activation stays dropped in full too: "dense:10" reads as no activation.
        while values and fields[len(values) - 1] in defaults and values[-1] == defaults[fields[len(values) - 1]] \
                and not (full and values[-1] is not None):
            values.pop()
        parts.append(":".join([layer["type"], *("none" if v is None else str(v) for v in values)]))
    return ",".join(parts)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A network described as data.

    ``input_shape`` is the shape of one image without the batch axis, ``(28, 28)``; the
    network accepts batches shaped ``(N, 28, 28)``, ``(N, 784)`` or ``(N, 1, 28, 28)``.
    """

    layers: tuple[dict[str, Any], ...]
    num_classes: int = 10
    input_shape: tuple[int, int] = (28, 28)

    def __post_init__(self):
        layers = tuple(_normalise_layer(dict(layer)) for layer in self.layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if layers[-1]["type"] != "dense" or layers[-1]["units"] != self.num_classes:
            raise ModelError(
                f"the last layer must be dense:{self.num_classes} (one output per class), "
                f"got {format_layers([layers[-1]])}"
            )
        # Build once on the meta device so an inconsistent stack (conv after flatten, a
        # pool that shrinks the image to nothing) fails here, with the spec in the message.
        output_shapes(self)

    @classmethod
    def parse(cls, text: str, **kwargs) -> ModelSpec:
        return cls(layers=tuple(parse_layers(text)), **kwargs)

    def __str__(self) -> str:
        return format_layers(list(self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [dict(layer) for layer in self.layers], "num_classes": self.num_classes,
                "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            return cls(layers=tuple(data["layers"]), num_classes=int(data.get("num_classes", 10)),
                       input_shape=tuple(data.get("input_shape", (28, 28))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model spec is malformed ({exc!s}); expected {{'layers': [...], ...}}") from None

    @property
    def is_convolutional(self) -> bool:
        return any(layer["type"] == "conv" for layer in self.layers)


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
        x = self.adapt_input(x)
        if not self._plan.fuses or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.layers(x)  # exporters trace torch's own modules, not the compiled kernels
        return self._plan.run(self.layers, x)

    def adapt_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bring (N, 28, 28), (N, 784) or (N, 1, 28, 28) to what the first layer expects."""
        h, w = self.spec.input_shape
        if self.spec.layers[0]["type"] in ("conv", "maxpool", "avgpool", "globalavgpool", "batchnorm") \
                and self.spec.is_convolutional:
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
    """Translate each layer into its modules, inferring input sizes as Keras does."""
    groups: list[list[nn.Module]] = []
    shape: tuple[int, ...] = (1, *spec.input_shape) if spec.is_convolutional else (math.prod(spec.input_shape),)
    for layer in spec.layers:
        kind = layer["type"]
        modules: list[nn.Module] = []
        groups.append(modules)
        if kind == "flatten":
            modules.append(nn.Flatten())
            shape = (math.prod(shape),)
        elif kind == "dense":
            if len(shape) != 1:
                # Keras would apply Dense to the last axis; here a flatten is needed to be explicit.
                modules.append(nn.Flatten())
                shape = (math.prod(shape),)
            modules.append(nn.Linear(shape[0], layer["units"]))
            shape = (layer["units"],)
        elif kind == "conv":
            if len(shape) != 3:
                raise ModelError(f"layer {format_layers([layer])} needs an image input, but it follows a flat layer")
            pad = layer["kernel"] // 2 if layer["padding"] == "same" else 0
            modules.append(nn.Conv2d(shape[0], layer["filters"], layer["kernel"], padding=pad))
            size = [s + 2 * pad - layer["kernel"] + 1 for s in shape[1:]]
            if min(size) < 1:
                raise ModelError(f"layer {format_layers([layer])} shrinks the image below 1 pixel")
            shape = (layer["filters"], *size)
        elif kind in ("maxpool", "avgpool"):
            if len(shape) != 3:
                raise ModelError(f"layer {kind} needs an image input, but it follows a flat layer")
            pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            modules.append(pool(layer["size"]))
            shape = (shape[0], *(s // layer["size"] for s in shape[1:]))
            if min(shape[1:]) < 1:
                raise ModelError(f"layer {kind}:{layer['size']} shrinks the image below 1 pixel")
        elif kind == "globalavgpool":
            if len(shape) != 3:
                raise ModelError("layer globalavgpool needs an image input, but it follows a flat layer")
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            shape = (shape[0],)
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["rate"]))
        elif kind == "batchnorm":
            # Keras's BatchNormalization defaults: momentum 0.99 (torch counts 1 - that), eps 1e-3.
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            modules.append(norm(shape[0], eps=1e-3, momentum=0.01))
        if layer.get("activation") in ACTIVATIONS:
            modules.append(ACTIVATIONS[layer["activation"]]())
    return groups


def output_shapes(spec: ModelSpec) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer description, output shape without batch axis, parameter count) for each layer.

    Parameters are counted as Keras counts them: batch-norm's moving mean and variance too.
    """
    with torch.device("meta"):
        groups = _build_groups(spec)
        x = torch.empty((1, 1, *spec.input_shape) if spec.is_convolutional else (1, math.prod(spec.input_shape)))
        rows = []
        for layer, modules in zip(spec.layers, groups):
            params = 0
            for module in modules:
                x = module.eval()(x)  # eval: batch-norm cannot "train" on a batch of one
                params += sum(p.numel() for p in module.parameters())
                params += sum(b.numel() for b in module.buffers() if b.is_floating_point())
            rows.append((format_layers([layer], full=True), tuple(x.shape[1:]), params))
    return rows


def summary(spec: ModelSpec, name: str | None = None) -> str:
    """A Keras-style table: layer, output shape, parameters; then the total."""
    rows = output_shapes(spec)
    width = max(len(r[0]) for r in rows + [("Layer (type)", (), 0)]) + 2
    lines = [f'Model: "{name or "network"}"', "_" * (width + 34),
             f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>12}", "=" * (width + 34)]
    for desc, shape, params in rows:
        lines.append(f"{desc:<{width}}{str((None, *shape)):<22}{params:>12,}")
    total = sum(r[2] for r in rows)
    lines += ["=" * (width + 34), f"Total params: {total:,}", "_" * (width + 34)]
    return "\n".join(lines)


def count_parameters(spec: ModelSpec) -> int:
    return sum(r[2] for r in output_shapes(spec))
