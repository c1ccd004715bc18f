"""The one training loop, its optimizers, schedules, callbacks, augmentation and checkpoints."""

from fmnist.training.augment import Augment
from fmnist.training.callbacks import (
                                       Callback,
                                       EarlyStopping,
                                       LearningRateScheduler,
                                       ModelCheckpoint,
                                       ProgressLogger,
                                       TerminateOnNaN,
)
from fmnist.training.checkpoint import load_checkpoint, save_checkpoint
from fmnist.training.loop import TrainConfig, Trainer, fit, resolve_device
from fmnist.training.optim import OPTIMIZERS, KerasRMSprop, build_optimizer

__all__ = ["OPTIMIZERS", "Augment", "Callback", "EarlyStopping", "KerasRMSprop", "LearningRateScheduler",
           "ModelCheckpoint", "ProgressLogger", "TerminateOnNaN", "TrainConfig", "Trainer", "build_optimizer",
           "fit", "load_checkpoint", "resolve_device", "save_checkpoint"]
