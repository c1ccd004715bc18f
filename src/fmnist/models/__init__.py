"""Models as data: layer specs, the network they build, and the registry of named presets."""

from fmnist.models.registry import (
           Preset,
           create_model,
           get_preset,
           list_models,
           register,
)
from fmnist.models.spec import ModelSpec, Network, count_parameters, summary

__all__ = ["ModelSpec", "Network", "Preset", "count_parameters", "create_model", "get_preset",
           "list_models", "register", "summary"]
