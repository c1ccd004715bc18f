"""Side jobs of training as small classes: progress lines, early stopping, checkpoints.

The loop calls ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end`` and
``on_train_end`` on each callback in order. A callback stops training by setting
``trainer.stop_training = True``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from fmnist.training.loop import Trainer


class Callback:
    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, batch: int, num_batches: int) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


def format_logs(logs: dict[str, Any]) -> str:
    """``loss: 0.3507 - accuracy: 0.8748 - val_loss: ...`` in Keras's order and precision."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
    keys += [k for k in logs if k not in keys and k not in ("epoch", "time", "lr")]
    return " - ".join(f"{k}: {logs[k]:.4f}" for k in keys if isinstance(logs[k], float))


class ProgressLogger(Callback):
    """Keras-style lines: ``Epoch 3/5 - 0.9s - loss: 0.3507 - accuracy: 0.8748 - val_...``.

    On a terminal a progress bar runs while an epoch trains; when the output is a file or a
    pipe only the per-epoch lines are written, so logs stay readable.
    """

    def __init__(self, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.bar = self.stream.isatty() if bar is None else bar
        self._pbar = None

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if self.bar:
            from tqdm import tqdm

            self._pbar = tqdm(total=trainer.num_batches, desc=f"Epoch {epoch}/{trainer.config.epochs}",
                              file=self.stream, leave=False, unit="step", dynamic_ncols=True)
            self._last = 0
            self._last_time = time.perf_counter()

    def on_batch_end(self, trainer: Trainer, batch: int, num_batches: int) -> None:
        # Refresh the bar at most ~10 times a second: tqdm's own throttle still costs a call per step.
        if self._pbar is not None:
            now = time.perf_counter()
            if now - self._last_time > 0.1 or batch == num_batches:
                self._pbar.update(batch - self._last)
                self._last, self._last_time = batch, now

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        print(f"Epoch {epoch}/{trainer.config.epochs} - {logs['time']:.1f}s - {format_logs(logs)}",
              file=self.stream, flush=True)
