"""Models as data: layer specs, the network they build, and the registry of named presets.

Torch-free to import (the presets, specs and summaries are plain data); ``Network`` imports
torch on first use.
"""

from fmnist.models.registry import (
           Preset,
           create_model,
           get_preset,
           list_models,
           register,
)
from fmnist.models.spec import ModelSpec, count_parameters, summary

__all__ = ["ModelSpec", "Network", "Preset", "count_parameters", "create_model", "get_preset",
           "list_models", "register", "summary"]


def __getattr__(name: str):
    if name == "Network":
        from fmnist.models.network import Network

        return Network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
