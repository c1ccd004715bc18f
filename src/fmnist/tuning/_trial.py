"""What runs inside a Ray Tune trial: one ordinary training run, reported epoch by epoch.

The trainer knows nothing of Ray: :class:`TuneReporter` is a callback like the others (see
fmnist.training.callbacks). The trial's folder is a normal run folder written by
:mod:`fmnist.runs`, so every fmnist command works on it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from fmnist._files import write_json
from fmnist.errors import FmnistError
from fmnist.training import Callback

REPORTED = ("loss", "accuracy", "val_loss", "val_accuracy")
POINTER = "trial.json"


class TuneReporter(Callback):
    """Reports each epoch's metrics to Ray Tune, with a checkpoint that names the run folder
    (so Tune's own record of the trial, its ``Result.checkpoint``, leads to the folder).

    Tune answers every report: go on, or stop (a scheduler such as ASHA judged the trial weak).
    It stops a trial by ending its thread inside ``report``. This callback runs after the run
    folder's own checkpoint is written (``train_run(observers=...)``), so the epoch Tune judged
    is on disk when that happens, and the sweep completes the folder from it.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.train_time_s = 0.0

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        from ray import tune

        metrics = {k: float(logs[k]) for k in REPORTED if k in logs}
        metrics["epoch"] = epoch
        metrics["epochs"] = trainer.config.epochs  # a trial ended at its last epoch was not stopped early
        # The epochs' own time, as a run folder counts it: Tune's time_total_s also holds the
        # trial's start (its process, imports, data), so a trial stopped early would show one
        # time as it ends and another in the leaderboard.
        self.train_time_s += float(logs.get("time", 0.0))
        metrics["train_time_s"] = self.train_time_s
        # Tune keeps its own copy of the checkpoint folder: a pointer is enough, the state
        # itself is the run folder's checkpoint.safetensors.
        with tempfile.TemporaryDirectory() as tmp:
            write_json(Path(tmp) / POINTER, {"run_dir": str(self.run_dir), "epoch": epoch})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


@dataclasses.dataclass(frozen=True)
class TrialJob:
    """What every trial of a sweep shares: the model, the fixed options, where folders go."""

    model: str
    fixed: dict[str, Any]
    trials_dir: str
    cpus: int


def trial_options(config: dict[str, Any]) -> dict[str, Any]:
    """Tune's config for a trial -> its training options. A sweep over seeds gives each trial a
    drawn point (``{"index", "params"}``) and its training seed; other sweeps, the options."""
    options = {k: v for k, v in config.items() if k != "point"}
    if "point" in config:
        options.update(config["point"]["params"])
    return options


def trial_name(trial_id: str) -> str:
    """``'7f3a2_00004'`` -> ``'trial-00004'``: the counter part of Tune's id, stable across restores."""
    return f"trial-{trial_id.rsplit('_', 1)[-1]}"


def run_trial(config: dict[str, Any], *, job: TrialJob, data) -> None:
    """Train one trial into ``job.trials_dir/trial-NNNNN``; what Tune calls in a worker.

    Restarted by a resumed sweep, it continues from the folder's checkpoint; a folder that is
    complete already (the interruption came after it was written) is not trained again.
    """
    from ray import tune

    from fmnist.runs import CHECKPOINT, resolve_config, resume_run, train_run

    # Torch would use every core of the node; the trial owns only its Ray allotment. The Trainer
    # takes its thread count from OMP_NUM_THREADS (TrainConfig.threads left to its default), and
    # Ray sets that variable only where the user's environment has none: set it here.
    os.environ["OMP_NUM_THREADS"] = str(job.cpus)
    # Named from Tune's trial id, not from the checkpoint Tune hands a restarted trial: the
    # sweep folder may have moved since (the run folder is the state; the pointer is Tune's record).
    run_dir = Path(job.trials_dir) / trial_name(tune.get_context().get_trial_id())
    if (run_dir / "run.json").exists():
        return
    reporter = [TuneReporter(run_dir)]
    if (run_dir / CHECKPOINT).exists():
        resume_run(run_dir, data, observers=reporter, evaluate_test=False)
        return
    from fmnist.models import get_preset

    config_ = resolve_config(get_preset(job.model), **{**job.fixed, **trial_options(config)})
    # The folder is this trial's own (named by its id); anything in it is an earlier attempt's
    # start that never finished an epoch, so nothing there can be resumed.
    train_run(job.model, data, config=config_, out_dir=run_dir, observers=reporter, evaluate_test=False,
              overwrite=True)


def trial_error(trial) -> str:
    try:
        error = _staged_error(trial) or trial.get_pickled_error() or trial.get_error()
    except Exception:  # an unreadable error file must not stop the sweep's bookkeeping
        error = None
    return one_line(error) if error is not None else "failed (see the Ray logs)"


def _staged_error(trial) -> BaseException | str | None:
    """The error Tune has just written beside the driver; its copy in the sweep folder, which
    ``get_pickled_error`` reads, only appears when Tune next syncs (after the live line)."""
    import cloudpickle

    if trial.pickled_error_file and os.path.exists(trial.pickled_error_file):
        with open(trial.pickled_error_file, "rb") as f:
            return cloudpickle.load(f)
    if trial.error_file and os.path.exists(trial.error_file):
        return Path(trial.error_file).read_text()
    return None


def one_line(error: BaseException | str) -> str:
    """A failed trial's error as one line: what fmnist said, or the exception's type and first line."""
    if isinstance(error, str):
        text = error.strip().splitlines()
        return text[-1] if text else "failed"
    cause = error
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:
        cause = cause.cause
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, FmnistError):
        return str(cause).splitlines()[0]
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__
