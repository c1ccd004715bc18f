"""Saving and loading models in a form that cannot run code when loaded.

A saved model is two files in one folder: ``model.json`` (what the model is: format, family,
spec or estimator parameters, class names; for a :class:`~fmnist.estimators.NetClassifier`
also its parameters and labels, see ``NetClassifier.load``) and ``weights.safetensors``
(tensors only). No pickle anywhere, so a model file from a stranger can be inspected and
loaded safely; a file that does not match its own description is refused with one line
saying why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from fmnist._files import atomic_write_all, replaced_note, work_in
from fmnist.errors import ModelError, OutputExistsError
from fmnist.models.network import Network
from fmnist.models.spec import ModelSpec

MODEL_FORMAT = "fmnist-model"
MODEL_FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
# Fitted attributes of a linear scikit-learn classifier: all it needs to predict.
_LINEAR_ARRAYS = ("coef_", "intercept_", "classes_")
# Bytes per element of each safetensors dtype: lets the header be checked against the file
# size before a single tensor is read.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_TORCH_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
# Our headers are a few kB; anything beyond this is not one of our files (and must not be
# read into memory because a header says so).
_MAX_HEADER_BYTES = 16 * 2**20
# How files that are not safetensors start: pickle (protocol 2+), zip (torch.save since 1.6).
_FOREIGN_MAGIC = {b"\x80": "a pickle file", b"PK\x03\x04": "a zip archive (torch.save writes these)"}
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".h5", ".keras")


def write_safetensors(save, tensors: dict[str, Any], tmp: Path, path: Path, metadata: dict[str, str]) -> None:
    """``save(tensors, tmp, metadata=metadata)`` (safetensors' ``save_file``), a failed write raised
    as the OSError it is, naming ``path``, the file being written.

    safetensors reports a full disk as ``SafetensorError: Error while serializing: I/O error: No
    space left on device (os error 28)``, which is no OSError: whoever handles a failed write
    (the command line says which file, in one line) would see a bug's traceback instead.
    """
    try:
        save(tensors, str(tmp), metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"I/O error: .*\(os error (\d+)\)", str(exc))
        if code is None:  # not the disk: a bug in what was given to save
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), str(path)) from None


def read_json(path: Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no {what} here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack, as only a forged file is.
        raise ModelError(f"{path}: not a readable {what} ({exc})") from None
    except ValueError:  # Python reads no int of more than 4,300 digits (its advice is not for a user)
        raise ModelError(f"{path}: not a readable {what} (it holds a number of more than 4,300 digits, as "
                         "only a damaged or forged file does)") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a {what} (expected a JSON object)")
    return data


def save_model(model, folder: Path, *, name: str = "custom", class_names: tuple[str, ...] | None = None,
               overwrite: bool = False) -> Path:
    """Write ``model.json`` and ``weights.safetensors`` into ``folder``; returns ``folder``.

    ``model`` is a torch :class:`Network`, a fitted linear scikit-learn classifier, or a fitted
    :class:`~fmnist.estimators.NetClassifier` (saved as its network, ``classes_`` as the class
    names, plus what :meth:`NetClassifier.load <fmnist.estimators.NetClassifier.load>` needs to
    give the estimator back: its parameters and its labels with their type). Each file is
    written atomically. A folder that holds a saved model already is refused
    (:class:`~fmnist.errors.OutputExistsError`) unless ``overwrite``; one that holds another
    command's work (a run, a comparison, an audit) even then: the run's record and scores would
    go on describing the model that was replaced.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder}: is a file, and a model is saved as a folder (model.json and its "
                                "weights); name a folder")
    found = work_in(folder) if folder.is_dir() else None
    if found:
        raise OutputExistsError(f"{folder}: holds {found[0]} ({found[1]}), which would go on describing the "
                                "model it held; save the model into another folder")
    if not overwrite and ((folder / MODEL_JSON).exists() or (folder / WEIGHTS).exists()):
        raise OutputExistsError(f"{folder}: already holds a saved model; pass overwrite=True to replace it, or "
                                "choose another folder")
    classifier = None
    if isinstance(getattr(model, "model_", None), Network):
        # A fitted NetClassifier: its network, with its labels (classes_) as the class names.
        if class_names is None:
            class_names = tuple(str(c) for c in model.classes_)
        classifier = _net_classifier_meta(model)
        model = model.model_
    elif class_names is None and not isinstance(model, Network):
        labels = np.asarray(getattr(model, "classes_", []))
        if labels.tolist() != list(range(len(labels))):  # named by its labels (3 and 7), not as classes 0 and 1
            class_names = tuple(str(c) for c in labels.tolist())
    if isinstance(class_names, str):  # "abcdefghij" would be ten one-letter names
        raise ModelError(f"class_names={class_names!r}: a list of names, one per class, not one string")
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        n_out = model.spec.num_classes if isinstance(model, Network) else len(getattr(model, "classes_", ()))
        if len(class_names) != n_out:
            raise ModelError(f"{len(class_names)} class names for a model with {n_out} outputs")
    meta: dict[str, Any] = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "name": name}
    if class_names is not None:
        meta["class_names"] = list(class_names)
    if classifier is not None:
        meta["net_classifier"] = classifier
    if isinstance(model, Network):
        meta.update(family="torch", spec=model.spec.to_dict())
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

        def save_weights(tmp: Path) -> None:
            write_safetensors(save_torch, state, tmp, folder / WEIGHTS, {"format": MODEL_FORMAT})
    elif all(hasattr(model, a) for a in _LINEAR_ARRAYS):
        _check_loadable_linear(model)
        meta.update(family="sklearn", estimator=type(model).__name__, params=_json_params(model.get_params()))
        arrays = {a: np.ascontiguousarray(getattr(model, a)) for a in _LINEAR_ARRAYS}

        def save_weights(tmp: Path) -> None:
            write_safetensors(save_numpy, arrays, tmp, folder / WEIGHTS, {"format": MODEL_FORMAT})
    else:
        raise ModelError(f"cannot save a {type(model).__name__}: only fmnist networks and fitted linear models")
    try:
        json.dumps(meta)  # before anything is written: a value JSON cannot hold fails here
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot save this model's description as JSON ({exc}); pass plain numbers and "
                         "text as its parameters") from None

    def save_meta(tmp: Path) -> None:
        # The weights' digest, checked on load: a flipped byte inside a tensor keeps the file's
        # structure, and every other check, intact.
        tmp.write_text(json.dumps({**meta, "weights_sha256": digest[0]}, indent=2) + "\n")

    digest: list[str] = []
    # Both files are written before either takes its name: replacing a saved model never leaves
    # new weights beside the old model.json, or the other way round.
    atomic_write_all([(folder / WEIGHTS, lambda tmp: (save_weights(tmp), digest.append(_sha256(tmp)))),
                      (folder / MODEL_JSON, save_meta)])
    return folder


def _check_loadable_linear(model) -> None:
    """Refuse, before writing, a linear model that :func:`load_model` would refuse to read back."""
    name = type(model).__name__
    if name not in _ESTIMATORS:
        raise ModelError(f"cannot save a {name}: the linear models fmnist saves are {', '.join(_ESTIMATORS)} "
                         "(a network trains on any labels: fmnist.NetClassifier)")
    if not hasattr(model, "predict_proba"):
        raise ModelError(f"cannot save this {name}: its loss {model.get_params().get('loss')!r} gives no "
                         "probabilities, which every fmnist command reads; train it with loss='log_loss' or "
                         "'modified_huber'")
    coef, classes = np.asarray(model.coef_), np.asarray(model.classes_)
    if coef.ndim != 2 or coef.shape[1] != 28 * 28:
        raise ModelError(f"cannot save this {name}: it takes {coef.shape[-1]} features, and a model of 28x28 "
                         "images takes 784")
    if classes.dtype.kind not in "iuf":
        raise ModelError(f"cannot save this {name}: its labels are {classes.dtype} ({classes[:3].tolist()}...), "
                         "and a saved linear model's labels are numbers; train it on class indices and pass "
                         "the names as class_names=")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_digest(meta: dict[str, Any], weights: Path) -> None:
    """The weights are the bytes model.json recorded when both were saved (a model saved before
    the digest was recorded has none to check)."""
    expected = meta.get("weights_sha256")
    if expected is not None and _sha256(weights) != expected:
        raise ModelError(f"{weights}: its SHA-256 is not the one model.json recorded when the model was saved: "
                         "the file has changed since (damaged, or edited); restore it, or train the model again")


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters JSON holds as they are: numpy's numbers (a grid from np.arange) as Python's."""
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    return {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}


# The linear estimators a saved model may name (scikit-learn's, in sklearn.linear_model).
_ESTIMATORS = ("SGDClassifier",)

# Label dtypes whose values JSON keeps exactly (bool, ints, floats, text): what a classifier's
# classes_ may be restored from. Bytes or arbitrary objects are saved as class names only.
_LABEL_KINDS = "biufU"


def _net_classifier_meta(clf) -> dict[str, Any] | None:
    """A fitted NetClassifier's parameters, labels (with their dtype) and training record, as JSON.

    None when its labels cannot round-trip through JSON (bytes, objects): the network and its
    class names are saved all the same.
    """
    classes = np.asarray(clf.classes_)
    text_objects = classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes)
    if classes.dtype.kind not in _LABEL_KINDS and not text_objects:
        return None
    meta: dict[str, Any] = {"params": _json_params(clf.get_params()), "classes": classes.tolist(),
                            "classes_dtype": classes.dtype.str, "n_features_in": int(clf.n_features_in_),
                            "config": clf.config_.to_dict(), "history": list(clf.history_)}
    if hasattr(clf, "feature_names_in_"):
        meta["feature_names_in"] = [str(n) for n in clf.feature_names_in_]
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model saved by :func:`save_model` from its folder (a run folder works too).

    ``path`` is the folder, or its ``model.json`` / ``weights.safetensors``. Returns a torch
    :class:`Network` in eval mode (input float (N, 28, 28) in [0, 1], output logits (N, C)) or a
    fitted scikit-learn estimator. Nothing in the files is executed: the JSON is data, the
    weights are plain tensors, and both are checked against each other before use; a file that
    is foreign, truncated, tampered with or inconsistent raises :class:`ModelError` (one line).

    >>> model = fmnist.load_model("runs/mlp-200")
    """
    folder = _model_folder(Path(path))
    meta = model_info(folder)
    weights = folder / WEIGHTS
    header = read_safetensors_header(weights)
    if meta["family"] == "torch":
        spec = _spec_from(meta, folder)
        # Shapes first, on the meta device (no memory): a model.json asking for a billion units
        # must be refused by comparison with the file, not by running out of memory.
        with torch.device("meta"):
            expected = {k: (tuple(v.shape), _TORCH_DTYPES.get(v.dtype, str(v.dtype)))
                        for k, v in Network(spec).state_dict().items()}
        _check_header(weights, header, expected)
        model = Network(spec)
        state = _load_tensors(weights, load_torch)
        _check_finite(weights, {k: v for k, v in state.items() if v.is_floating_point()})
        _check_digest(meta, weights)
        model.load_state_dict(state)
        _check_outputs(model.eval(), folder)
        return model.to(device)
    model = _load_estimator(meta, header, weights)
    _check_digest(meta, weights)
    _check_outputs(model, folder)
    return model


def _check_outputs(model, folder: Path) -> None:
    """Refuse a model whose outputs are not numbers on :func:`~fmnist.evaluation.metrics.probe_images`
    (noise, blank, white, bright shapes on black), those an export is checked on.

    Finite weights pass every check of the files and can still overflow (all near float32's
    limit: inf - inf in the first layer, NaN for every image); refused here, the folder is named
    and nothing downstream writes NaN as a probability. Scoring real images checks them again.
    """
    from fmnist.evaluation.metrics import _log_proba, check_numbers, probe_images

    probes = probe_images(model.spec.input_shape if isinstance(model, Network) else (28, 28))
    with np.errstate(invalid="ignore", over="ignore"):
        log_proba, _ = _log_proba(model, probes, check=False)
    check_numbers(log_proba, str(folder), images="images tried on loading (noise, blank, white, shapes)")


def _model_folder(path: Path) -> Path:
    """The folder holding model.json, or a one-line refusal saying what ``path`` is instead."""
    if not path.exists() and not path.is_symlink():
        raise ModelError(f"{path}: no such file or folder; pass a model folder (model.json + {WEIGHTS}) "
                         "or a run folder written by 'fmnist train'")
    if path.name in (MODEL_JSON, WEIGHTS) and not path.is_dir():
        path = path.parent
    elif path.is_file():
        if path.suffix.lower() in _PICKLE_SUFFIXES or _sniff(path):
            raise ModelError(f"{path}: a pickle-based model file; fmnist never loads those (unpickling can run "
                             f"code). Load a folder with model.json + {WEIGHTS} instead")
        if path.suffix.lower() == ".onnx":
            raise ModelError(f"{path}: an ONNX export; run it with onnxruntime, or load the run folder it came from")
        if (path.parent / MODEL_JSON).is_file():  # a run's checkpoint, say: its model is the folder's
            raise ModelError(f"{path}: not a model but a file of the model folder {path.parent}; pass that folder")
        raise ModelError(f"{path}: not an fmnist model; pass the folder holding model.json and {WEIGHTS}")
    elif not path.is_dir():
        raise ModelError(f"{path}: neither a folder nor a regular file; pass a model folder (model.json + "
                         f"{WEIGHTS}) or a run folder written by 'fmnist train'")
    _check_regular(path)
    if not (path / MODEL_JSON).is_file():
        if (path / WEIGHTS).exists():
            raise ModelError(f"{path / MODEL_JSON}: missing, so the weights cannot be interpreted; the model "
                             "folder is incomplete (copy model.json along with the weights)")
        killed = replaced_note(path)
        if killed:  # a run folder whose replacement was killed before it wrote its model
            raise ModelError(f"{path}: no model yet (no {MODEL_JSON}){killed}")
        raise ModelError(f"{path}: not an fmnist model folder (no {MODEL_JSON}); pass a folder written by "
                         "fmnist.save_model or 'fmnist train'")
    return path


def _check_regular(folder: Path) -> None:
    """Refuse a model.json or weights file that is there but is no plain file (a device such as
    /dev/zero, a FIFO, a folder, a link to itself or to nothing), before anything opens it:
    reading /dev/zero or a FIFO would never end."""
    for path in (folder / MODEL_JSON, folder / WEIGHTS):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if not path.is_symlink():
                continue  # absent: the callers say what is missing
            kind = "a link to nothing"
        except OSError as exc:  # a link loop: "Too many levels of symbolic links"
            kind = f"a link that cannot be followed: {exc.strerror}"
        else:
            if stat.S_ISREG(mode):
                continue
            kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise ModelError(f"{path}: not a regular file ({kind}); a model folder holds {MODEL_JSON} and {WEIGHTS} "
                         "as plain files (copy the files themselves there)")


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            start = f.read(4)
    except OSError:
        return None
    return next((what for magic, what in _FOREIGN_MAGIC.items() if start.startswith(magic)), None)


def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of a model folder's ``model.json`` (format, family, spec, class names)."""
    folder = Path(path)
    where = folder / MODEL_JSON
    _check_regular(folder)
    if where.is_file() and where.stat().st_size > _MAX_HEADER_BYTES:
        raise ModelError(f"{where}: {where.stat().st_size:,} bytes, far larger than any model description; "
                         "not an fmnist model.json")
    meta = read_json(where, "fmnist model description (model.json)")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not an fmnist model (format is {meta.get('format')!r}, "
                         f"expected {MODEL_FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelError(f"{where}: format_version must be a positive whole number, got {version!r}")
    if version > MODEL_FORMAT_VERSION:
        raise ModelError(f"{where}: saved by a newer fmnist (model format {version}, this one reads up to "
                         f"{MODEL_FORMAT_VERSION}); upgrade fmnist")
    if meta.get("family") not in ("torch", "sklearn"):
        raise ModelError(f"{where}: unknown model family {meta.get('family')!r}; expected 'torch' or 'sklearn'")
    if not isinstance(meta.get("name", ""), str):  # printed, served and written into exports as text
        raise ModelError(f"{where}: name must be a string, got {type(meta['name']).__name__}")
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ModelError(f"{where}: class_names must be a list of strings")
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ModelError(f"{where}: weights_sha256 must be 64 hexadecimal digits, got {digest!r}")
    if not (folder / WEIGHTS).is_file():
        raise ModelError(f"{folder / WEIGHTS}: missing; the model folder is incomplete (copy the weights along "
                         "with model.json)")
    return meta


def _spec_from(meta: dict[str, Any], folder: Path) -> ModelSpec:
    where = folder / MODEL_JSON
    raw = meta.get("spec")
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: 'spec' must be a JSON object with 'layers', got {type(raw).__name__}")
    # The network reads input_shape as (height, width): anything else would fail at predict time.
    shape = raw.get("input_shape", [28, 28])
    if not (isinstance(shape, list) and len(shape) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise ModelError(f"{where}: input_shape must be [height, width] of positive whole numbers, got {shape!r}")
    try:
        spec = ModelSpec.from_dict(raw)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    except (RuntimeError, ValueError, TypeError) as exc:  # torch's own complaint about an impossible stack
        raise ModelError(f"{where}: the spec does not build a network ({exc})") from None
    names = meta.get("class_names")
    if names is not None and len(names) != spec.num_classes:
        raise ModelError(f"{folder / MODEL_JSON}: {len(names)} class names for a model with "
                         f"{spec.num_classes} outputs")
    return spec


def read_safetensors_header(weights: Path) -> dict[str, Any]:
    """Parse and check a safetensors header without reading any tensor.

    Returns ``{name: {"dtype", "shape", "data_offsets"}}`` (plus ``"__metadata__"``). Refuses a
    pickle/zip file under this name, a truncated file, and a header whose sizes or offsets do not
    fit the file, so a forged header cannot make us allocate what it claims.
    """
    try:
        size = weights.stat().st_size
        with open(weights, "rb") as f:
            start = f.read(8)
            foreign = next((what for magic, what in _FOREIGN_MAGIC.items() if start.startswith(magic)), None)
            if foreign:
                raise ModelError(f"{weights}: is {foreign}, not safetensors; fmnist never unpickles model files "
                                 "(that can run code): save the model with fmnist.save_model")
            if len(start) < 8:
                raise ModelError(f"{weights}: {size} bytes, too short for a safetensors file (truncated?)")
            (n,) = struct.unpack("<Q", start)
            if n > min(size - 8, _MAX_HEADER_BYTES):
                raise ModelError(f"{weights}: header claims {n:,} bytes but the file holds {size - 8:,} after the "
                                 "length field; truncated or not a safetensors file")
            raw = f.read(n)
    except IsADirectoryError:
        raise ModelError(f"{weights}: is a folder, expected a safetensors file") from None
    except OSError as exc:
        raise ModelError(f"{weights}: unreadable ({exc.strerror})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelError(f"{weights}: header is not JSON; not a safetensors file") from None
    except ValueError:  # an int of more than 4,300 digits, which Python refuses to read
        raise ModelError(f"{weights}: header holds a number of more than 4,300 digits; not a safetensors "
                         "file fmnist wrote") from None
    if not isinstance(header, dict):
        raise ModelError(f"{weights}: header is not a JSON object; not a safetensors file")
    data_bytes, covered = size - 8 - n, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = (dtype in _DTYPE_BYTES and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(begin, int) and isinstance(end, int))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelError(f"{weights}: tensor {name!r} has a malformed header entry {info!r}")
        if not 0 <= begin <= end <= data_bytes:
            raise ModelError(f"{weights}: tensor {name!r} claims bytes {begin:,}..{end:,} but the file holds "
                             f"{data_bytes:,}; truncated or tampered with")
        if end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise ModelError(f"{weights}: tensor {name!r} of shape {shape} {dtype} needs "
                             f"{math.prod(shape) * _DTYPE_BYTES[dtype]:,} bytes, header gives {end - begin:,}")
        covered += end - begin
    if covered != data_bytes:
        raise ModelError(f"{weights}: the header accounts for {covered:,} data bytes, the file holds "
                         f"{data_bytes:,}; truncated or tampered with")
    return header


def _check_header(weights: Path, header: dict[str, Any], expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Tensor names, shapes and dtypes in the file must be exactly those model.json implies."""
    found = {k: (tuple(v["shape"]), v["dtype"]) for k, v in header.items() if k != "__metadata__"}
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing or unexpected:
        raise ModelError(f"{weights}: tensors do not match model.json (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); the files belong to different models")
    for key, (shape, dtype) in expected.items():
        if found[key] != (shape, dtype):
            raise ModelError(f"{weights}: tensor {key!r} is {found[key][0]} {found[key][1]}, model.json needs "
                             f"{shape} {dtype}; the files belong to different models")


def _load_tensors(weights: Path, load):
    try:
        return load(str(weights))
    except SafetensorError as exc:
        raise ModelError(f"{weights}: not a valid safetensors file ({exc})") from None


def _check_finite(weights: Path, arrays: dict[str, Any]) -> None:
    for key, array in arrays.items():
        finite = torch.isfinite(array).all() if isinstance(array, torch.Tensor) else np.isfinite(array).all()
        if not finite:
            raise ModelError(f"{weights}: tensor {key!r} holds NaN or infinite values (training diverged, or "
                             "the file was altered); retrain or use an earlier checkpoint")


def _load_estimator(meta: dict[str, Any], header: dict[str, Any], weights: Path):
    import sklearn.linear_model

    if meta.get("estimator") not in _ESTIMATORS:
        raise ModelError(f"{weights.parent / MODEL_JSON}: unknown estimator {meta.get('estimator')!r}; "
                         f"known: {', '.join(_ESTIMATORS)}")
    cls = getattr(sklearn.linear_model, meta["estimator"])
    names = set(header) - {"__metadata__"}
    if names != set(_LINEAR_ARRAYS):
        raise ModelError(f"{weights}: expected arrays {list(_LINEAR_ARRAYS)}, found {sorted(names)}")
    arrays = _load_tensors(weights, load_numpy)
    coef, intercept, classes = (arrays[a] for a in _LINEAR_ARRAYS)
    # A binary linear model has one row of coefficients for its two classes.
    n_classes = 2 if coef.ndim == 2 and coef.shape[0] == 1 else coef.shape[0]
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or classes.shape != (n_classes,) \
            or not np.issubdtype(coef.dtype, np.floating) or not np.issubdtype(intercept.dtype, np.floating):
        raise ModelError(f"{weights}: inconsistent arrays coef {coef.shape} {coef.dtype}, intercept "
                         f"{intercept.shape} {intercept.dtype}, classes {classes.shape}")
    _check_finite(weights, {"coef_": coef, "intercept_": intercept})
    if coef.shape[1] != 28 * 28:
        raise ModelError(f"{weights}: coef_ has {coef.shape[1]} features; a model of 28x28 images has 784")
    if classes.dtype.kind not in "iuf" or not (classes[1:] > classes[:-1]).all():
        # scikit-learn's classes_ are np.unique(labels), sorted, and the probability columns
        # follow them in that order. Neighbours are compared, not subtracted: np.diff of
        # unsigned labels wraps around (uint8 [9, 8] gives [255], which looks increasing).
        raise ModelError(f"{weights}: classes_ must be distinct numbers in increasing order, "
                         f"got {classes.tolist()[:12]}")
    names = meta.get("class_names")
    if names is not None and len(names) != len(classes):
        raise ModelError(f"{weights.parent / MODEL_JSON}: {len(names)} class names for {len(classes)} classes")
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise ModelError(f"{weights.parent / MODEL_JSON}: params must be a JSON object")
    try:
        model = cls(**params)
        if hasattr(model, "_validate_params"):
            model._validate_params()  # a bad value (loss="nonsense") fails here, not at predict time
    except (TypeError, ValueError) as exc:  # sklearn's InvalidParameterError is a ValueError
        raise ModelError(f"{weights.parent / MODEL_JSON}: bad estimator parameters ({exc})") from None
    if not hasattr(model, "predict_proba"):  # every fmnist command reads probabilities
        raise ModelError(f"{weights.parent / MODEL_JSON}: loss {params.get('loss')!r} gives no probabilities; "
                         "fmnist saves log_loss or modified_huber models")
    model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
    model.n_features_in_ = coef.shape[1]
    return model
