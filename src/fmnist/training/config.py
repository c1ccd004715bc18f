"""What a training run is told: :class:`TrainConfig` and the optimizers' defaults.

Kept apart from the loop and the optimizers (which need torch) so that describing a preset's
recipe (``fmnist models NAME``), checking options and reading a run's config stay light.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from fmnist.errors import UsageError, option

# Optimizer name -> Keras's default learning rate (optim.OPTIMIZERS builds each one).
DEFAULT_LR = {"rmsprop": 1e-3, "sgd": 1e-2, "adagrad": 1e-3, "adam": 1e-3, "adamw": 1e-3}
# Keras's AdamW is Adam with a default (decoupled) weight decay of 0.004; the others default to none.
DEFAULT_WEIGHT_DECAY = {"adamw": 0.004}
# The optimizers with a momentum setting. Adam's and Adagrad's updates have none: a momentum
# asked of them would be silently ignored, so it is refused.
WITH_MOMENTUM = ("sgd", "rmsprop")


def optimizer_defaults(name: str) -> dict[str, float]:
    """``{"lr", "weight_decay"}``: what optimizer ``name`` uses when they are not given (Keras's)."""
    check_optimizer(name)
    return {"lr": DEFAULT_LR[name], "weight_decay": DEFAULT_WEIGHT_DECAY.get(name, 0.0)}


def check_optimizer(name: str, *, momentum: float | None = None, nesterov: bool = False) -> None:
    """Refuse (:class:`UsageError`) an unknown optimizer, or a setting it would ignore."""
    if name not in DEFAULT_LR:
        raise UsageError(f"{option('optimizer')}: unknown optimizer {name!r}; choose one of {', '.join(DEFAULT_LR)}")
    if momentum and name not in WITH_MOMENTUM:
        raise UsageError(f"{option('momentum', momentum)}: {name} has no momentum setting (only "
                         f"{' and '.join(WITH_MOMENTUM)} do); leave it out or choose {option('optimizer', 'sgd')}")
    if nesterov and (name != "sgd" or not momentum or momentum <= 0):
        raise UsageError(f"{option('nesterov', True)} needs {option('optimizer', 'sgd')} and a "
                         f"{option('momentum')} above 0")


# Arithmetic of the training steps: "float32", or "bfloat16" mixed precision (torch.autocast):
# convolutions and matrix products in bfloat16, weights, gradients, optimizer state and the loss
# in float32. The per-epoch validation runs at the training precision too; scores reported
# after training (evaluate, a run's metrics.json) are float32. "auto" is bfloat16 where the
# device does bfloat16 arithmetic in hardware and float32 elsewhere: on a CPU without it
# autocast emulates bfloat16, several times slower than float32 (cnn-book's step on 2 Zen 3
# cores: 10 ms in float32, 93 ms in emulated bfloat16). The trainer resolves it when it starts,
# and the run records the precision it trained in.
PRECISIONS = ("auto", "float32", "bfloat16")


# Settings that belong to one learning-rate schedule, and their defaults there. Given with
# another schedule (or none) they would change nothing, so they are refused instead.
SCHEDULE_SETTINGS = {"lr_step_epochs": ("step", 10), "lr_gamma": ("step", 0.1), "pct_start": ("onecycle", 0.3)}


_WHOLE = ("epochs", "batch_size", "seed", "lr_step_epochs", "patience", "shift", "threads")
_REAL = ("lr", "momentum", "weight_decay", "lr_gamma", "pct_start", "erase", "label_smoothing")
_OPTIONAL = ("lr", "momentum", "weight_decay", "lr_step_epochs", "lr_gamma", "pct_start", "patience", "threads")


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run's result (saved in the run folder).

    ``None`` means "not given": the optimizer's or the schedule's default applies, and
    :meth:`resolved` spells out which. An explicit value (0 included) is always honoured or,
    where it cannot apply (a momentum for Adam, a step-schedule setting without that schedule),
    refused with :class:`UsageError`; never silently ignored.
    """

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "rmsprop"
    lr: float | None = None  # None: the optimizer's Keras default
    momentum: float | None = None  # sgd and rmsprop only; None: 0
    nesterov: bool = False
    weight_decay: float | None = None  # None: the optimizer's default (adamw: 0.004, others: 0)
    seed: int = 42
    device: str = "auto"
    # Learning-rate schedule (callbacks.LearningRateScheduler): None, "step", "cosine", "onecycle".
    schedule: str | None = None
    lr_step_epochs: int | None = None  # step: multiply the rate by lr_gamma every this many epochs (10)
    lr_gamma: float | None = None  # step: 0.1
    pct_start: float | None = None  # onecycle: fraction of the steps spent warming up to the peak lr (0.3)
    # Early stopping on val_loss with the best epoch's weights restored; None: train every epoch.
    patience: int | None = None
    # Augmentation of training batches only: shift up to N pixels, mirror left-right, erase a
    # random rectangle with this probability (augment.Augment).
    shift: int = 0
    flip: bool = False
    erase: float = 0.0
    # Cross-entropy against targets smoothed towards uniform (Szegedy et al. 2016): the true
    # class gets 1 - s + s/K. Logged losses stay the plain cross-entropy, comparable across runs.
    label_smoothing: float = 0.0
    # Mixed precision (PRECISIONS): on CPUs with bfloat16 dot products (AVX512-BF16, AMX) and on
    # CUDA the convolutions run 1.5-1.8x faster (conv 32->64 at 14x14, batch 128, 2 Zen 4
    # cores: 16.1 ms forward and backward in float32, 8.9 ms in bfloat16); bfloat16 keeps
    # float32's range, so no loss scaling is needed.
    precision: str = "float32"
    # CPU threads training may use; None: the CPUs this process may run on (its affinity, or
    # OMP_NUM_THREADS when set). A sweep gives each trial its allotment here. Small steps use
    # one of them (Trainer.train_threads); the run records the count used.
    threads: int | None = None

    def __post_init__(self):
        self._check_types()
        # "none" and 0 let the command line switch off a preset's schedule or early stopping.
        if self.schedule in ("none", ""):
            self.schedule = None
        if self.patience == 0:
            self.patience = None
        if self.schedule is not None and self.schedule not in ("step", "cosine", "onecycle"):
            raise UsageError(f"{option('schedule')}: unknown schedule {self.schedule!r}; choose step, cosine, "
                             "onecycle or none")
        for name, (schedule, _) in SCHEDULE_SETTINGS.items():
            value = getattr(self, name)
            if value is not None and self.schedule != schedule:
                raise UsageError(f"{option(name, value)} applies to {option('schedule', schedule)} only (the "
                                 f"schedule here is {self.schedule or 'none'}); leave it out or set the schedule")
        check_optimizer(self.optimizer, momentum=self.momentum, nesterov=self.nesterov)
        if self.precision not in PRECISIONS:
            raise UsageError(f"{option('precision')}: unknown precision {self.precision!r}; choose "
                             f"{' or '.join(PRECISIONS)}")
        checks = (
            (self.patience is None or self.patience >= 0, "patience", "must be at least 1 (0: no early stopping)"),
            (self.lr_step_epochs is None or self.lr_step_epochs >= 1, "lr_step_epochs", "must be at least 1"),
            (self.lr_gamma is None or self.lr_gamma > 0, "lr_gamma", "must be positive"),
            (self.pct_start is None or 0 < self.pct_start < 1, "pct_start", "must be between 0 and 1"),
            (0 <= self.shift <= 13, "shift", "must be between 0 and 13 pixels"),
            (0 <= self.erase <= 1, "erase", "is a probability between 0 and 1"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)"),
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.batch_size >= 1, "batch_size", "must be at least 1"),
            (self.lr is None or 0 < self.lr < math.inf, "lr", "must be a positive number"),
            # Types were checked first (_check_types): these are int, or None where optional.
            (0 <= self.seed < 2 ** 32, "seed", "must be a whole number from 0 to 2**32 - 1"),
            (self.threads is None or self.threads >= 1, "threads", "must be a whole number of at least 1"),
            (self.momentum is None or 0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (self.weight_decay is None or self.weight_decay >= 0, "weight_decay", "must be at least 0"),
        )
        for ok, name, rule in checks:
            if not ok:
                raise UsageError(f"{option(name)} {rule}, got {getattr(self, name)}")

    def _check_types(self) -> None:
        """Whole numbers where counts go, numbers where rates go, as plain Python values.

        From a notebook come 2.5 epochs, "0.1" as a rate, or numpy scalars (a grid built with
        np.arange): the first two are refused here, in one line, rather than truncated or failing
        inside training; numpy's become int and float, so the config saves as JSON.
        """
        kinds = [(name, numbers.Integral, int, "a whole number") for name in _WHOLE]
        kinds += [(name, numbers.Real, float, "a number") for name in _REAL]
        for name, kind, plain, words in kinds:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise UsageError(f"{option(name)} must be {words}, got {value!r}")
            setattr(self, name, plain(value))
        for name in ("nesterov", "flip"):
            value = getattr(self, name)
            if not (isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b"):
                raise UsageError(f"{option(name)} must be True or False, got {value!r}")
            setattr(self, name, bool(value))

    def resolved(self, device: str | None = None) -> TrainConfig:
        """This config with every default spelled out: the learning rate, momentum, weight decay
        and schedule settings training used, and ``device`` (the one it ran on) when given."""
        defaults = optimizer_defaults(self.optimizer)
        filled = {name: default for name, (schedule, default) in SCHEDULE_SETTINGS.items()
                  if self.schedule == schedule and getattr(self, name) is None}
        return dataclasses.replace(
            self, **filled, lr=defaults["lr"] if self.lr is None else self.lr,
            momentum=(self.momentum or 0.0) if self.optimizer in WITH_MOMENTUM else None,
            weight_decay=defaults["weight_decay"] if self.weight_decay is None else self.weight_decay,
            device=device or self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
