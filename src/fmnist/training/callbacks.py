"""Side jobs of training as small classes: progress lines, schedules, early stopping, checkpoints.

The loop calls ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end`` and
``on_train_end`` on each callback in order. A callback stops training by setting
``trainer.stop_training = True`` (and says why in ``trainer.stop_reason``). A callback with
state that a resumed run needs (early stopping's best weights, say) returns it from
``state_dict`` and takes it back in ``load_state_dict``; the trainer's checkpoint carries it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from fmnist._text import plural
from fmnist.errors import TrainingError, UsageError, option


class TrainerView(Protocol):
    """What a callback may read and set on the trainer that calls it (``training.loop.Trainer``).

    Spelled out here so that this module does not import the loop that imports it.
    """

    model: Any  # the torch module being trained
    optimizer: Any  # its torch optimizer; a schedule sets each group's "lr"
    config: Any  # the TrainConfig
    epoch: int
    num_batches: int
    stop_training: bool  # set True to stop after this epoch
    stop_reason: str | None  # and say why
    weights_epoch: int  # the epoch whose weights the model holds

    def state_dict(self) -> dict[str, Any]: ...


class Callback:
    def on_train_begin(self, trainer: TrainerView) -> None: ...
    def on_epoch_begin(self, trainer: TrainerView, epoch: int) -> None: ...
    def on_batch_end(self, trainer: TrainerView, batch: int, num_batches: int) -> None: ...
    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: TrainerView) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as if never stopped (tensors and JSON scalars)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def format_logs(logs: dict[str, Any]) -> str:
    """``loss: 0.3507 - accuracy: 0.8748 - val_loss: ...`` in Keras's order and precision."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
    keys += [k for k in logs if k not in keys and k not in ("epoch", "time", "lr")]
    return " - ".join(f"{k}: {logs[k]:.4f}" for k in keys if isinstance(logs[k], float))


def epoch_line(epoch: int, epochs: int, logs: dict[str, Any]) -> str:
    """The line ProgressLogger prints after an epoch (the README shows one from a recorded history)."""
    return f"Epoch {epoch}/{epochs} - {logs['time']:.1f}s - {format_logs(logs)}"


class ProgressLogger(Callback):
    """Keras-style lines: ``Epoch 3/5 - 0.9s - loss: 0.3507 - accuracy: 0.8748 - val_...``.

    On a terminal a progress bar runs while an epoch trains; when the output is a file or a
    pipe only the per-epoch lines are written, so logs stay readable.
    """

    # Only displays: the training loop may call on_batch_end after a chunk of compiled steps.
    chunk_safe = True

    def __init__(self, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.bar = self.stream.isatty() if bar is None else bar
        self._pbar = None

    def on_epoch_begin(self, trainer: TrainerView, epoch: int) -> None:
        if self.bar:
            from tqdm import tqdm

            self._pbar = tqdm(total=trainer.num_batches, desc=f"Epoch {epoch}/{trainer.config.epochs}",
                              file=self.stream, leave=False, unit="step", dynamic_ncols=True)
            self._last = 0
            self._last_time = time.perf_counter()

    def on_batch_end(self, trainer: TrainerView, batch: int, num_batches: int) -> None:
        # Refresh the bar at most ~10 times a second: tqdm's own throttle still costs a call per step.
        if self._pbar is not None:
            now = time.perf_counter()
            if now - self._last_time > 0.1 or batch == num_batches:
                self._pbar.update(batch - self._last)
                self._last, self._last_time = batch, now

    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        print(epoch_line(epoch, trainer.config.epochs, logs), file=self.stream, flush=True)


# --- Learning-rate schedules --------------------------------------------------------------------

SCHEDULES = ("step", "cosine", "onecycle")


def step_lr(base_lr: float, epoch: int, step_epochs: int, gamma: float) -> float:
    """Step decay: ``base_lr * gamma ** ((epoch - 1) // step_epochs)`` for 1-based ``epoch``."""
    return base_lr * gamma ** ((epoch - 1) // step_epochs)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base_lr`` towards 0 over ``total_steps`` (Keras ``CosineDecay``, alpha 0).

    ``step`` counts optimizer steps from 0; step 0 uses ``base_lr``.
    """
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def onecycle_lr(max_lr: float, step: int, total_steps: int, pct_start: float = 0.3,
                div_factor: float = 25.0, final_div_factor: float = 1e4) -> float:
    """One-cycle policy (Smith), cosine phases, as ``torch.optim.lr_scheduler.OneCycleLR``.

    Warms up from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of the
    steps, then anneals to ``max_lr / div_factor / final_div_factor`` at the last step.
    """
    initial, final = max_lr / div_factor, max_lr / div_factor / final_div_factor
    warm_end = float(pct_start * total_steps) - 1
    last = total_steps - 1

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    if step <= warm_end:
        return anneal(initial, max_lr, step / warm_end if warm_end > 0 else 1.0)
    return anneal(max_lr, final, (step - warm_end) / (last - warm_end) if last > warm_end else 1.0)


class LearningRateScheduler(Callback):
    """Sets ``lr`` in every optimizer parameter group from a closed-form schedule.

    ``schedule`` is ``"step"`` (per epoch), ``"cosine"`` or ``"onecycle"`` (per optimizer step).
    The base (or peak, for one-cycle) rate is the group's ``initial_lr``, recorded from its
    ``lr`` at the first ``on_train_begin``; it travels in the optimizer state, so a resumed run
    continues on the same curve. Each epoch's log gets the rate its first step used (``lr``).
    """

    def __init__(self, schedule: str, *, step_epochs: int = 10, gamma: float = 0.1, pct_start: float = 0.3):
        if schedule not in SCHEDULES:
            raise UsageError(f"--schedule: unknown schedule {schedule!r}; choose {', '.join(SCHEDULES)} or none")
        self.schedule, self.step_epochs, self.gamma, self.pct_start = schedule, step_epochs, gamma, pct_start

    def lr_at(self, base_lr: float, epoch: int, batch: int, num_batches: int, epochs: int) -> float:
        """The rate for the step that starts batch ``batch`` (0-based) of ``epoch`` (1-based)."""
        if self.schedule == "step":
            return step_lr(base_lr, epoch, self.step_epochs, self.gamma)
        step, total = (epoch - 1) * num_batches + batch, epochs * num_batches
        if self.schedule == "cosine":
            return cosine_lr(base_lr, step, total)
        return onecycle_lr(base_lr, step, total, self.pct_start)

    def _set(self, trainer: TrainerView, epoch: int, batch: int) -> None:
        for group in trainer.optimizer.param_groups:
            group["lr"] = self.lr_at(group["initial_lr"], epoch, batch, trainer.num_batches, trainer.config.epochs)

    def on_train_begin(self, trainer: TrainerView) -> None:
        for group in trainer.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_epoch_begin(self, trainer: TrainerView, epoch: int) -> None:
        self._set(trainer, epoch, 0)
        self._epoch_lr = trainer.optimizer.param_groups[0]["lr"]

    def lr_plan(self, trainer: TrainerView, epoch: int, first: int, count: int) -> list[float] | None:
        """The rates of batches ``first .. first+count-1`` (0-based), for a chunk of compiled
        steps (``Trainer.run_epoch``); None when the rate is constant within the epoch. The same
        values ``on_batch_end`` sets one step at a time, for the first param group."""
        if self.schedule == "step":
            return None
        base = trainer.optimizer.param_groups[0]["initial_lr"]
        return [self.lr_at(base, epoch, b, trainer.num_batches, trainer.config.epochs)
                for b in range(first, first + count)]

    def on_batch_end(self, trainer: TrainerView, batch: int, num_batches: int) -> None:
        # Per-step schedules set the rate for the next step; the last batch's value is unused.
        if self.schedule != "step" and batch < num_batches:
            self._set(trainer, trainer.epoch, batch)

    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None:
        logs["lr"] = self._epoch_lr


# --- Early stopping, NaN guard, checkpoints ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Monitor:
    """What "better" means for a logged metric: one definition for early stopping and checkpoints.

    Keras's ``mode="auto"``: a metric named like an accuracy must grow, anything else (losses)
    must shrink, by more than ``min_delta``. A value that is not finite is never an improvement,
    so a diverging epoch can neither become the best weights nor the best checkpoint.
    """

    name: str = "val_loss"
    min_delta: float = 0.0

    @property
    def mode(self) -> str:
        return "max" if "acc" in self.name else "min"

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (None: nothing seen yet)."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras's ``EarlyStopping``).

    With ``restore_best_weights`` the model ends training with the weights of its best epoch
    (whether or not training stopped early); ``trainer.stop_reason`` says what happened.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 2, restore_best_weights: bool = True,
                 min_delta: float = 0.0):
        self.monitor, self.patience = monitor, patience
        self.restore_best_weights, self.min_delta = restore_best_weights, min_delta
        self.rule = Monitor(monitor, min_delta)
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise UsageError(f"early stopping monitors {self.monitor!r}, which this run does not log "
                             f"(it logs {', '.join(k for k in logs if k != 'epoch')}); train with validation data")
        value = float(logs[self.monitor])
        if self.rule.improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True
            trainer.stop_reason = (f"early stopping at epoch {epoch}: {self.monitor} has not improved for "
                                   f"{plural(self.patience, 'epoch')} (best {self.best:.4f} at epoch {self.best_epoch})")

    def on_train_end(self, trainer: TrainerView) -> None:
        if self.restore_best_weights and self.best_weights is not None and self.best_epoch != trainer.epoch:
            trainer.model.load_state_dict(self.best_weights)
            trainer.weights_epoch = self.best_epoch
            reason = trainer.stop_reason or f"trained {plural(trainer.epoch, 'epoch')}"
            trainer.stop_reason = f"{reason}; restored the weights of epoch {self.best_epoch}"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state["best_weights"]


class TerminateOnNaN(Callback):
    """Stop with a one-line :class:`TrainingError` when an epoch's loss is NaN or infinite.

    Checked once per epoch from the epoch's mean loss (a NaN in any step poisons the mean), so
    the loop never waits on the device mid-epoch just to look at the loss.
    """

    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None:
        bad = [k for k in ("loss", "val_loss") if k in logs and not math.isfinite(logs[k])]
        if bad:
            group = trainer.optimizer.param_groups[0]
            lr, decay = group["lr"], group.get("weight_decay") or 0.0
            if lr * decay >= 1:  # each step multiplies the weights by 1 - lr * decay <= 0
                raise TrainingError(f"training diverged: {bad[0]} is {logs[bad[0]]} at epoch {epoch} (learning rate "
                                    f"{lr:g} times weight decay {decay:g} is {lr * decay:g}: a step scales the weights "
                                    f"by 1 - {lr * decay:g}); train again with {option('weight_decay')} below "
                                    f"{1 / lr:g}")
            raise TrainingError(f"training diverged: {bad[0]} is {logs[bad[0]]} at epoch {epoch} (learning rate "
                                f"{lr:g}); train again with a smaller {option('lr')}")


class ModelCheckpoint(Callback):
    """Write the trainer's full state (model, optimizer, RNG, history) to ``run_dir`` atomically.

    ``save_best_only=False``: ``checkpoint.safetensors`` after every epoch, what
    ``fmnist train --resume`` continues from. ``save_best_only=True``: ``best.safetensors``
    whenever ``monitor`` improves (Keras's ``ModelCheckpoint(save_best_only=True)``). ``extra``
    is stored alongside (the run description a resume needs). An epoch whose loss is not finite
    is never written: the previous checkpoint stays.
    """

    def __init__(self, run_dir: str | Path, save_best_only: bool = False, monitor: str = "val_loss",
                 extra: dict[str, Any] | None = None):
        self.run_dir, self.save_best_only, self.monitor = Path(run_dir), save_best_only, monitor
        self.path = self.run_dir / ("best.safetensors" if save_best_only else "checkpoint.safetensors")
        self.extra = extra or {}
        self.rule = Monitor(monitor)
        self.best: float | None = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int, logs: dict[str, Any]) -> None:
        from fmnist.training.checkpoint import save_checkpoint

        if not all(math.isfinite(v) for k, v in logs.items() if k in ("loss", "val_loss")):
            return
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise UsageError(f"best-only checkpoints monitor {self.monitor!r}, which this run does not log")
            if not self.rule.improved(float(value), self.best):
                return
            self.best = value
        save_checkpoint(self.path, {**trainer.state_dict(), "run": self.extra})

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
