"""Export a model to ONNX, so it runs without fmnist, PyTorch or scikit-learn (e.g. onnxruntime).

The exported graph has one fixed interface, whatever the model:

- input ``images``: float32 (N, H, W), the model's image size (28 x 28 for Fashion-MNIST),
  pixels scaled to [0, 1] (uint8 / 255), any N; for a NetClassifier, the features as it was
  fitted on them (it scales integer pixels by 1/255 and takes floats as they are);
- output ``logits``: float32 (N, C), the scores before normalisation (for a linear model, its
  ``decision_function``; (N, 1) for a binary one; for a network with the test-time flip, the
  mean of the image's and its mirror's log-probabilities);
- output ``probabilities``: float32 (N, C), rows sum to 1, equal to ``fmnist.predict_proba``.

The prediction (``fmnist predict``'s) is the argmax of ``logits``; for a network, that of the
probabilities too. A linear model's is its decision (class 1 where its one logit is above 0 for
a binary one): its one-vs-rest probabilities can tie at their largest, and their argmax differ.

The same description, the class names (JSON list, index = class) and the model's spec are
stored in the file's ``metadata_props``, so the file explains itself::

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    logits, proba = session.run(None, {"images": x_uint8.astype("float32") / 255})
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import fmnist
from fmnist._files import atomic_write, check_free, claim, next_free
from fmnist.errors import FmnistError, ModelError, OutputExistsError, option
from fmnist.evaluation.metrics import probe_images
from fmnist.models.io import load_model, model_info
from fmnist.models.network import Network

ONNX_FORMAT = "fmnist-onnx"
INPUT, OUTPUTS = "images", ("logits", "probabilities")
# The opset both exporters target; onnxruntime has supported it since 1.16.
OPSET = 18
# Export is checked against our own predictions on random images before it is written.
PARITY_TOLERANCE = 1e-5


def _interface(shape: tuple[int, int], tta: str | None = None, classifier: bool = False,
               linear: int | None = None) -> dict[str, str]:
    """What the graph takes and gives, in words: stored in the file, and printed by the command.

    ``classifier``: the network of a NetClassifier, which scales integer pixels by 1/255 and takes
    floats as they are, and keeps no record of which it was fitted on: the graph takes floats as
    they are, so its input is described as both cases. ``linear``: a linear model's number of
    decision values (1 for a binary one). Its prediction is its decision, not the most probable
    class: one-vs-rest probabilities tie at their largest where the sigmoids saturate at 1 (a
    barely regularised SGDClassifier: over a thousand of the 10,000 test images), and there
    their argmax disagrees with the model's own predict, which fmnist predict gives.
    """
    h, w = shape
    logits = ("the mean of the image's and its mirror's log-probabilities (the model's test-time flip), "
              "not raw scores" if tta == "flip" else "raw scores")
    if linear == 1:
        logits = ("float32 (N, 1), the decision function; the prediction is class 1 where it is above 0, "
                  "as the model's own predict")
    elif linear is not None:
        logits = ("float32 (N, C), the decision function; its argmax is the prediction, as the model's own "
                  "predict (the probabilities can tie at their largest, and their argmax differ)")
    else:
        logits = f"float32 (N, C), {logits}"
    values = ("the features as the NetClassifier was fitted on them: pixels / 255 in [0, 1] where it was fitted "
              "on integer pixels, the floats themselves (unscaled) where it was fitted on floats"
              if classifier else "pixels / 255 in [0, 1]")
    return {"input": f"images: float32 (N, {h}, {w}), {values}; N is dynamic",
            "outputs": f"logits: {logits}; probabilities: float32 (N, C), rows sum to 1"}


def to_onnx(model, path: str | os.PathLike, *, class_names: tuple[str, ...] | list[str] | None = None,
            name: str = "model", check: bool = True, overwrite: bool = False) -> Path:
    """Write ``model`` (an fmnist :class:`Network`, fitted NetClassifier or linear classifier) as ONNX.

    The file is written atomically (a crash leaves no half-written file). A ``path`` that exists
    is refused (:class:`~fmnist.errors.OutputExistsError`, before any work) unless ``overwrite``.
    With ``check`` and onnxruntime installed, the exported graph is first run on random images
    and must match our probabilities to ``PARITY_TOLERANCE``, else :class:`ModelError`.
    """
    classifier = isinstance(getattr(model, "model_", None), Network)  # a fitted NetClassifier
    return _write_onnx(model, path, class_names=class_names, name=name, check=check, overwrite=overwrite,
                       classifier=classifier)


def _write_onnx(model, path, *, class_names, name, check, overwrite, classifier) -> Path:
    """:func:`to_onnx`; ``classifier``: ``model`` is a NetClassifier's network, or its estimator."""
    path = Path(path)
    if path.is_dir():
        raise FmnistError(f"{path}: is a folder; name the file to write, e.g. {path / 'model.onnx'}")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True to replace it, or choose another path")
    onnx = _import_onnx()
    if isinstance(getattr(model, "model_", None), Network):  # a fitted NetClassifier
        class_names = class_names if class_names is not None else [str(c) for c in model.classes_]
        model = model.model_
    if isinstance(model, Network):
        proto = _torch_graph(model)
        spec = str(model.spec) + (", predicting with the test-time flip" if model.spec.tta == "flip" else "")
        n_out = model.spec.num_classes
        doc = _interface(model.spec.input_shape, model.spec.tta, classifier)
    elif hasattr(model, "coef_") and hasattr(model, "intercept_"):
        proto = _linear_graph(model)
        spec = f"{type(model).__name__}(loss={getattr(model, 'loss', '?')!r})"
        n_out = len(model.classes_)
        doc = _interface(_linear_shape(np.shape(model.coef_)[1]), linear=np.shape(model.coef_)[0])
    else:
        raise ModelError(f"cannot export a {type(model).__name__} to ONNX: only fmnist networks and fitted "
                         "linear classifiers")
    if class_names is not None and len(class_names) != n_out:
        raise ModelError(f"{len(class_names)} class names for a model with {n_out} classes")
    meta = {"format": ONNX_FORMAT, "name": name, "model": spec, "fmnist_version": fmnist.__version__,
            **doc, "class_names": json.dumps(list(class_names) if class_names is not None else
                                              [str(c) for c in range(n_out)])}
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = f"fmnist {name}: {spec}. {doc['input']}. {doc['outputs']}."
    onnx.checker.check_model(proto)
    if check:
        _check_parity(model, proto)
    # The format is named: onnx guesses it from the file's extension, and would write (and
    # read back) an --out of model.json or .textproto as text.
    atomic_write(path, lambda tmp: onnx.save_model(proto, str(tmp), format="protobuf"))
    return path


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
               overwrite: bool = False) -> Path:
    """Export the model of a run (or model) folder to ``out``; returns the path written.

    The default is ``RUN_DIR/model.onnx``, or ``model-2.onnx``... when that exists. An ``out``
    that exists is refused (:class:`~fmnist.errors.OutputExistsError`) unless ``overwrite``; in
    the run folder, a name not ending in ``.onnx`` always is (it is, or may become, one of the
    run's own files). Another export into the run folder (or a training writing it) at the same
    time is refused (:class:`~fmnist.errors.OutputExistsError`), so no two write one file.
    """
    run_dir = Path(run_dir)
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    # (A missing run folder is not claimed, which would create it: loading the model says it is missing.)
    in_folder = folder.is_dir() and (out is None or Path(out).parent.resolve() == folder.resolve())
    if out is None:  # checked before the claim, which would name the folder, not the file to write
        check_free([folder / "model.onnx"], overwrite=True, out="--out")
    # An export into the run folder claims it: two exports started together would otherwise both
    # find model.onnx free and write it, and one started while train --overwrite or --resume
    # writes the folder would export a model that is being replaced.
    # One to a file elsewhere claims that file's folder, for the same reason.
    held = folder if in_folder else Path(out).parent if out is not None else None
    with claim(held) if held is not None else contextlib.nullcontext():
        return _export(run_dir, folder, out, overwrite)


def _export(run_dir: Path, folder: Path, out: str | os.PathLike | None, overwrite: bool) -> Path:
    if out is not None:
        if Path(out).is_dir():
            raise FmnistError(f"{option('out', str(out))}: is a folder; name the file to write, "
                              f"e.g. {Path(out) / 'model.onnx'}")
        # Beside its exports, a run folder holds the run itself (run.json, model.json, the weights,
        # metrics, reports), which --overwrite must not let an export replace.
        if Path(out).suffix.lower() != ".onnx" and Path(out).parent.resolve() == folder.resolve():
            raise FmnistError(f"{option('out', str(out))}: in the run folder {folder}, among the run's own files "
                              f"(run.json, model.json, the weights...); an export there is named *.onnx (e.g. "
                              f"{folder / 'model.onnx'}), or write it elsewhere")
        check_free([out], overwrite=overwrite, what="a file")
    model = load_model(run_dir)
    info = model_info(folder)
    path = Path(out) if out is not None else next_free(folder / "model.onnx", folder=False)
    # A saved NetClassifier loads as its network; its model.json says what it was.
    return _write_onnx(model, path, class_names=info.get("class_names"), name=info.get("name", "model"),
                       check=True, overwrite=overwrite, classifier="net_classifier" in info)


def _linear_shape(n_features: int) -> tuple[int, int]:
    """A linear model's image shape: 28 x 28 for 784 features, else one row of them."""
    return (28, 28) if n_features == 784 else (1, n_features)


def interface(path: str | os.PathLike) -> dict[str, str]:
    """An exported file's ``{"input", "outputs"}`` descriptions, as its metadata records them."""
    onnx = _import_onnx()
    props = {p.key: p.value for p in onnx.load(str(path), format="protobuf", load_external_data=False).metadata_props}
    return {k: props.get(k, "?") for k in ("input", "outputs")}


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ModelError("ONNX export needs the onnx package: pip install 'fmnist[onnx]'") from None
    return onnx


class _WithProbabilities(nn.Module):
    """The network plus softmax: the exported graph answers both questions in one run."""

    def __init__(self, network: Network):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(images)
        return logits, torch.softmax(logits, dim=1)


def _torch_graph(model: Network):
    # The torch.export-based exporter (dynamo=True) is torch's supported path since 2.9; the
    # TorchScript one is deprecated and warns that it will be removed. It needs onnxscript and
    # costs ~1.5 s per model (~5 s for the first), acceptable for a command run once per model.
    onnx = _import_onnx()
    try:
        import onnxscript  # noqa: F401  (the exporter imports it lazily; fail here with a clear line)
    except ImportError:
        raise ModelError("ONNX export of torch models needs onnxscript: pip install 'fmnist[onnx]'") from None
    wrapped = _WithProbabilities(copy.deepcopy(model).cpu().eval())
    h, w = model.spec.input_shape
    # Batch 2, not 1: torch.export specialises dimensions of size 0 and 1 to constants.
    sample = torch.rand(2, h, w)
    # Named as the linear graph and every description name the batch axis.
    batch = torch.export.Dim("N")
    noisy = logging.getLogger("torch.onnx")
    level = noisy.level
    noisy.setLevel(logging.ERROR)  # it logs a warning per missing torchvision operator
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapped, (sample,), dynamo=True, verbose=False, opset_version=OPSET,
                                        input_names=[INPUT], output_names=list(OUTPUTS),
                                        dynamic_shapes=({0: batch},), optimize=True)
    except Exception as exc:  # the exporter raises many types; any of them means "not exportable"
        raise ModelError(f"ONNX export failed for {model.spec}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        noisy.setLevel(level)
    return onnx.load_from_string(program.model_proto.SerializeToString())


def _linear_graph(model):
    """A linear classifier as Reshape -> MatMul -> Add -> (sigmoid, normalise), computed in float64.

    scikit-learn's multi-class log-loss ``SGDClassifier`` is one-vs-rest: its probabilities are
    the sigmoid of each decision value divided by their sum (not a softmax). The graph repeats
    its arithmetic step for step, in float64 as it does: ``1 / (1 + exp(-decision))`` (scipy's
    expit), and where every class's sigmoid underflows to 0 (decisions below about -745) the
    uniform row scikit-learn puts there instead of 0 / 0. onnxruntime's own Sigmoid is not
    used: in float64 it returns 0 below about -37, where expit is far from 0 (a real image's
    decisions reach -400), and a row of such zeros would be 0 / 0.
    """
    _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    if getattr(model, "loss", "log_loss") != "log_loss":
        raise ModelError(f"cannot export {type(model).__name__}(loss={model.loss!r}) to ONNX: only log_loss "
                         "models give probabilities")
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    k, n_features = coef.shape
    h, w = _linear_shape(n_features)
    inits = [numpy_helper.from_array(coef.T.copy(), "coef_t"), numpy_helper.from_array(intercept, "intercept"),
             numpy_helper.from_array(np.array([-1, n_features], dtype=np.int64), "flat_shape"),
             numpy_helper.from_array(np.array(1.0), "one")]
    nodes = [
        helper.make_node("Reshape", [INPUT, "flat_shape"], ["flat32"]),
        helper.make_node("Cast", ["flat32"], ["flat"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["flat", "coef_t"], ["scores"]),
        helper.make_node("Add", ["scores", "intercept"], ["decision"]),
        helper.make_node("Cast", ["decision"], [OUTPUTS[0]], to=TensorProto.FLOAT),
        helper.make_node("Neg", ["decision"], ["minus"]),
        helper.make_node("Exp", ["minus"], ["odds_against"]),
        helper.make_node("Add", ["one", "odds_against"], ["one_plus"]),
        helper.make_node("Div", ["one", "one_plus"], ["positive"]),
    ]
    if k == 1:  # binary: one score; P(class 1) = sigmoid, P(class 0) = 1 - sigmoid
        nodes += [helper.make_node("Sub", ["one", "positive"], ["negative"]),
                  helper.make_node("Concat", ["negative", "positive"], ["proba64"], axis=1)]
    else:
        inits += [numpy_helper.from_array(np.array([1], dtype=np.int64), "class_axis"),
                  numpy_helper.from_array(np.array(0.0), "zero"),
                  numpy_helper.from_array(np.array(float(k)), "n_classes")]
        nodes += [helper.make_node("ReduceSum", ["positive", "class_axis"], ["total"], keepdims=1),
                  helper.make_node("Equal", ["total", "zero"], ["all_zero"]),
                  helper.make_node("Where", ["all_zero", "one", "positive"], ["numerator"]),
                  helper.make_node("Where", ["all_zero", "n_classes", "total"], ["denominator"]),
                  helper.make_node("Div", ["numerator", "denominator"], ["proba64"])]
    nodes.append(helper.make_node("Cast", ["proba64"], [OUTPUTS[1]], to=TensorProto.FLOAT))
    n_classes = 2 if k == 1 else k
    graph = helper.make_graph(
        nodes, "fmnist_linear",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", h, w])],
        [helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT, ["N", k]),
         helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["N", n_classes])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fmnist",
                             producer_version=fmnist.__version__)


def _our_probabilities(model, images: np.ndarray) -> np.ndarray:
    from fmnist.evaluation import predict_proba

    return predict_proba(model, images)


def _check_parity(model, proto) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        return  # nothing to check with; the graph already passed onnx.checker
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = probe_images(tuple(session.get_inputs()[0].shape[1:]))
    _, proba = session.run(None, {INPUT: images})
    ours = _our_probabilities(model, images)
    # A NaN on either side is a difference (max ignores nothing: NaN fails the comparison below).
    gap = float(np.abs(proba - ours).max())
    if not gap <= PARITY_TOLERANCE:
        raise ModelError(f"the exported ONNX graph differs from the model by {gap:.2e} (> {PARITY_TOLERANCE}); "
                         "this is a bug in the export, please report it")


def run_onnx(path: str | os.PathLike, images: np.ndarray) -> dict[str, Any]:
    """Run an exported file with onnxruntime on uint8 (N, 28, 28) images: ``{"logits", "probabilities"}``."""
    import onnxruntime as ort

    # Bytes, not the path: onnxruntime reads a file named *.ort as its own format.
    session = ort.InferenceSession(Path(path).read_bytes(), providers=["CPUExecutionProvider"])
    x = np.asarray(images)
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    return dict(zip(OUTPUTS, session.run(None, {INPUT: x})))
