"""Hyperparameter sweeps on Ray Tune: search spaces, the trial callback and the sweep driver.

``fmnist.sweep(model, params, ...)`` (this package's :func:`sweep`) is the library call;
``fmnist sweep`` the command. Importing this package does not import Ray.
"""

from fmnist.tuning.space import ParamSpec, expand, parse_param, parse_params
from fmnist.tuning.sweep import plan_sweep, resume_sweep, sweep

__all__ = ["ParamSpec", "expand", "parse_param", "parse_params", "plan_sweep", "resume_sweep", "sweep"]
