"""From a 2017 configuration of the paper's grid to today's scikit-learn estimator.

The rules are data (``_data/sklearn-2017.json``, one entry per family with the reason for
each rule); this module only applies them. The aim is the model the paper trained, not today's
defaults: where scikit-learn renamed a value, moved a parameter or changed a default, the 2017
meaning is restored. What scikit-learn refused in 2017 and still refuses stays refused.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from typing import Any

from fmnist.benchmark.grid import Config, _data_text


@functools.cache
def rules() -> dict[str, dict[str, Any]]:
    """``{family: {"estimator", "defaults", "values", "params", "wrap", "why", "cost_cpu_s"}}``."""
    return json.loads(_data_text("sklearn-2017.json"))["families"]


def _class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def mapped_params(config: Config, seed: int | None = 42) -> tuple[str, dict[str, Any], str | None]:
    """``(estimator class path, its keyword arguments, wrapper class path or None)`` for ``config``.

    ``seed`` becomes ``random_state`` of every estimator that takes one (the paper left it
    unset: each of its repeats drew its own); None leaves it unset.
    """
    rule = rules()[config.family]
    params = dict(config.params)
    wrapper = None
    wrap = rule.get("wrap")
    if wrap and wrap["param"] in params:
        if params.pop(wrap["param"]) == wrap["value"]:
            wrapper = wrap["with"]
    for name, renames in rule.get("values", {}).items():
        if name in params and params[name] in renames:
            params[name] = renames[params[name]]
    params = {rule.get("params", {}).get(name, name): value for name, value in params.items()}
    params = {**rule.get("defaults", {}), **params}
    if seed is not None and "random_state" in inspect.signature(_class(rule["estimator"])).parameters:
        params.setdefault("random_state", seed)
    return rule["estimator"], params, wrapper


def build_estimator(config: Config, seed: int | None = 42):
    """Today's unfitted scikit-learn estimator for ``config`` (without the scaler; see :func:`build_pipeline`)."""
    path, params, wrapper = mapped_params(config, seed)
    estimator = _class(path)(**params)
    return _class(wrapper)(estimator) if wrapper else estimator


def build_pipeline(config: Config, seed: int | None = 42):
    """``StandardScaler`` then the estimator: the paper's runner scales with a StandardScaler fitted on
    the training images (raw 0-255 pixels) and applies it to the images it scores."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), build_estimator(config, seed))


def describe(config: Config, seed: int | None = 42) -> str:
    """The estimator as Python, e.g. ``OneVsRestClassifier(LogisticRegression(C=1.0, solver='liblinear'))``."""
    path, params, wrapper = mapped_params(config, seed)
    text = f"{path.rpartition('.')[2]}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
    return f"{wrapper.rpartition('.')[2]}({text})" if wrapper else text


def check_runs(config: Config, seed: int | None = 42) -> str | None:
    """None if scikit-learn accepts the configuration, else its one-line reason.

    Like the paper's runner, fit on ten scaled images, one per class: what scikit-learn refuses
    (an unsupported penalty/loss pair, a solver without a multiclass mode) is refused at once,
    not after the real data has been loaded into a worker.
    """
    import warnings

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 784)).astype(np.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_pipeline(config, seed).fit(x, np.arange(10))
    except (ValueError, TypeError) as exc:
        return " ".join(str(exc).split())
    return None


def cost_cpu_s(config: Config, n_train: int = 60_000) -> float:
    """Rough CPU-seconds to fit ``config`` on ``n_train`` images (the data file's per-family order of magnitude)."""
    return rules()[config.family]["cost_cpu_s"] * n_train / 60_000
