"""The sweep's eyes on Ray Tune (driver side): one line per finished trial, and a progress bar.

Imports Ray at module level (it subclasses ``tune.Callback``): imported only once Ray is known
to be there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from ray import tune

from fmnist.tuning._trial import trial_error


class TrialWatcher(tune.Callback):
    """Calls ``on_trial(row)`` as each trial ends; ``row_of(trial, error)`` makes the row.

    ``row`` gets ``index`` (trials ended so far) and ``total``. ``finished``: the trials a resumed
    sweep had finished already; Tune may start them again from older state (they return at
    once), and they are neither counted nor reported twice. With a terminal ``stream``, a bar
    counts the trials and the lines print above it.
    """

    def __init__(self, total: int, row_of: Callable[[Any, str | None], dict[str, Any]],
                 on_trial: Callable[[dict[str, Any]], None] | None, stream: TextIO | None,
                 finished: set[str] = frozenset()):
        self.total, self.row_of, self.on_trial, self.stream = total, row_of, on_trial, stream
        self.seen = set(finished)
        self.done = len(self.seen)
        self._bar = None

    def __reduce__(self):
        # Tune pickles its run config, callbacks included, into the experiment state; a
        # terminal does not pickle, and a resumed sweep brings its own watcher anyway.
        return (tune.Callback, ())

    def __enter__(self):
        if self.stream is not None and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc="trials", file=self.stream, leave=False,
                             unit="trial", dynamic_ncols=True)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, trial_error(trial))

    def _ended(self, trial, error: str | None) -> None:
        row = self.row_of(trial, error)
        if row["trial"] in self.seen:
            return
        self.seen.add(row["trial"])
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        if self.on_trial is None:
            return
        row.update(index=self.done, total=self.total)
        if self._bar is not None:
            with self._bar.external_write_mode():
                self.on_trial(row)
        else:
            self.on_trial(row)
