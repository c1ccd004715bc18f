"""Models as data: a declarative layer spec, with its layers' shapes and parameter counts.

A ``ModelSpec`` is a list of layers, each a small dict such as ``{"type": "dense", "units":
200, "activation": "relu"}``. It round-trips through JSON (it is what a run folder stores in
``model.json``) and through a compact string for the command line::

    flatten,dense:200:relu,dense:10
    conv:32:3:same:relu,maxpool:2,conv:64:3:same:relu,maxpool:2,flatten,dense:100:relu,dropout:0.4,dense:10

A final ``softmax`` is accepted for fidelity with Keras code but the network always returns
logits: the loss is computed from logits (numerically safer) and probabilities come from
``softmax`` at prediction time.

Torch-free: shapes and parameter counts are worked out here by arithmetic, so listing and
summarising presets (``fmnist models``) does not import torch. The torch module a spec builds
is :class:`fmnist.models.network.Network`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

from fmnist.errors import ModelError

# The activations a layer may name (network.ACTIVATIONS maps each to its torch module).
ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "gelu")
# "softmax"/"linear"/None on a layer mean "no activation module": see the module docstring.
_NO_ACTIVATION = (None, "", "linear", "softmax")

# type -> (positional fields of the compact string form, defaults)
_LAYER_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "flatten": ((), {}),
    "dense": (("units", "activation"), {"activation": None}),
    "dropout": (("rate",), {}),
    "batchnorm": ((), {}),
    "conv": (("filters", "kernel", "padding", "activation"), {"padding": "same", "activation": "relu"}),
    # A residual block: relu(x + BN(conv(relu(BN(conv(x)))))), both convolutions "same"; the
    # shortcut is x itself, or a 1x1 convolution and batch norm where the channel count changes.
    "residual": (("filters", "kernel"), {"kernel": 3}),
    "maxpool": (("size",), {"size": 2}),
    "avgpool": (("size",), {"size": 2}),
    "globalavgpool": ((), {}),
    "activation": (("activation",), {}),
}
_INT_FIELDS = {"units", "filters", "kernel", "size"}
# Bounds far beyond any network fmnist builds (28 x 28 images; a NetClassifier reads other
# small images, or a row of features as a 1 x N image): a forged model.json must not make us
# build a network whose sizes overflow torch's integers, take a minute and gigabytes to set up
# (360,000 layers), or allocate tens of gigabytes for one image (100,000 x 100,000 pixels, on
# layers whose weights do not depend on the image's size).
MAX_PIXELS = 2**20  # per image: 1024 x 1024
MAX_WIDTH = 2**16  # units, filters and classes
MAX_LAYERS = 1000
_MAX_FIELD = {"units": MAX_WIDTH, "filters": MAX_WIDTH, "kernel": 1024, "size": 1024}
# The layers that convolve, and all those that need an image (channels, height, width) input.
CONV_LAYERS = ("conv", "residual")
IMAGE_LAYERS = (*CONV_LAYERS, "maxpool", "avgpool", "globalavgpool")
# Test-time augmentations a spec may name (ModelSpec.tta); None: none.
TTA = (None, "flip")


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
            if value > _MAX_FIELD[field]:
                raise ModelError(f"layer {kind!r}: {field} must be at most {_MAX_FIELD[field]:,}, got "
                                 f"{_number(value)}")
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
            if value not in _NO_ACTIVATION and value not in ACTIVATION_NAMES:
                raise ModelError(
                    f"layer {kind!r}: unknown activation {value!r}; known: {', '.join(ACTIVATION_NAMES)}, softmax, linear"
                )
            if kind == "activation" and value in _NO_ACTIVATION:
                raise ModelError(f"layer 'activation' needs one of {', '.join(ACTIVATION_NAMES)}")
        elif field == "padding":
            if value not in ("same", "valid"):
                raise ModelError(f"layer 'conv': padding must be 'same' or 'valid', got {value!r}")
        out[field] = value
    # The shortcut adds the block's input to its output: an even kernel would shift the map.
    if kind == "residual" and out["kernel"] % 2 == 0:
        raise ModelError(f"layer 'residual': kernel must be odd (the output keeps the input's size), "
                         f"got {out['kernel']}")
    # Padding k // 2 on every side keeps the size for an odd kernel only; an even one would grow
    # the map by a pixel where Keras's 'same' pads one side more and keeps it.
    if kind == "conv" and out["padding"] == "same" and out["kernel"] % 2 == 0:
        k = out["kernel"]
        raise ModelError(f"layer 'conv': 'same' padding needs an odd kernel, got {k} (Keras pads one side more for "
                         f"an even one, which fmnist does not); use conv:{out['filters']}:{k + 1} or "
                         f"conv:{out['filters']}:{k}:valid")
    return out


def _number(value: Any) -> str:
    """A number as a message shows it: a forged 4,000-digit int as its length."""
    if isinstance(value, int) and value.bit_length() > 64:  # str() of 4,300+ digits raises
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return f"{value:,}" if isinstance(value, int) else repr(value)


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

    ``tta`` is test-time augmentation, part of the model wherever it predicts (evaluation,
    ``predict``, the web service, exports): ``"flip"`` scores each image and its left-right
    mirror and returns the mean of the two log-probabilities. It suits data whose classes do not
    change in a mirror (garments, not digits), and a model trained with mirrored images.
    """

    layers: tuple[dict[str, Any], ...]
    num_classes: int = 10
    input_shape: tuple[int, int] = (28, 28)
    tta: str | None = None

    def __post_init__(self):
        if len(self.layers) > MAX_LAYERS:
            raise ModelError(f"{len(self.layers):,} layers; a model has at most {MAX_LAYERS:,}")
        layers = tuple(_normalise_layer(dict(layer)) for layer in self.layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if math.prod(self.input_shape) > MAX_PIXELS:
            h, w = (_number(s) for s in self.input_shape)
            raise ModelError(f"input_shape {h} x {w}: an image has at most {MAX_PIXELS:,} pixels (1024 x 1024)")
        if not 1 <= self.num_classes <= MAX_WIDTH:
            raise ModelError(f"num_classes must be from 1 to {MAX_WIDTH:,}, got {_number(self.num_classes)}")
        if self.tta not in TTA:
            raise ModelError(f"unknown test-time augmentation {self.tta!r}; known: {', '.join(map(str, TTA))}")
        if layers[-1]["type"] != "dense" or layers[-1]["units"] != self.num_classes:
            raise ModelError(
                f"the last layer must be dense:{self.num_classes} (one output per class), "
                f"got {format_layers([layers[-1]])}"
            )
        for i, layer in enumerate(layers[:-1]):
            if layer.get("activation") == "softmax":
                raise ModelError(f"layer {i + 1} ({format_layers([layer])}): softmax only ends a network, where "
                                 f"it is read as logits; choose {', '.join(ACTIVATION_NAMES)} or none here")
        # Work out every layer's shape now so an inconsistent stack (conv after flatten, a
        # pool that shrinks the image to nothing) fails here, with the spec in the message.
        layer_shapes(self)

    @classmethod
    def parse(cls, text: str, **kwargs) -> ModelSpec:
        return cls(layers=tuple(parse_layers(text)), **kwargs)

    def __str__(self) -> str:
        return format_layers(list(self.layers))

    def to_dict(self) -> dict[str, Any]:
        out = {"layers": [dict(layer) for layer in self.layers], "num_classes": self.num_classes,
               "input_shape": list(self.input_shape)}
        if self.tta:  # absent when off: specs saved before it existed read the same
            out["tta"] = self.tta
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            return cls(layers=tuple(data["layers"]), num_classes=int(data.get("num_classes", 10)),
                       input_shape=tuple(data.get("input_shape", (28, 28))), tta=data.get("tta"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model spec is malformed ({exc!s}); expected {{'layers': [...], ...}}") from None

    @property
    def is_convolutional(self) -> bool:
        return any(layer["type"] in CONV_LAYERS for layer in self.layers)

    def with_classes(self, num_classes: int) -> ModelSpec:
        """This network with ``num_classes`` outputs: its last (dense) layer that wide."""
        last = {**self.layers[-1], "units": int(num_classes)}
        return dataclasses.replace(self, layers=(*self.layers[:-1], last), num_classes=int(num_classes))

    @property
    def takes_images(self) -> bool:
        """Whether the input is an image (1, H, W), not a flat vector: any conv or pool reads one."""
        return any(layer["type"] in IMAGE_LAYERS for layer in self.layers)


def layer_shapes(spec: ModelSpec) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """(input shape, output shape, parameter count) of each layer, shapes without the batch axis.

    The network's own arithmetic (``network.Network`` builds its modules from these input
    shapes): convolutions and pools have stride 1 and stride ``size``, a dense layer after an
    image flattens it (Keras would apply Dense to the last axis; here that is explicit), and
    parameters are counted as Keras counts them, batch-norm's moving mean and variance too.
    Raises ModelError for a stack that cannot be built.
    """
    shape: tuple[int, ...] = (1, *spec.input_shape) if spec.takes_images else (math.prod(spec.input_shape),)
    rows = []
    for layer in spec.layers:
        kind, before, params = layer["type"], shape, 0
        if kind in IMAGE_LAYERS and len(shape) != 3:
            raise ModelError(f"layer {format_layers([layer])} needs an image input, but it follows a flat layer")
        if kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "dense":
            params = math.prod(shape) * layer["units"] + layer["units"]
            shape = (layer["units"],)
        elif kind == "conv":
            pad = layer["kernel"] // 2 if layer["padding"] == "same" else 0
            size = tuple(s + 2 * pad - layer["kernel"] + 1 for s in shape[1:])
            if min(size) < 1:
                raise ModelError(f"layer {format_layers([layer])} shrinks the image below 1 pixel")
            params = shape[0] * layer["filters"] * layer["kernel"] ** 2 + layer["filters"]
            shape = (layer["filters"], *size)
        elif kind == "residual":
            f, taps = layer["filters"], layer["kernel"] ** 2
            # Two convolutions and their batch norms (4 per channel, as Keras counts them), and the
            # shortcut's 1x1 convolution and batch norm when the channel count changes.
            params = (shape[0] * taps + 1) * f + (f * taps + 1) * f + 2 * 4 * f
            if shape[0] != f:
                params += (shape[0] + 1) * f + 4 * f
            shape = (f, *shape[1:])
        elif kind in ("maxpool", "avgpool"):
            shape = (shape[0], *(s // layer["size"] for s in shape[1:]))
            if min(shape[1:]) < 1:
                raise ModelError(f"layer {kind}:{layer['size']} shrinks the image below 1 pixel")
        elif kind == "globalavgpool":
            shape = (shape[0],)
        elif kind == "batchnorm":
            params = 4 * shape[0]  # scale, offset, moving mean, moving variance per channel
        rows.append((before, shape, params))
    return rows


def output_shapes(spec: ModelSpec) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer description, output shape without batch axis, parameter count) for each layer."""
    return [(format_layers([layer], full=True), out, params) for layer, (_, out, params) in zip(spec.layers, layer_shapes(spec))]


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


def __getattr__(name: str):
    # The torch side lives in network.py; these names are found here too, imported on first use.
    if name in ("Network", "ACTIVATIONS"):
        from fmnist.models import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
