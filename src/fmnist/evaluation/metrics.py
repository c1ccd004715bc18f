"""Loss and accuracy computed the same way for every model.

Every model is reduced to log class probabilities, (N, num_classes); loss (mean
cross-entropy) and accuracy come from those by one function, :func:`score`, so a scikit-learn
baseline, a torch network and the per-epoch validation inside the training loop are scored by
identical arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fmnist.errors import DataError, ModelError, UsageError

# Keras clips probabilities to [1e-7, 1 - 1e-7] before the log: one confident mistake then
# costs at most -log(1e-7) ~ 16.1 instead of infinity, and a certain right answer 1e-7, never a
# negative zero (or less, where rounding puts a log-probability above 0). We follow it so
# losses compare.
_MIN_LOG_PROB, _MAX_LOG_PROB = float(np.log(1e-7)), float(np.log1p(-1e-7))


def pixels(images) -> np.ndarray:
    """``images`` as an array, integer pixels of any type as uint8.

    Integers are pixel values 0..255 whatever their type (``np.array`` of a list of images gives
    int64): they are scaled by 1/255 like uint8, never used as they are; integers outside 0..255
    are refused. Floats are taken as already scaled.
    """
    x = np.asarray(images)
    if x.dtype.kind in "iu" and x.dtype != np.uint8:
        if x.size and (int(x.min()) < 0 or int(x.max()) > 255):
            raise DataError(f"integer images hold values from {int(x.min())} to {int(x.max())}; pixels are 0..255 "
                            "(or floats in [0, 1])")
        x = x.astype(np.uint8)
    return x


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Images (N, 28, 28) -> float32 tensor on ``device``: integer pixels / 255, floats as they are."""
    x = torch.from_numpy(np.ascontiguousarray(pixels(images))).to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def as_features(images: np.ndarray) -> np.ndarray:
    """Images (N, 28, 28) -> float64 (N, 784), integer pixels / 255, as the study feeds scikit-learn."""
    x = pixels(images)
    return (x.reshape(len(x), -1) / 255.0) if x.dtype == np.uint8 else x.reshape(len(x), -1).astype(np.float64)


def check_images(images, model=None) -> np.ndarray:
    """``images`` as a batch a model can score, or one line saying what is wrong with them.

    A batch is (N, H, W), (N, H*W) or (N, 1, H, W) with H x W the model's input size (28 x 28
    unless a network says otherwise; a torch module of the user's own takes any size); one image
    alone is refused, not read as 28 images of 28 pixels.
    """
    x = np.asarray(images)
    spec = getattr(model, "spec", None)
    if spec is None and isinstance(model, nn.Module):
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"images of shape {x.shape}: expected a batch of images, (N, H, W)")
        return x
    # A NetClassifier's network reads rows as its image_shape_ (it keeps no spec of its own).
    h, w = getattr(spec, "input_shape", None) or getattr(model, "image_shape_", (28, 28))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != h * w:
        one = " (one image: pass images[None])" if x.shape == (h, w) else ""
        raise DataError(f"images of shape {x.shape}: expected a batch of {h}x{w} images, (N, {h}, {w}) or "
                        f"(N, {h * w}){one}")
    if len(x) == 0:
        raise DataError("no images: the batch is empty")
    return x


def check_labels(labels, n: int, model=None, what: str = "labels") -> np.ndarray:
    """``labels`` for ``n`` images as class indices (N,) into the model's probability columns.

    A model with ``classes_`` (scikit-learn's, NetClassifier) has columns in that order, so its
    labels (3 and 7, text...) are mapped through it; a network's labels are the indices. (N, 1),
    as a column from a data frame gives, is read as (N,).
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} of shape {y.shape} for {n} images: expected one label per image, ({n},)")
    classes = column_labels(model)
    if classes is not None:
        found = np.isin(y, classes)
        if not found.all():
            raise DataError(f"{what} hold {y[~found][0].item()!r}, which is not one of the model's classes "
                            f"({', '.join(map(str, classes[:10]))}{'...' if len(classes) > 10 else ''})")
        return _columns(classes, y)
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
        raise DataError(f"{what} of type {y.dtype}: a network's labels are class indices (whole numbers)")
    return y.astype(np.int64)


def column_labels(model) -> np.ndarray | None:
    """The label each probability column stands for, where it is not the column's index: a
    scikit-learn model's (or NetClassifier's) ``classes_`` (3 and 7 of data labelled 3 and 7;
    text). None for a network, whose outputs are the labels 0..K-1 themselves."""
    classes = getattr(model, "classes_", None)
    if classes is None or isinstance(model, nn.Module):
        return None
    return np.asarray(classes)


def _columns(classes: np.ndarray, labels) -> np.ndarray:
    """Each of ``labels`` (all among ``classes``) as the index of its probability column."""
    column = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([column[v] for v in np.asarray(labels).tolist()], dtype=np.int64)


def score(log_proba: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor | None = None) -> dict[str, float]:
    """``{"loss", "accuracy", "n"}`` from log probabilities (N, C) and int labels (N,); the
    accuracy of ``predicted`` columns (N,) where given, else of the most probable."""
    picked = log_proba.gather(1, labels.view(-1, 1)).clamp(_MIN_LOG_PROB, _MAX_LOG_PROB)
    predicted = log_proba.argmax(1) if predicted is None else predicted
    return {"loss": float(-picked.mean()), "accuracy": float((predicted == labels).double().mean()),
            "n": int(len(labels))}


# Images per forward pass when scoring. Dense networks are matrix products that run at their floor
# in large batches; a convolutional network's activation maps outgrow the caches in them: cnn-best
# scored 12,000 images (with its test-time flip, in bfloat16) in 3.0-3.3 s at 8,192 and in
# 1.6-2.2 s at 512 (2 Zen 4 cores).
EVAL_BATCH = 8192
CONV_EVAL_BATCH = 512


def one_view(model: nn.Module) -> nn.Module:
    """``model``'s forward pass on one view of each image, as a training step runs it: a
    :class:`~fmnist.models.network.Network`'s ``stack`` (without its test-time augmentation), any
    other module itself."""
    return getattr(model, "stack", model)


@torch.inference_mode()
def log_proba_tensors(model: nn.Module, x: torch.Tensor, batch_size: int | None = None, *,
                      tta: bool = True) -> torch.Tensor:
    """Log probabilities of a torch model on a float tensor already on its device.

    ``tta=False`` scores one view of each image (:func:`one_view`), without the model's test-time
    augmentation: the training loop's per-epoch monitor.
    """
    forward = model if tta else one_view(model)
    if batch_size is None:
        spec = getattr(model, "spec", None)
        batch_size = CONV_EVAL_BATCH if getattr(spec, "is_convolutional", False) else EVAL_BATCH
    was_training = model.training
    model.eval()
    try:
        # float32 log-probabilities even from a forward pass under autocast (bfloat16 logits)
        return torch.cat([torch.log_softmax(forward(x[i:i + batch_size]).float(), dim=1)
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def predict_log_proba(model, images: np.ndarray) -> np.ndarray:
    """Log class probabilities, float array (N, num_classes), for uint8 images (N, 28, 28).

    A scikit-learn model is given the images as fmnist trains its own: flattened, integer
    pixels scaled to [0, 1] (:func:`as_features`). Floats are given as they are: a model fitted
    on raw 0..255 pixels (a Pipeline with its own scaler) is given ``images.astype(float)``.
    Outputs that are not numbers are refused (:func:`check_numbers`).
    """
    return _log_proba(model, check_images(images, model))[0]


def probe_images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """float32 (N, *shape) in [0, 1] that a model's arithmetic is checked on (on loading, and an
    export against the model).

    Uniform noise alone keeps every pixel near 0.5 and a model's scores moderate; real images
    are mostly black with a bright garment, and drive scores to extremes (a linear model's
    decisions reach -400 on them) where a graph's arithmetic can fail while noise passes. So
    beside the noise: a blank image, a white one, and bright textured shapes of random size and
    place on black, as a garment or a digit looks to the model.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    shapes = []
    for i in range(12):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.15, 0.45) * h, rng.uniform(0.15, 0.45) * w
        inside = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1 if i % 2
                  else (np.abs(rows - cy) <= ry) & (np.abs(cols - cx) <= rx))
        shapes.append(np.where(inside, rng.uniform(0.5, 1.0) * (1 - 0.4 * rng.random((h, w))), 0.0))
    noise = rng.random((7, h, w))
    return np.concatenate([noise, np.zeros((1, h, w)), np.ones((1, h, w)), shapes]).astype(np.float32)


def check_numbers(log_proba: np.ndarray | torch.Tensor, source: str | None = None, images: str = "images") -> None:
    """Refuse (:class:`ModelError`) log probabilities (N, C) with a NaN in any row.

    Finite weights can still overflow (weights near float32's limit give inf - inf in the first
    layer): a NaN would be written as a probability into JSON (which has no NaN) and read as a
    prediction of class 0. ``source`` names the model (its folder) where it is known; ``images``
    says what the rows were.
    """
    nan = torch.isnan(log_proba).any(1) if isinstance(log_proba, torch.Tensor) else np.isnan(log_proba).any(1)
    n = int(nan.sum())
    if n:
        whose = f"{source}: its" if source else "the model's"
        raise ModelError(f"{whose} outputs are not numbers (NaN) for {n} of {len(nan)} {images}: its weights "
                         "overflow or are damaged; retrain the model or use an earlier checkpoint")


def _log_proba(model, images: np.ndarray, *, classes: bool = False,
               check: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Log probabilities of checked images (:func:`check_numbers` unless not ``check``); with
    ``classes``, also a scikit-learn model's own prediction for each image, as its probability
    columns (None for a network: the argmax)."""
    network = isinstance(model, nn.Module)
    if network:
        device = next(model.parameters()).device
        log_proba = log_proba_tensors(model, images_to_tensor(images, device)).cpu().numpy()
    elif hasattr(model, "predict_log_proba"):
        features = _named(as_features(images), model)
        with np.errstate(divide="ignore"):
            log_proba = model.predict_log_proba(features)
    else:
        raise UsageError(f"cannot evaluate a {type(model).__name__}: it has no predict_log_proba")
    if check:
        check_numbers(log_proba)
    if network or not classes:
        return log_proba, None
    # Its predict is its decision: a one-vs-rest model's probabilities tie where they saturate
    # (SGDClassifier: hundreds of test images), and calibrated ones may disagree with it.
    return log_proba, _columns(column_labels(model), model.predict(features))


def _named(features: np.ndarray, model):
    """``features`` as a data frame with the model's column names where it was fitted on one
    (scikit-learn warns that an array "does not have valid feature names"): images have one
    order of pixels, whatever the columns were called."""
    names = getattr(model, "feature_names_in_", None)
    if names is None or len(names) != features.shape[1]:
        return features
    try:
        import pandas as pd
    except ImportError:  # fitted on another kind of frame; scikit-learn then only warns
        return features
    return pd.DataFrame(features, columns=names, copy=False)


def predict_proba(model, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, num_classes) that sum to 1 per row (images as :func:`predict_log_proba`)."""
    return np.exp(predict_log_proba(model, images))


def predictions(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities (N, num_classes), predicted column (N,))``: a network's most probable
    class; a scikit-learn model's own ``predict``, which its probabilities may not single out."""
    log_proba, predicted = _log_proba(model, check_images(images, model), classes=True)
    return np.exp(log_proba), (log_proba.argmax(1) if predicted is None else predicted)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "accuracy": fraction correct, "n": count}`` on uint8 images.

    The loss is Keras's: each probability clipped to [1e-7, 1 - 1e-7] before its log, so one
    confident mistake costs at most -log(1e-7) ~ 16.1, not infinity, and losses compare with
    Keras's.

    ``labels`` as the model was trained on: class indices for a network, or any of the labels in
    a scikit-learn model's ``classes_`` (mapped to its probability columns). A scikit-learn
    model's accuracy is that of its own ``predict`` (as its ``score``), given the images as
    :func:`predict_log_proba` says.
    """
    images = check_images(images, model)
    labels_t = torch.from_numpy(check_labels(labels, len(images), model))
    log_proba, predicted = _log_proba(model, images, classes=True)
    log_proba = torch.from_numpy(np.asarray(log_proba))
    predicted = None if predicted is None else torch.from_numpy(predicted)
    outputs = log_proba.shape[1]
    if len(labels_t) and not 0 <= int(labels_t.min()) <= int(labels_t.max()) < outputs:
        raise DataError(f"labels {int(labels_t.min())}..{int(labels_t.max())} for a model of {outputs} classes "
                        f"(0..{outputs - 1}): score it on data labelled as the data it was trained on")
    return score(log_proba, labels_t, predicted)
