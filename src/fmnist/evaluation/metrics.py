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

from fmnist.errors import DataError, UsageError

# Keras clips probabilities to [1e-7, 1 - 1e-7] before the log: one confident mistake then
# costs at most -log(1e-7) ~ 16.1 instead of infinity, and a certain right answer 1e-7, never a
# negative zero (or less, where rounding puts a log-probability above 0). We follow it so
# losses compare.
_MIN_LOG_PROB, _MAX_LOG_PROB = float(np.log(1e-7)), float(np.log1p(-1e-7))


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 tensor in [0, 1] on ``device`` (pixels / 255)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def as_features(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float64 (N, 784) in [0, 1], as the study feeds scikit-learn."""
    x = np.asarray(images)
    return (x.reshape(len(x), -1) / 255.0) if x.dtype == np.uint8 else x.reshape(len(x), -1).astype(np.float64)


def score(log_proba: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``{"loss", "accuracy", "n"}`` from log probabilities (N, C) and int labels (N,)."""
    picked = log_proba.gather(1, labels.view(-1, 1)).clamp(_MIN_LOG_PROB, _MAX_LOG_PROB)
    return {"loss": float(-picked.mean()), "accuracy": float((log_proba.argmax(1) == labels).double().mean()),
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
    """Log class probabilities, float array (N, num_classes), for uint8 images (N, 28, 28)."""
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device
        return log_proba_tensors(model, images_to_tensor(images, device)).cpu().numpy()
    if hasattr(model, "predict_log_proba"):
        with np.errstate(divide="ignore"):
            return model.predict_log_proba(as_features(images))
    raise UsageError(f"cannot evaluate a {type(model).__name__}: it has no predict_log_proba")


def predict_proba(model, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, num_classes) that sum to 1 per row."""
    return np.exp(predict_log_proba(model, images))


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "accuracy": fraction correct, "n": count}`` on uint8 images."""
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device
        log_proba, labels_t = log_proba_tensors(model, images_to_tensor(images, device)), labels_t.to(device)
    else:
        log_proba = torch.from_numpy(np.asarray(predict_log_proba(model, images)))
    outputs = log_proba.shape[1]
    if len(labels_t) and not 0 <= int(labels_t.min()) <= int(labels_t.max()) < outputs:
        raise DataError(f"labels {int(labels_t.min())}..{int(labels_t.max())} for a model of {outputs} classes "
                        f"(0..{outputs - 1}): score it on data labelled as the data it was trained on")
    return score(log_proba, labels_t)
