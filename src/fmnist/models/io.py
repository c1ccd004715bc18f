"""Saving and loading models in a form that cannot run code when loaded.

A saved model is two files in one folder: ``model.json`` (what the model is: format, family,
spec or estimator parameters, class names) and ``weights.safetensors`` (tensors only). No
pickle anywhere, so a model file from a stranger can be inspected and loaded safely; a file
that does not match its own description is refused with one line saying why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import load_file as load_torch, save_file as save_torch
from torch import nn

from fmnist._files import atomic_write, write_json
from fmnist.errors import ModelError
from fmnist.models.spec import ModelSpec, Network

MODEL_FORMAT = "fmnist-model"
MODEL_FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
# Fitted attributes of a linear scikit-learn classifier: all it needs to predict.
_LINEAR_ARRAYS = ("coef_", "intercept_", "classes_")


def read_json(path: Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no {what} here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a {what} (expected a JSON object)")
    return data


def save_model(model, folder: Path, *, name: str = "custom", class_names: tuple[str, ...] | None = None) -> Path:
    """Write ``model.json`` and ``weights.safetensors`` for a torch Network or fitted linear estimator."""
    folder = Path(folder)
    meta: dict[str, Any] = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "name": name}
    if class_names is not None:
        meta["class_names"] = list(class_names)
    if isinstance(model, Network):
        meta.update(family="torch", spec=model.spec.to_dict())
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write(folder / WEIGHTS, lambda tmp: save_torch(state, str(tmp), metadata={"format": MODEL_FORMAT}))
    elif all(hasattr(model, a) for a in _LINEAR_ARRAYS):
        meta.update(family="sklearn", estimator=type(model).__name__, params=_json_params(model.get_params()))
        arrays = {a: np.ascontiguousarray(getattr(model, a)) for a in _LINEAR_ARRAYS}
        atomic_write(folder / WEIGHTS, lambda tmp: save_numpy(arrays, str(tmp), metadata={"format": MODEL_FORMAT}))
    else:
        raise ModelError(f"cannot save a {type(model).__name__}: only fmnist networks and fitted linear models")
    write_json(folder / MODEL_JSON, meta)
    return folder


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model saved by :func:`save_model` (a run folder or a model folder).

    Returns a torch :class:`Network` in eval mode or a fitted scikit-learn estimator. Nothing
    in the files is executed: the JSON is data and the weights are plain tensors.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    meta = read_json(folder / MODEL_JSON, "fmnist model description (model.json)")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{folder / MODEL_JSON}: not an fmnist model (format is {meta.get('format')!r})")
    if meta.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ModelError(f"{folder / MODEL_JSON}: saved by a newer fmnist (format {meta['format_version']}); upgrade fmnist")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{weights}: missing; the model folder is incomplete")
    family = meta.get("family")
    try:
        if family == "torch":
            spec = ModelSpec.from_dict(meta.get("spec") or {})
            model = Network(spec)
            state = load_torch(str(weights))
            _check_state(weights, model, state)
            model.load_state_dict(state)
            return model.to(device).eval()
        if family == "sklearn":
            return _load_estimator(meta, load_numpy(str(weights)), weights)
    except SafetensorError as exc:
        raise ModelError(f"{weights}: not a valid safetensors file ({exc})") from None
    raise ModelError(f"{folder / MODEL_JSON}: unknown model family {family!r}")


def _check_state(weights: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        raise ModelError(f"{weights}: tensors do not match model.json (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape or state[key].dtype != tensor.dtype:
            raise ModelError(f"{weights}: tensor {key!r} is {tuple(state[key].shape)} {state[key].dtype}, "
                             f"model.json needs {tuple(tensor.shape)} {tensor.dtype}")
        if tensor.is_floating_point() and not torch.isfinite(state[key]).all():
            raise ModelError(f"{weights}: tensor {key!r} holds NaN or infinite values")


def _load_estimator(meta: dict[str, Any], arrays: dict[str, np.ndarray], weights: Path):
    from sklearn.linear_model import SGDClassifier

    estimators = {"SGDClassifier": SGDClassifier}
    cls = estimators.get(meta.get("estimator"))
    if cls is None:
        raise ModelError(f"{weights.parent / MODEL_JSON}: unknown estimator {meta.get('estimator')!r}")
    if set(arrays) != set(_LINEAR_ARRAYS):
        raise ModelError(f"{weights}: expected arrays {list(_LINEAR_ARRAYS)}, found {sorted(arrays)}")
    coef, intercept, classes = (arrays[a] for a in _LINEAR_ARRAYS)
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or len(classes) != coef.shape[0]:
        raise ModelError(f"{weights}: inconsistent shapes coef {coef.shape}, intercept {intercept.shape}, "
                         f"classes {classes.shape}")
    try:
        model = cls(**meta.get("params", {}))
    except TypeError as exc:
        raise ModelError(f"{weights.parent / MODEL_JSON}: bad estimator parameters ({exc})") from None
    model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
    model.n_features_in_ = coef.shape[1]
    return model
