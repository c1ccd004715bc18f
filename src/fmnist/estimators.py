"""Every fmnist network as a scikit-learn classifier.

:class:`NetClassifier` wraps a preset or layer spec and the one training loop
(:class:`fmnist.training.Trainer`), so ``cross_validate``, ``GridSearchCV``, ``Pipeline`` and
``clone`` work on it exactly as on ``SGDClassifier``::

    from sklearn.model_selection import cross_validate
    from fmnist.estimators import NetClassifier

    clf = NetClassifier("mlp-100", epochs=5)
    cross_validate(clf, x_train, y_train, cv=3)       # x: uint8 (N, 28, 28) images

``X`` may be uint8 images (N, 28, 28) or (N, 784), scaled by 1/255 as everywhere in fmnist,
or floats (N, n_features) used as they are. The network's input layer is built from
``n_features_in_``: images (N, H, W) keep their H x W, 784 flat features are read as 28 x 28
(so convolutional presets work), any other count as one row of pixels,
and its output layer from the number of classes, so any labels (ints or strings) and any
feature count fit.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from fmnist.errors import FmnistError, ModelError
from fmnist.evaluation.metrics import pixels, predict_log_proba
from fmnist.models.registry import get_preset
from fmnist.models.network import Network
from fmnist.models.spec import ModelSpec
from fmnist.training import ProgressLogger, TrainConfig, Trainer, seeded


class NetClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier training an fmnist network with the one training loop.

    Parameters mirror ``fmnist train``: ``model`` is a torch preset name or a layer string, and
    every training setting left at ``None`` is the preset's recipe (its optimizer, learning
    rate, batch size, schedule, early stopping, augmentation), then Keras's default; a value
    given overrides it. ``validation_fraction`` of the training rows (stratified, drawn with
    the seed) is held out and scored each epoch, as scikit-learn's ``MLPClassifier`` does; when
    the recipe stops early (``patience``) and none is given, 0.1 is held out, because early
    stopping watches the validation loss. ``patience=0`` switches early stopping off. Fitted
    attributes: ``model_`` (the :class:`Network`, eval mode), ``classes_`` (sorted labels;
    output ``i`` of the network is ``classes_[i]``), ``history_`` (one dict per epoch),
    ``n_features_in_``, ``image_shape_`` (how the network reads one row: (H, W)), ``config_``
    (the resolved :class:`TrainConfig`).

    Saving and loading: ``fmnist.save_model(clf, "my-clf")`` writes the network (model.json +
    weights.safetensors, no pickle); ``NetClassifier.load("my-clf")`` gives the fitted
    estimator back, with its parameters, labels (their values and dtype) and fitted
    attributes, so ``predict`` returns the original labels. ``fmnist.load_model`` on the same
    folder gives the bare :class:`Network` (model.json lists the labels, as text, in ``class_names``).
    """

    def __init__(self, model: str = "mlp-200", *, epochs: int | None = None, batch_size: int | None = None,
                 optimizer: str | None = None, lr: float | None = None, momentum: float | None = None,
                 nesterov: bool | None = None, weight_decay: float | None = None, schedule: str | None = None,
                 lr_step_epochs: int | None = None, lr_gamma: float | None = None, pct_start: float | None = None,
                 patience: int | None = None, shift: int | None = None, flip: bool | None = None,
                 erase: float | None = None, label_smoothing: float | None = None, precision: str | None = None,
                 validation_fraction: float | None = None, seed: int | None = None, device: str = "auto",
                 verbose: int = 0):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.pct_start = pct_start
        self.patience = patience
        self.shift = shift
        self.flip = flip
        self.erase = erase
        self.label_smoothing = label_smoothing
        self.precision = precision
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.device = device
        self.verbose = verbose

    def fit(self, X, y) -> NetClassifier:
        """Train a fresh network on ``X`` (N, ...) and labels ``y`` (N,); returns ``self``."""
        X = _as_array(X)
        shape = getattr(X, "shape", ())
        X = self._check_X(X, reset=True)
        if len(shape) == 3:
            self.image_shape_ = tuple(int(s) for s in shape[1:])
        else:
            self.image_shape_ = (28, 28) if self.n_features_in_ == 784 else (1, self.n_features_in_)
        if y is None:
            raise ValueError("NetClassifier requires y to be passed, but the target y is None")
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"only one class in y ({self.classes_[:1].tolist()[0]!r}); NetClassifier needs at least 2")
        try:  # a layer string may end in dense:K for the K classes of y
            preset = get_preset(self.model, len(self.classes_))
        except ModelError as exc:
            try:  # or in the dense:10 of every preset, widened or narrowed to the classes below
                preset = get_preset(self.model, 10)
            except ModelError:
                raise exc from None
        if preset.family != "torch":
            raise ModelError(f"NetClassifier wraps torch networks; {self.model!r} is a scikit-learn model "
                             "(use it directly)")
        given = {name: getattr(self, name) for name in _TRAIN_PARAMS if getattr(self, name) is not None}
        self.config_ = TrainConfig(**{**preset.train, **given, "device": self.device})
        # Rows become images (N, H, W): augmentation (the recipe's flips, shifts, erasing) works on images.
        X, y_index, validation = self._hold_out(X.reshape(len(X), *self.image_shape_), y_index)
        spec = _fit_spec(preset.spec, self.image_shape_, len(self.classes_))
        # Initial weights and dropout masks depend on the seed only; the caller's own random
        # numbers are left as they were.
        with seeded(self.config_.seed):
            network = Network(spec)
            callbacks = [ProgressLogger()] if self.verbose else []
            trainer = Trainer(network, self.config_, callbacks)
            self.config_ = trainer.config  # the precision it trains in, "auto" resolved
            self.history_ = trainer.fit(X, y_index, validation_data=validation)
        self.model_ = trainer.model.eval()
        return self

    def _hold_out(self, X: np.ndarray, y: np.ndarray):
        """``(X, y, validation_data)``: the rows to train on, and those held out (None: none)."""
        fraction = self.validation_fraction
        if fraction is None:
            fraction = DEFAULT_VALIDATION_FRACTION if self.config_.patience else 0.0
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction < 1:
            raise ValueError(f"validation_fraction must be a number in [0, 1), got {fraction!r}")
        if fraction == 0:
            if self.config_.patience:
                raise ValueError(f"early stopping (patience={self.config_.patience}) watches the validation loss, "
                                 "and validation_fraction=0 holds out no data; give validation_fraction > 0, "
                                 "or patience=0 to train every epoch")
            return X, y, None
        from sklearn.model_selection import train_test_split

        try:  # stratified, so that every class is scored; impossible when a class has one row
            x_tr, x_val, y_tr, y_val = train_test_split(X, y, test_size=fraction, random_state=self.config_.seed,
                                                        stratify=y)
        except ValueError:
            x_tr, x_val, y_tr, y_val = train_test_split(X, y, test_size=fraction, random_state=self.config_.seed)
        return x_tr, y_tr, (x_val, y_val)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> NetClassifier:
        """The fitted NetClassifier that ``fmnist.save_model(clf, path)`` saved.

        ``path`` is the model folder (or its model.json / weights.safetensors); the network
        goes to ``device`` in eval mode. The result has the saved parameters and ``classes_``
        (same values and dtype: int labels stay ints), ``model_``, ``n_features_in_``,
        ``image_shape_``, ``config_`` and ``history_``; ``predict`` returns those labels.
        Nothing in the files is executed. A folder that holds another kind of model (a run's
        network, a linear model) or a malformed description raises :class:`ModelError`.

        >>> clf = NetClassifier.load("my-clf")
        >>> clf.predict(x_test[:3])                      # labels as they were in y
        """
        from fmnist.models.io import MODEL_JSON, load_model, model_info

        network = load_model(path, device=device)  # checks the folder, the spec and the weights
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        where = folder / MODEL_JSON
        saved = model_info(folder).get("net_classifier")
        if not isinstance(network, Network) or saved is None:
            raise ModelError(f"{where}: not a saved NetClassifier (no 'net_classifier' entry); load this model with "
                             "fmnist.load_model")
        try:
            clf = cls(**saved["params"])
            classes = _saved_labels(saved["classes"], saved["classes_dtype"])
            n_features, history = saved["n_features_in"], saved["history"]
            config = TrainConfig(**saved["config"])
        except (KeyError, TypeError, ValueError, FmnistError) as exc:
            raise ModelError(f"{where}: malformed 'net_classifier' entry ({exc!s:.200})") from None
        spec = network.spec
        if len(classes) != spec.num_classes:
            raise ModelError(f"{where}: {len(classes)} labels for a network with {spec.num_classes} outputs")
        if not isinstance(n_features, int) or n_features != spec.input_shape[0] * spec.input_shape[1]:
            raise ModelError(f"{where}: n_features_in {n_features!r} does not fit the network's input "
                             f"{spec.input_shape}")
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ModelError(f"{where}: 'history' must be a list of per-epoch objects")
        names = saved.get("feature_names_in")
        if names is not None:
            if not (isinstance(names, list) and len(names) == n_features and all(isinstance(n, str) for n in names)):
                raise ModelError(f"{where}: 'feature_names_in' must be {n_features} strings")
            clf.feature_names_in_ = np.asarray(names, dtype=object)
        clf.classes_, clf.n_features_in_, clf.image_shape_ = classes, n_features, tuple(spec.input_shape)
        clf.config_, clf.history_, clf.model_ = config, history, network.eval()
        return clf

    def predict_log_proba(self, X) -> np.ndarray:
        """Log class probabilities, float (N, len(classes_)), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        log_proba = predict_log_proba(self.model_, X).astype(np.float64)
        # The network computes in float32; renormalising in float64 makes rows sum to 1 to
        # float64 precision, which scikit-learn's log_loss checks.
        return log_proba - logsumexp(log_proba, axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, float (N, len(classes_)); rows sum to 1."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable label for each row, taken from ``classes_``."""
        best = self.predict_log_proba(X).argmax(axis=1)  # checks fitted before classes_ is read
        return self.classes_[best]

    def _check_X(self, X, *, reset: bool) -> np.ndarray:
        """Validate ``X`` and bring it to (N, n_features): integer pixels as uint8 (scaled by 1/255
        in the network, as everywhere in fmnist; values outside 0..255 refused), the rest float32."""
        X = _as_array(X)
        if not sp.issparse(X) and getattr(X, "ndim", 2) > 2:
            X = np.asarray(X)
            # Images (N, 28, 28) are 784 features, as scikit-learn sees them (N = 0 included, which
            # validate_data then refuses in its own words).
            X = X.reshape(len(X), math.prod(X.shape[1:]))
        X = validate_data(self, X, reset=reset, dtype="numeric")
        if X.dtype.kind in "iu":
            try:
                X = pixels(X)
            except FmnistError as exc:  # a bad X is a ValueError to scikit-learn
                raise ValueError(str(exc)) from None
        else:
            X = X.astype(np.float32)
        # torch.from_numpy warns on read-only arrays (memory maps); a copy is writable.
        return X if X.flags.writeable else X.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.device not in ("cpu", "auto") or torch.cuda.is_available()
        return tags


def _as_array(X):
    """A list of images (or rows) as an array, so that its shape is read as the images' (a data
    frame or a sparse matrix is left to scikit-learn's own checks)."""
    return np.asarray(X) if isinstance(X, (list, tuple)) else X


def _saved_labels(values: Any, dtype: Any) -> np.ndarray:
    """``classes_`` from model.json: the label values and numpy dtype that save_model wrote.

    Only booleans, numbers and text are accepted (never arbitrary objects), and the array must
    hold exactly the saved values, distinct (a too-short text dtype or an int dtype given
    fractions is refused, not truncated).
    """
    dtype = np.dtype(dtype)
    if not isinstance(values, list) or not values:
        raise ValueError("'classes' must be a non-empty list")
    if dtype.kind in "biuf":
        ok = all(isinstance(v, (bool, int, float)) for v in values)
    elif dtype.kind in "UO":
        # A text dtype's length is capped so that a forged one cannot ask for gigabytes.
        ok = all(isinstance(v, str) for v in values) and dtype.itemsize <= 4 * 10_000
    else:
        ok = False
    if not ok:
        raise ValueError(f"labels {values[:3]!r}... cannot be of dtype {dtype.str!r}")
    classes = np.asarray(values, dtype=dtype)
    if classes.ndim != 1 or classes.tolist() != values or len(np.unique(classes)) != len(classes):
        raise ValueError(f"labels {values[:3]!r}... do not round-trip as distinct values of dtype {dtype.str!r}")
    return classes


# The parameters that are training settings (TrainConfig fields); None: the preset's recipe.
_TRAIN_PARAMS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
                 "lr_step_epochs", "lr_gamma", "pct_start", "patience", "shift", "flip", "erase", "label_smoothing",
                 "precision", "seed")
# Held out for early stopping when the caller gives no validation_fraction: scikit-learn's
# MLPClassifier default.
DEFAULT_VALIDATION_FRACTION = 0.1


def _fit_spec(spec: ModelSpec, input_shape: tuple[int, int], n_classes: int) -> ModelSpec:
    """The preset's layers with input ``input_shape`` (H, W) and an output layer of ``n_classes``."""
    layers = [dict(layer) for layer in spec.layers]
    layers[-1]["units"] = n_classes
    n_features = input_shape[0] * input_shape[1]
    try:
        return dataclasses.replace(spec, layers=tuple(layers), num_classes=n_classes, input_shape=input_shape)
    except ModelError as exc:
        flat = " (give convolutional networks images, (N, H, W))" if input_shape[0] == 1 else ""
        raise ModelError(f"model {str(spec)!r} does not fit {n_features} features: {exc}{flat}") from None
