"""Likely label errors: honest out-of-sample probabilities, then cleanlab.

cleanlab's confident learning needs, for every image, class probabilities from a model that
did not train on that image. For the training images these are out-of-fold predictions: the
training set is cut into K stratified folds and each fold is predicted by a model trained,
with the one training loop, on the other K - 1. No fold model ever sees a test image, so the
test images' probabilities are the mean of the K fold models' predictions: out of sample, and
steadier than any one of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fmnist._text import plural
from fmnist.errors import DataError, FmnistError, UsageError, option

__all__ = ["FoldPredictions", "out_of_fold_proba", "check_folds", "find_label_issues", "require_cleanlab"]


@dataclasses.dataclass
class FoldPredictions:
    """Out-of-sample probabilities: ``train`` (n_train, C) out of fold, ``test`` (n_test, C) the folds' mean.

    ``models``: the K fitted models, fold order; ``fold``: int (n_train,), the fold that
    held each training image out; ``config``: the training settings, as saved in a run.
    """

    train: np.ndarray
    test: np.ndarray
    models: list[Any]
    fold: np.ndarray
    config: dict[str, Any]


def out_of_fold_proba(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, model: str = "mlp-200",
                      folds: int = 5, num_classes: int | None = None, seed: int = 42,
                      overrides: dict[str, Any] | None = None,
                      callbacks: Sequence[Any] = (),
                      on_fold: Callable[[int], None] | None = None) -> FoldPredictions:
    """Train ``model`` K times (``folds``), each time on all folds but one; return :class:`FoldPredictions`.

    ``x_*``: uint8 images (N, 28, 28); ``y_train``: int labels (N,). ``overrides``: training
    settings over the preset's (as for ``fmnist train``). Early stopping is switched off: it
    would choose epochs by the held-out fold, whose predictions must stay untouched.
    ``callbacks`` go to every fold's trainer; ``on_fold(k)`` is called as fold ``k`` starts.
    """
    from sklearn.model_selection import StratifiedKFold

    from fmnist.evaluation import predict_proba
    from fmnist.models import get_preset
    from fmnist.runs import resolve_config

    y_train = np.asarray(y_train, dtype=np.int64)
    num_classes = num_classes or int(y_train.max()) + 1
    check_folds(y_train, folds)
    preset = get_preset(model)
    config = resolve_config(preset, **{**(overrides or {}), "seed": seed})
    config = dataclasses.replace(config, patience=None)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.zeros((len(y_train), num_classes), np.float64)
    test = np.zeros((len(x_test), num_classes), np.float64)
    fold_of = np.empty(len(y_train), np.int64)
    models = []
    for k, (tr, held) in enumerate(splitter.split(np.zeros(len(y_train)), y_train)):
        if on_fold is not None:
            on_fold(k)
        fitted = _fit_one(preset, model, config, x_train[tr], y_train[tr], num_classes, seed + k, callbacks)
        oof[held] = _full_proba(predict_proba(fitted, x_train[held]), fitted, num_classes)
        test += _full_proba(predict_proba(fitted, x_test), fitted, num_classes) / folds
        fold_of[held] = k
        models.append(fitted)
    return FoldPredictions(oof, test, models, fold_of, config.to_dict())


def check_folds(y_train: np.ndarray, folds: int) -> None:
    """Raise UsageError unless ``folds`` stratified folds can each hold every class of ``y_train``."""
    if folds < 2:
        raise UsageError(f"{option('folds')}: at least 2 folds are needed for out-of-fold predictions, got {folds}")
    counts = np.bincount(np.asarray(y_train, dtype=np.int64))
    smallest = int(counts[counts > 0].min(initial=folds))
    if smallest < folds:
        label = int(np.flatnonzero(counts == smallest)[0])
        has = f"class {label} has only {plural(smallest, 'training image')}"
        if smallest < 2:  # no number of folds can do: the data is what needs changing
            raise DataError(f"{option('folds', folds)}: {has}, and auditing needs at least 2 of every class (each "
                            "is judged by models trained without it); add images of that class, or leave it out "
                            "of the data")
        raise UsageError(f"{option('folds', folds)}: {has}; every fold needs one of each class, so use at most "
                         f"{option('folds', smallest)}")


def _fit_one(preset, name: str, config, x, y, num_classes: int, seed: int, callbacks):
    import torch

    from fmnist.evaluation.metrics import as_features
    from fmnist.models.network import Network
    from fmnist.models.registry import build_estimator
    from fmnist.training import Trainer

    if preset.family == "sklearn":
        from fmnist.runs import recorded_warnings

        params = {"random_state": seed} if "random_state" in preset.params else {}
        # The tutorial's max_iter=5 stops before SGD converges, and scikit-learn says so for each
        # fold: expected, as in a run of it, so not on the terminal.
        with recorded_warnings():
            return build_estimator(preset, **params).fit(as_features(x), y)
    torch.manual_seed(seed)  # each fold its own initial weights, reproducibly
    net = Network(preset.for_classes(num_classes).spec)  # an output for every class, as a run has
    Trainer(net, dataclasses.replace(config, seed=seed), callbacks).fit(x, y)
    return net.eval()


def _full_proba(proba: np.ndarray, model, num_classes: int) -> np.ndarray:
    """(N, num_classes) probabilities whatever the model's outputs.

    A scikit-learn model knows only the classes it saw: its columns go where they belong. A
    network with more outputs than the data has classes (a 10-class preset on 3-class data, as
    ``fmnist train`` builds it) learned that the extra classes never occur: they are dropped.
    """
    classes = getattr(model, "classes_", None)
    if classes is not None:
        out = np.zeros((len(proba), num_classes))
        out[:, np.asarray(classes, dtype=np.int64)] = proba
        return out
    proba = proba[:, :num_classes]
    return proba / proba.sum(1, keepdims=True)


def require_cleanlab():
    try:
        import cleanlab.filter  # noqa: F401
    except ImportError:
        raise FmnistError("fmnist audit needs cleanlab to find label errors: pip install 'fmnist[audit]' "
                          "(or pip install cleanlab)") from None
    import cleanlab

    return cleanlab


def find_label_issues(labels: np.ndarray, proba: np.ndarray,
                      classes: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """cleanlab's likely label errors, most likely first.

    ``labels`` int (N,), ``proba`` (N, C) out-of-sample probabilities. ``classes``: those the
    models could predict (the ones with training images; default all C). An image of another
    class is not judged: no model could have suggested its label, so it would be flagged
    whatever it shows. Returns dicts with ``index``, ``given`` and ``suggested`` (the class the
    model prefers) and ``score``: cleanlab's label quality (self-confidence, the probability
    given to the given label; in [0, 1], lower is more suspect), in cleanlab's ranking.
    """
    require_cleanlab()
    import warnings

    from cleanlab.filter import find_label_issues as _find
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    classes = np.arange(proba.shape[1]) if classes is None else np.asarray(classes, dtype=np.int64)
    judged = np.flatnonzero(np.isin(labels, classes))
    if not len(judged):
        return []
    # cleanlab sees the predictable classes only, numbered 0..K-1.
    column = np.full(proba.shape[1], -1, np.int64)
    column[classes] = np.arange(len(classes))
    given = column[labels[judged]]
    p = proba[judged][:, classes]
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)  # cleanlab checks rows sum to 1 at float precision
    with warnings.catch_warnings():
        # A class with one image in a split cannot be pruned, and cleanlab warns; expected on
        # small data, and each image's score is still there.
        warnings.filterwarnings("ignore", message="May not flag all label issues", category=UserWarning)
        ranked = _find(given, p, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(given, p, method="self_confidence")
    suggested = classes[p.argmax(1)]
    return [{"index": int(judged[i]), "given": int(labels[judged[i]]), "suggested": int(suggested[i]),
             "score": float(quality[i])} for i in ranked]
