"""fmnist: train, compare, inspect and use image classifiers on Fashion-MNIST.

The public API, for use from Python::

    import fmnist
    (x_train, y_train), (x_test, y_test) = fmnist.load_data()   # uint8 (N, 28, 28), labels (N,)
    model = fmnist.create_model("mlp-200")                         # or a layer string
    fmnist.save_model(model, "my-model", class_names=fmnist.CLASS_NAMES)
    model = fmnist.load_model("my-model")                          # no pickle: JSON + safetensors
    fmnist.evaluate(model, x_test, y_test)                         # {"loss", "accuracy", "n"}

``import fmnist`` stays cheap (no torch, no scikit-learn): each name is imported from its
module the first time it is used. ``dir(fmnist)`` lists exactly the public API.
"""

from fmnist import _threads

__version__ = "0.1.0"

# Before anything imports torch: its OpenMP threads sleep instead of spinning when idle, so
# training degrades gently on cores shared with other jobs (see fmnist/_threads.py).
_threads.wait_politely()

# public name -> module that defines it
_EXPORTS = {
    "load_data": "fmnist.data",
    "load_dataset": "fmnist.data",
    "CLASS_NAMES": "fmnist.data",
    "create_model": "fmnist.models",
    "list_models": "fmnist.models",
    "save_model": "fmnist.models.io",
    "load_model": "fmnist.models.io",
    "evaluate": "fmnist.evaluation",
    "predict_proba": "fmnist.evaluation",
    "NetClassifier": "fmnist.estimators",
    "sweep": "fmnist.tuning",
    "benchmark_classical": "fmnist.benchmark",
    "audit": "fmnist.auditing",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module  # here, so that the name stays out of the namespace

        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # cache: later look-ups skip this function
        return value
    raise AttributeError(f"module 'fmnist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
