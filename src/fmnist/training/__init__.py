"""The one training loop, its optimizers, schedules, callbacks, augmentation and checkpoints.

Names resolve on first use, as in ``fmnist`` itself: :class:`TrainConfig` (``.config``) needs
no torch, so describing a recipe or checking options does not pay for importing it.
"""

_EXPORTS = {
    "TrainConfig": "config", "DEFAULT_LR": "config", "optimizer_defaults": "config",
    "Trainer": "loop", "fit": "loop", "resolve_device": "loop", "seeded": "loop",
    "OPTIMIZERS": "optim", "KerasRMSprop": "optim", "build_optimizer": "optim",
    "Augment": "augment",
    "Callback": "callbacks", "EarlyStopping": "callbacks", "LearningRateScheduler": "callbacks",
    "ModelCheckpoint": "callbacks", "ProgressLogger": "callbacks", "TerminateOnNaN": "callbacks",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module  # here, so that the name stays out of the namespace

        return getattr(import_module(f"fmnist.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fmnist.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
