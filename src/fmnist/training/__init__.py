"""The one training loop, its optimizers and callbacks."""

from fmnist.training.callbacks import Callback, ProgressLogger
from fmnist.training.loop import TrainConfig, Trainer, fit, resolve_device
from fmnist.training.optim import OPTIMIZERS, KerasRMSprop, build_optimizer

__all__ = ["OPTIMIZERS", "Callback", "KerasRMSprop", "ProgressLogger", "TrainConfig", "Trainer",
           "build_optimizer", "fit", "resolve_device"]
