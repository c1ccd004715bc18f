"""Training checkpoints as ONE safetensors file: tensors plus a JSON header, no pickle.

A checkpoint holds everything needed to continue a run bit for bit: model and optimizer
tensors, RNG states (as uint8 tensors), callbacks' state (early stopping's best weights...),
and the scalars (epoch, history, config, learning-rate groups) as JSON in the safetensors
metadata under ``"fmnist"``. One file means one atomic rename: an interruption at any moment
leaves the previous checkpoint whole, never a tensor file that disagrees with its JSON.

Nested state (``optimizer.state_dict()`` and the like) is stored by :func:`encode`: each tensor
goes to the tensor table under its dotted path and is replaced in the JSON by
``{"__tensor__": path}``; tuples and dicts with non-string keys keep their types through
``{"__tuple__": [...]}`` and ``{"__items__": [[key, value], ...]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fmnist._files import atomic_write
from fmnist.errors import TrainingError
from fmnist.models.io import write_safetensors

CHECKPOINT_FORMAT = "fmnist-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


def encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj``; its tensors are moved (CPU, contiguous) into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(decode(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {k: decode(v, tensors) for k, v in obj["__items__"]}
        return {k: decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts of tensors and JSON scalars) atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    header = encode(state, "s", tensors)
    metadata = {"format": CHECKPOINT_FORMAT, "format_version": str(CHECKPOINT_FORMAT_VERSION),
                "fmnist": json.dumps(header), "tensors_sha256": _digest(tensors)}
    path = Path(path)
    return atomic_write(path, lambda tmp: write_safetensors(save_file, tensors, tmp, path, metadata))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` back into its nested state (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint here (one is written at the end of every epoch)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise TrainingError(f"{path}: not an fmnist checkpoint (format is {meta.get('format')!r})")
            if int(meta.get("format_version", 0)) > CHECKPOINT_FORMAT_VERSION:
                raise TrainingError(f"{path}: written by a newer fmnist; upgrade fmnist to resume it")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        # Checkpoints written before the digest was recorded have none, and are read as they are.
        if "tensors_sha256" in meta and meta["tensors_sha256"] != _digest(tensors):
            raise TrainingError(f"{path}: its tensors changed after it was written (their SHA-256 differs from "
                                "the one it records: a damaged disk, or an edit); train the run again")
        return decode(json.loads(meta["fmnist"]), tensors)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint ({exc}); resume from another run folder "
                            "or train again") from None


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order.

    It lives in the file's own header, so the file stays one atomic rename; it catches a flipped
    bit in the tensors, which safetensors' format checks cannot see.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
