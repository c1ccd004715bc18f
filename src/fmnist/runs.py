"""Training runs and the folders that describe them.

``train_run`` trains any registered model (torch or scikit-learn) on the study's split and,
given a folder, writes a run that describes itself::

    RUN_DIR/
      run.json             what was run: model, resolved training config, data split, versions
      model.json           the model: spec or estimator parameters, class names (no code)
      weights.safetensors  tensors only
      history.json         one dict per epoch (loss, accuracy, val_loss, val_accuracy, time)
      metrics.json         validation and test scores, training time, why training stopped, warnings
      checkpoint.safetensors  torch models: the state after the last finished epoch (weights,
                           optimizer, RNG states, history, config; JSON in its header), rewritten
                           atomically every epoch; ``resume_run`` / ``fmnist train --resume`` continue it
      best.safetensors     with ``checkpoint_best``: the same, for the epoch with the lowest val_loss

run.json is written last: while a run trains (or after it was interrupted) the folder has no
run.json, only the checkpoint. ``load_run`` and ``evaluate_run`` read a finished run back
without the command that made it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fmnist
from fmnist._files import (
    check_free,
    check_other_work,
    claim,
    next_free,
    replaced_by_killed,
    replaced_note,
    work_in,
    write_json,
)
from fmnist._text import shell
from fmnist._threads import torch_threads
from fmnist.data import SPLIT_SEED, VAL_SIZE, Dataset, split_indices
from fmnist.errors import DataError, ModelError, OutputExistsError, RunError, UsageError, option, spelled
from fmnist.evaluation import evaluate
from fmnist.evaluation.metrics import as_features
from fmnist.models import Preset, get_preset
from fmnist.models.io import MODEL_JSON, WEIGHTS, load_model, read_json, save_model
from fmnist.models.registry import build_estimator
from fmnist.models.network import Network
from fmnist.models.spec import ModelSpec
from fmnist.training import Callback, TrainConfig, Trainer
from fmnist.training.callbacks import ModelCheckpoint
from fmnist.training.checkpoint import load_checkpoint

CHECKPOINT = "checkpoint.safetensors"
BEST_CHECKPOINT = "best.safetensors"

RUN_FORMAT = "fmnist-run"
RUN_FORMAT_VERSION = 1
def split_record(holdout: bool = True) -> dict[str, Any] | None:
    """The split a run.json (and a leaderboard) records: the study's, or None when nothing was held out."""
    return {"test_size": VAL_SIZE, "random_state": SPLIT_SEED} if holdout else None


def _split_indices(n: int, record: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(train, validation)`` indices into ``n`` training images for a split record (None: all, and no validation)."""
    if record is None:
        return np.arange(n), None
    return split_indices(n, record.get("test_size", VAL_SIZE), record.get("random_state", SPLIT_SEED))


@dataclasses.dataclass
class RunResult:
    """What ``train_run`` returns: the fitted model, its history and scores."""

    name: str
    preset: Preset
    model: Any
    config: TrainConfig
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    run_dir: Path | None = None
    # Torch models on the CPU: {"threads": the trainer's CPU threads, "step_threads": those
    # its training steps ran with}, as recorded in run.json.
    threads: dict[str, int] | None = None
    # Training images left out (``fmnist.auditing.Exclusion.to_dict()``), None when none were.
    exclude: dict[str, Any] | None = None
    # False: trained on every training image, with no validation split (``train_run(holdout=False)``).
    holdout: bool = True
    # (fold, folds): one fold model of a cross-validation over every training image (the study's
    # linear experiment), which has neither the study's split nor one of its own to score.
    cv_fold: tuple[int, int] | None = None


def versions() -> dict[str, str]:
    import sklearn

    return {"fmnist": fmnist.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__}


# What a scikit-learn preset takes of a training config: the seed (its random_state). Every
# other setting is the torch loop's and would be silently ignored, so it is refused.
SKLEARN_SETTINGS = ("seed",)


def resolve_config(preset: Preset, **overrides: Any) -> TrainConfig:
    """The preset's training defaults, then any explicit overrides (``None`` means not given).

    For a scikit-learn preset the config's ``seed`` is its estimator's ``random_state``: the
    preset's own unless ``seed`` is given; any other override raises :class:`UsageError`.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if preset.family == "sklearn":
        foreign = [k for k in given if k not in SKLEARN_SETTINGS]
        if foreign:
            raise UsageError(f"{', '.join(option(k, given[k]) for k in foreign)}: {preset.name} is a scikit-learn model "
                             f"({preset.params.get('estimator', 'estimator')}), which takes no such setting; "
                             f"of the training options it takes only {option('seed')}")
    defaults = dict(preset.train)
    if preset.family == "sklearn" and isinstance(preset.params.get("random_state"), int):
        defaults.setdefault("seed", preset.params["random_state"])
    return TrainConfig(**{**defaults, **given})


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 of the training images and labels: a resumed run must see the same data."""
    digest = hashlib.sha256(np.ascontiguousarray(data.x_train).data)
    digest.update(np.ascontiguousarray(data.y_train).data)
    return digest.hexdigest()


def run_name(model_name: str) -> str:
    """A readable folder name for a model: the preset's name, or the layer string made path-safe."""
    preset = get_preset(model_name)
    if preset.name != "custom":
        return preset.name
    return re.sub(r"[^A-Za-z0-9.]+", "-", model_name).strip("-.")[:80] or "custom"


def default_run_dir(model_name: str, root: str | Path = "runs") -> Path:
    """``root/NAME`` (:func:`run_name`), or ``NAME-2``, ``NAME-3``... when taken; created empty.

    Two runs of one model, or of two layer strings, never share a folder.
    """
    return next_free(Path(root) / run_name(model_name))


def check_run_dir(run_dir: str | Path, *, overwrite: bool = False) -> None:
    """Refuse (:class:`OutputExistsError`) a folder that holds anything, unless ``overwrite``.

    A finished run, an interrupted one (which ``resume_run`` could continue) and other files
    are all someone's work; training into the folder would replace or mix with them. A folder
    that holds another command's output (a report, an audit...) is refused even with ``overwrite``.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir}: a file, not a folder; a run is a folder: choose another "
                                f"{option('out_dir', cli='--out')}")
    check_other_work(run_dir, "run.json")
    resume = spelled(f"resume_run({str(run_dir)!r}, data)", f"fmnist train --resume {shell(run_dir)}")
    killed = replaced_by_killed(run_dir)
    if (run_dir / "run.json").exists():
        what = "a finished run (run.json)"
    elif (run_dir / CHECKPOINT).exists():
        replacing = f" replacing the run kept in {killed[0]}" if killed else ""
        what = f"an interrupted run{replacing} (continue it with {resume})"
    elif killed:  # a train --overwrite killed before it kept an epoch
        what = f"a run that a killed train --overwrite set aside in {killed[0]} ({resume} puts it back)"
    else:
        what = "other files"
    check_free([run_dir], overwrite=overwrite, what=what)


def forget_run(run_dir: str | Path) -> None:
    """Remove a run's own files from ``run_dir``: what marks it finished or resumable (run.json,
    the checkpoints), so a run replacing it is neither taken for it nor continued from it, and
    its model, history and metrics, so that an interrupted replacement leaves no old model for
    predict or export to pick up. run.json goes first: the folder is never a whole run with
    parts missing. Its exports under their default names (model.onnx, model-2.onnx...) go too:
    they are the old model's. Other files in the folder (reports, the user's own) stay."""
    for stale in _run_files(Path(run_dir)):
        stale.unlink(missing_ok=True)


def train_run(model_name: str, data: Dataset, *, config: TrainConfig | None = None, out_dir: Path | None = None,
              callbacks: Sequence[Callback] = (), evaluate_test: bool = True,
              checkpoint_best: bool = False, overwrite: bool = False,
              observers: Sequence[Callback] = (), exclude=None, holdout: bool = True) -> RunResult:
    """Train ``model_name`` on the study's 48,000 / 12,000 split of ``data`` and score it.

    Validation accuracy is what a user selects models by; the test set (t10k) is scored apart
    and reported as such. ``config.seed`` seeds a torch model's initial weights and shuffling,
    and is a scikit-learn model's ``random_state`` (:func:`resolve_config` gives the preset's
    own when no seed is asked for). With ``out_dir`` a torch model leaves ``checkpoint.safetensors`` there
    after every epoch (see the module docstring), so an interrupted run can be resumed with
    :func:`resume_run`; ``checkpoint_best`` also keeps ``best.safetensors``. ``observers`` are
    callbacks that run after the epoch's checkpoint is written, so what they see is already on
    disk: a sweep trial's reporter, whose report may end the process (a scheduler's stop).

    A folder that already holds a run (finished or interrupted) or other files is refused
    with :class:`OutputExistsError` before anything trains, unless ``overwrite``.

    ``exclude``: an :class:`fmnist.auditing.Exclusion` of the training split (``--exclude``):
    those images leave both sides of the same 48,000 / 12,000 split, so the validation images
    that remain are the ones a run without exclusion is scored on.

    ``holdout=False`` trains on all the training images (60,000): the final fit of a recipe
    chosen on the split, as the Fashion-MNIST benchmark trains its models. The run then has no
    validation score, only the test score, so early stopping and ``checkpoint_best`` (both
    watch the validation loss) are refused.
    """
    exclude = exclude.to_dict() if exclude is not None else None
    # A network gets an output for every class of the data (more than 10 on other MNIST-format data).
    preset = get_preset(model_name)
    classes = len(data.class_names)
    if preset.name == "custom" and preset.spec.num_classes not in (10, classes):
        raise ModelError(f"{model_name}: ends in dense:{preset.spec.num_classes}, and the data has {classes} classes; "
                         f"end it in dense:{classes}, one output per class (or dense:10, widened to the classes)")
    preset = preset.for_classes(classes)
    config = config or resolve_config(preset)
    if not holdout:
        check_no_holdout(config, checkpoint_best)
    if checkpoint_best and preset.family != "torch":
        raise UsageError(f"{option('checkpoint_best', True, cli='--checkpoint')}: {preset.name} is a scikit-learn "
                         "model, trained in one go with no epochs to checkpoint; leave it out")
    if out_dir is None:
        return _train(model_name, preset, data, config, None, callbacks, evaluate_test, checkpoint_best, observers,
                      exclude, holdout)
    # Claimed, then checked: another command given the same folder is refused, not mixed with this one.
    with claim(out_dir):
        _settle_replaced(Path(out_dir), keep_interrupted=True)
        check_run_dir(out_dir, overwrite=overwrite)
        with _replacing(Path(out_dir)):
            return _train(model_name, preset, data, config, Path(out_dir), callbacks, evaluate_test,
                          checkpoint_best, observers, exclude, holdout)


def _settle_replaced(run_dir: Path, *, keep_interrupted: bool) -> bool:
    """What a killed ``train --overwrite`` left in ``run_dir`` (its claim held): the run it set
    aside is removed where the replacement had finished (run.json), and put back where it had
    not. With ``keep_interrupted``, an aside beside an interrupted replacement (a checkpoint)
    stays: both are someone's work, and messages name it (:func:`~fmnist._files.replaced_note`);
    without, the replacement is itself being replaced, and the earlier run comes back for that.
    Returns whether a run was put back."""
    restored = False
    for aside in replaced_by_killed(run_dir):
        if not (run_dir / "run.json").exists():
            if keep_interrupted and (run_dir / CHECKPOINT).exists():
                continue
            _put_back(aside, run_dir)
            restored = True
        shutil.rmtree(aside)
    return restored


@contextlib.contextmanager
def _replacing(run_dir: Path):
    """Replace the run in ``run_dir`` only by a finished one: its files wait in a hidden folder
    while the new run trains, and are put back if training fails or is interrupted (the
    unfinished replacement's files are removed). A folder left aside by a killed process is put
    back first, unless its replacement had finished."""
    _settle_replaced(run_dir, keep_interrupted=False)
    aside = run_dir / f".replaced.{os.getpid()}"
    if not _run_files(run_dir):
        yield
        return
    aside.mkdir()
    _set_aside(run_dir, aside)
    try:
        yield
    except BaseException:
        _put_back(aside, run_dir)
        aside.rmdir()
        raise
    shutil.rmtree(aside)


def settle_replaced_outputs(folder: Path, results: Sequence[str], run_dirs: Sequence[Path]) -> None:
    """What a killed :func:`replacing_outputs` left in ``folder`` (hold its claim): the earlier
    outputs it set aside are put back where the replacement never wrote ``results[0]`` (its
    finished mark), and removed where it did."""
    for aside in replaced_by_killed(folder):
        if not (folder / results[0]).exists():
            _put_back_outputs(aside, folder, results, run_dirs)
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def replacing_outputs(folder: Path, results: Sequence[str], run_dirs: Sequence[Path]) -> Iterator[bool]:
    """Replace a command's outputs in ``folder`` (the study's, a comparison's) only by finished
    ones, as ``train --overwrite`` replaces a run: its ``results`` files (the first marks them
    finished) and its runs' own files in ``run_dirs`` wait in ``folder/.replaced.PID`` while the
    block writes the new ones; they are put back if it fails or is interrupted (the unfinished
    runs' files removed), and go once it has finished. Yields whether anything was set aside.
    Call :func:`settle_replaced_outputs` first, with the folder claimed."""
    found = [folder / name for name in results if (folder / name).is_file()]
    runs = [run for run in run_dirs if _run_files(run)]
    if not found and not runs:
        yield False
        return
    aside = folder / f".replaced.{os.getpid()}"
    aside.mkdir()
    for path in found:  # the finished mark first: the folder stops being a whole set of outputs at once
        os.replace(path, aside / path.name)
    for run in runs:
        held = aside / run.relative_to(folder)
        held.mkdir(parents=True)
        _set_aside(run, held)
    try:
        yield True
    except BaseException:
        _put_back_outputs(aside, folder, results, run_dirs)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _put_back_outputs(aside: Path, folder: Path, results: Sequence[str], run_dirs: Sequence[Path]) -> None:
    for name in results:  # the finished mark first: never a finished study beside another's runs
        (folder / name).unlink(missing_ok=True)
    # Every run set aside goes back (also where this call names fewer runs than the killed one did),
    # in place of the unfinished replacement's files; a run only the replacement had goes.
    held = {path.parent for path in aside.rglob("*") if path.is_file() and path.parent != aside}
    for run in held:
        _put_back(run, folder / run.relative_to(aside))
    for run in run_dirs:
        if aside / run.relative_to(folder) not in held:
            forget_run(run)
    for name in reversed(results):  # the finished mark last
        if (aside / name).is_file():
            os.replace(aside / name, folder / name)


def _run_files(run_dir: Path) -> list[Path]:
    """A run's own files in ``run_dir`` (:func:`forget_run` says which), run.json first."""
    if not run_dir.is_dir():
        return []
    named = [run_dir / name for name in ("run.json", CHECKPOINT, BEST_CHECKPOINT, MODEL_JSON, WEIGHTS,
                                         "history.json", "metrics.json")]
    exports = sorted(p for p in run_dir.iterdir() if re.fullmatch(r"model(-\d+)?\.onnx", p.name))
    return [p for p in [*named, *exports] if p.is_file()]


def _set_aside(run_dir: Path, aside: Path) -> None:
    for path in _run_files(run_dir):  # run.json first: the folder stops being a whole run at once
        os.replace(path, aside / path.name)


def _put_back(aside: Path, run_dir: Path) -> None:
    """The run set aside in ``aside`` is ``run_dir``'s again, in place of what is there now."""
    forget_run(run_dir)
    for path in _run_files(aside)[::-1]:  # run.json last: the folder is a whole run only once it is there
        os.replace(path, run_dir / path.name)


def _train(model_name, preset, data, config, out_dir, callbacks, evaluate_test, checkpoint_best, observers,
           exclude, holdout) -> RunResult:
    if preset.family == "torch":
        torch.manual_seed(config.seed)  # before building: initial weights depend on the seed
        model = Network(preset.spec)
        trainer = Trainer(model, config, [*callbacks, *_checkpoints(out_dir, checkpoint_best, {
            "model": model_name, "preset": preset.to_dict(), "dataset": data.dataset,
            "data_sha256": data_fingerprint(data), "data_source": str(data.source), "checkpoint_best": checkpoint_best,
            "exclude": exclude,
            "holdout": holdout}), *observers])
        return _fit_and_save(trainer, model_name, preset, data, out_dir, evaluate_test, exclude, holdout)
    return _fit_sklearn(model_name, preset, data, config, out_dir, evaluate_test, exclude, holdout)


def check_no_holdout(config: TrainConfig, checkpoint_best: bool = False) -> None:
    """Refuse (:class:`UsageError`) what needs the validation split that ``holdout=False`` gives up."""
    no = spelled("holdout=False", "--no-holdout")
    if config.patience:
        raise UsageError(f"{no}: early stopping ({option('patience', config.patience)}) watches the validation "
                         f"loss, and this run holds out no validation images; add {option('patience', 0)}")
    if checkpoint_best:
        raise UsageError(f"{no}: {option('checkpoint_best', True, cli='--checkpoint')} keeps the epoch with the "
                         "best validation loss, and this run holds out no validation images; leave it out")


def _checkpoints(out_dir: Path | None, best: bool, extra: dict[str, Any]) -> list[Callback]:
    if out_dir is None:
        return []
    # The every-epoch checkpoint goes last so it records the best-only one's state too.
    return [*([ModelCheckpoint(out_dir, save_best_only=True, extra=extra)] if best else []),
            ModelCheckpoint(out_dir, extra=extra)]


def resume_run(run_dir: str | Path, data: Dataset, *, callbacks: Sequence[Callback] = (),
               evaluate_test: bool = True, observers: Sequence[Callback] = (),
               stop: str | None = None) -> RunResult:
    """Continue the interrupted run in ``run_dir`` from its ``checkpoint.safetensors``.

    The config, model spec and data split come from the checkpoint; ``data`` must be the data
    the run started on. On the CPU the result equals the uninterrupted run's, weight for weight.
    ``observers`` as for :func:`train_run`. ``stop``: train no further; write the run folder
    from the checkpoint as it is, with this reason for the stop (a sweep's scheduler ended it).
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        if (run_dir.parent / CHECKPOINT).exists() or (run_dir.parent / "run.json").exists():  # its checkpoint...
            raise RunError(f"{run_dir}: a file of the run folder {run_dir.parent}; name the folder")
        raise RunError(f"{run_dir}: a file, not a run folder; name the folder of a run that fmnist train wrote")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder to resume")
    # Two resumes of one run would write one folder.
    with claim(run_dir, advice="a resume writes into the run's own folder: make it writable, or resume a "
                               "writable copy of it"):
        if _settle_replaced(run_dir, keep_interrupted=True):
            raise RunError(f"{run_dir}: nothing to resume: the train --overwrite replacing the run here was killed "
                           "and left no epoch to continue from, so the run it was replacing is back in place")
        result = _resume(run_dir, data, callbacks, evaluate_test, observers, stop)
        _settle_replaced(run_dir, keep_interrupted=True)  # the replacement has finished: the run it replaced goes
        return result


def _resume(run_dir: Path, data: Dataset, callbacks, evaluate_test, observers, stop) -> RunResult:
    if (run_dir / "run.json").exists():
        raise RunError(f"{run_dir}: this run finished already (run.json is there); train a new one with --out")
    if not (run_dir / CHECKPOINT).exists():
        raise RunError(f"{run_dir}: no {CHECKPOINT} (interrupted before its first epoch ended?); "
                       "train again instead of resuming")
    state = load_checkpoint(run_dir / CHECKPOINT)
    info = state.get("run") or {}
    if info.get("data_sha256") != data_fingerprint(data):
        source = info.get("data_source")
        again = (spelled(f"load_dataset({source!r}, dataset={info.get('dataset')!r})",
                         f"--dataset {info.get('dataset')} --data-dir {shell(source)}") if source else
                 "the same --data-dir/--dataset as when it started")
        raise RunError(f"{run_dir / CHECKPOINT}: the run trained on other data ({info.get('dataset')}"
                       f"{', ' + source if source else ''}); resume it with its own: {again}")
    config = TrainConfig(**state["config"])
    preset = _preset_from_dict(info["preset"])
    model = Network(preset.spec)
    trainer = Trainer(model, config, [*callbacks, *_checkpoints(run_dir, bool(info.get("checkpoint_best")), info),
                                      *observers])
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise RunError(f"{run_dir / CHECKPOINT}: cannot be restored here ({exc!s:.200}); train the run again") from None
    if stop is not None and trainer.epoch < config.epochs:
        # A scheduler that ends a trial at its last epoch stopped nothing: the run is whole.
        trainer.stop_training, trainer.stop_reason = True, stop
    if trainer.stop_training:
        # Stopped early but interrupted before the run folder was written: finish, train no more.
        trainer.callbacks.insert(0, _StopAtOnce())
    return _fit_and_save(trainer, info["model"], preset, data, run_dir, evaluate_test, info.get("exclude"),
                         info.get("holdout", True))


def load_checkpoint_model(path: str | Path) -> Network:
    """The network saved in a run's checkpoint (``best.safetensors`` or ``checkpoint.safetensors``), in eval mode.

    What Keras's ``load_model('best-model.keras')`` does in the book's chapter 7-3.
    """
    path = Path(path)
    state = load_checkpoint(path)
    try:
        model = Network(ModelSpec.from_dict(state["run"]["preset"]["spec"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise RunError(f"{path}: not a run checkpoint with a model ({exc!s:.200})") from None
    return model.eval()


class _StopAtOnce(Callback):
    def on_train_begin(self, trainer: Trainer) -> None:
        trainer.stop_training = True


def _preset_from_dict(d: dict[str, Any]) -> Preset:
    return Preset(d["name"], d.get("description", ""), d["family"], spec=ModelSpec.from_dict(d["spec"]),
                  params=d.get("params") or {}, train=d.get("train") or {}, source=d.get("source", ""))


def _split(data: Dataset, exclude: dict[str, Any] | None = None, holdout: bool = True):
    """``(x_tr, x_val, y_tr, y_val)``: the study's split, less the training images ``exclude`` names.

    Without ``holdout`` every training image is trained on, and ``x_val``, ``y_val`` are None.
    """
    n = len(data.x_train)
    tr, val = _split_indices(n, split_record(holdout))
    if exclude:
        drop = np.asarray(exclude["indices"], dtype=np.int64)
        tr = tr[~np.isin(tr, drop)]
        val = None if val is None else val[~np.isin(val, drop)]
    if val is None:
        return data.x_train[tr], None, data.y_train[tr], None
    return data.x_train[tr], data.x_train[val], data.y_train[tr], data.y_train[val]


def _fit_and_save(trainer: Trainer, model_name: str, preset: Preset, data: Dataset, out_dir: Path | None,
                  evaluate_test: bool, exclude: dict[str, Any] | None = None, holdout: bool = True) -> RunResult:
    x_tr, x_val, y_tr, y_val = _split(data, exclude, holdout)
    already = sum(h.get("time", 0.0) for h in trainer.history)  # a resumed run counts its earlier epochs
    epochs_before = len(trainer.history)
    start = time.perf_counter()
    cpu = trainer.device.type == "cpu"
    history = trainer.fit(x_tr, y_tr, validation_data=None if x_val is None else (x_val, y_val))
    # Training's time only: a run completed from its checkpoint (a trial a scheduler stopped)
    # trained no more and adds nothing, and the final scoring below is no training.
    trained = already + (time.perf_counter() - start if len(trainer.history) > epochs_before else 0.0)
    # The final scores use the trainer's thread count too: a sweep trial stays in its allotment.
    with torch_threads(trainer.threads if cpu else torch.get_num_threads()):
        metrics: dict[str, Any] = {"val": evaluate(trainer.model, x_val, y_val)} if x_val is not None else {}
        metrics["train_time_s"] = trained
        metrics["weights_epoch"] = trainer.weights_epoch
        if trainer.stop_reason:
            metrics["stopped"] = trainer.stop_reason
        # The run records what training used (learning rate, weight decay, device...), not "default".
        config = trainer.config.resolved(device=str(trainer.device))
        threads = trainer.threads_used()
        return _finish(model_name, preset, trainer.model, config, history, metrics, data, out_dir, evaluate_test,
                       threads=threads, exclude=exclude, holdout=holdout)


@contextlib.contextmanager
def recorded_warnings():
    """Collect the warnings raised inside as sorted, unique ``"Category: message"`` lines.

    For warnings that are expected and belong in a run's metrics (scikit-learn's
    ConvergenceWarning at the study's max_iter=5), not on the user's terminal.
    """
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield caught
    caught.extend(sorted({f"{w.category.__name__}: {w.message}" for w in records}))


def _fit_sklearn(model_name: str, preset: Preset, data: Dataset, config: TrainConfig, out_dir: Path | None,
                 evaluate_test: bool, exclude: dict[str, Any] | None = None, holdout: bool = True) -> RunResult:
    x_tr, x_val, y_tr, y_val = _split(data, exclude, holdout)
    _check_sklearn_labels(data, y_tr, y_val, evaluate_test)
    if "random_state" in preset.params:
        # The seed asked for, recorded in the preset that run.json keeps, so it says what ran.
        preset = dataclasses.replace(preset, params={**preset.params, "random_state": config.seed})
    start = time.perf_counter()
    model = build_estimator(preset)
    # The study's max_iter=5 does not converge; scikit-learn says so. Expected: record it.
    with recorded_warnings() as caught:
        model.fit(as_features(x_tr), y_tr)
    history: list[dict[str, Any]] = []
    train_time = time.perf_counter() - start
    metrics: dict[str, Any] = {"val": evaluate(model, x_val, y_val)} if x_val is not None else {}
    metrics["train_time_s"] = train_time
    # SGD's passes over the data: what the run folder's model file does not keep.
    metrics["n_iter"] = int(getattr(model, "n_iter_", 0)) or None
    if caught:
        metrics["warnings"] = caught
    return _finish(model_name, preset, model, config, history, metrics, data, out_dir, evaluate_test,
                   exclude=exclude, holdout=holdout)


def _check_sklearn_labels(data: Dataset, y_tr, y_val, evaluate_test: bool) -> None:
    """Refuse, before fitting, labels a scikit-learn model cannot be trained or scored on: one
    class only, or a validation or test label no training image has (its columns are the labels
    it was fitted on; a network's outputs cover every label up to the largest)."""
    seen = np.unique(y_tr)
    if len(seen) < 2:
        raise DataError(f"{data.source}: the training images hold one class only ({seen[0].item()}); a classifier "
                         "needs two or more")
    for split, labels in (("validation", y_val), ("test", data.y_test if evaluate_test else None)):
        if labels is None:
            continue
        unseen = np.flatnonzero(~np.isin(labels, seen))
        if len(unseen):
            more = f" (and {len(unseen) - 1} more)" if len(unseen) > 1 else ""
            raise DataError(f"{data.source}: {split} label {labels[unseen[0]].item()}{more} is the class of no "
                            "training image; a scikit-learn model knows only the classes it was trained on: train a "
                            "network, or give it data with every class in training")


def _finish(model_name: str, preset: Preset, model: Any, config: TrainConfig, history: list[dict[str, Any]],
            metrics: dict[str, Any], data: Dataset, out_dir: Path | None, evaluate_test: bool, *,
            threads: dict[str, int] | None = None, exclude: dict[str, Any] | None = None,
            holdout: bool = True) -> RunResult:
    if evaluate_test:
        metrics["test"] = evaluate(model, data.x_test, data.y_test)
    result = RunResult(preset.name if preset.name != "custom" else model_name, preset, model, config, history,
                       metrics, threads=threads, exclude=exclude, holdout=holdout)
    if out_dir is not None:
        result.run_dir = save_run(result, Path(out_dir), data)
    return result


def save_run(result: RunResult, run_dir: Path, data: Dataset) -> Path:
    """Write the run folder (each file atomically); the weights go last but one, run.json last."""
    names = tuple(data.class_names)
    if hasattr(result.model, "classes_"):
        # A scikit-learn model has a column for each label it saw, in classes_' order (labels
        # 5..9 only: five columns, named as the data names labels 5..9).
        names = tuple(names[int(c)] if 0 <= int(c) < len(names) else str(c) for c in result.model.classes_)
    outputs = getattr(getattr(result.model, "spec", None), "num_classes", len(names))
    # Data whose labels stop short of the network's outputs (two classes, or MNIST without
    # its 9s) still names every output: the labels' own names, then the rest by number.
    names += tuple(str(i) for i in range(len(names), outputs))
    # The run folder was checked before training (check_run_dir): what it held may be replaced.
    save_model(result.model, run_dir, name=result.name, class_names=names, overwrite=True)
    write_json(run_dir / "history.json", result.history)
    write_json(run_dir / "metrics.json", result.metrics)
    # run.json last: its presence marks a complete run folder.
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
        "model": result.name, "preset": result.preset.to_dict(),
        "config": result.config.to_dict() if result.preset.family == "torch" else None,
        "threads": result.threads,
        "data": {"dataset": data.dataset, "source": str(data.source), "verified": data.verified,
                 "sha256": data_fingerprint(data),  # of the training images its splits are drawn from
                 # None: trained on every training image, no validation split (train_run(holdout=False)).
                 "split": ({"cross_validation_folds": result.cv_fold[1], "fold": result.cv_fold[0]}
                           if result.cv_fold else split_record(result.holdout)),
                 **({"exclude": result.exclude} if result.exclude else {})},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
    })
    return run_dir


@dataclasses.dataclass
class Run:
    """A run folder read back: its description, model, history and metrics."""

    run_dir: Path
    info: dict[str, Any]
    model: Any
    history: list[dict[str, Any]]
    metrics: dict[str, Any]


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    run_dir = Path(run_dir)
    if run_dir.is_file() and (run_dir.parent / "run.json").is_file():  # its checkpoint, its model.json...
        raise RunError(f"{run_dir}: a file of the run folder {run_dir.parent}; name the folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: a file, not a run folder; name a folder that fmnist train wrote")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder; train one with 'fmnist train MODEL --out {shell(run_dir)}'")
    if not (run_dir / "run.json").exists():
        killed = replaced_note(run_dir)
        if killed:
            raise RunError(f"{run_dir}: no finished run (no run.json){killed}")
        if (run_dir / CHECKPOINT).exists():
            raise RunError(f"{run_dir}: an interrupted run (no run.json yet); finish it with "
                           f"{spelled(f'resume_run({str(run_dir)!r}, data)', f'fmnist train --resume {shell(run_dir)}')}")
        other = work_in(run_dir)
        if other:
            raise RunError(f"{run_dir}: holds {other[0]} ({other[1]}), not a run; name a folder that fmnist train "
                           "wrote")
        raise RunError(f"{run_dir}: not a run folder (no run.json); name a folder that fmnist train wrote, or "
                       f"train one with 'fmnist train MODEL --out {shell(run_dir)}'")
    info = read_json(run_dir / "run.json", "fmnist run description (run.json)")
    if info.get("format") != RUN_FORMAT:
        raise RunError(f"{run_dir / 'run.json'}: not an fmnist run (format is {info.get('format')!r})")
    model = load_model(run_dir, device=device)
    history = _read_list(run_dir / "history.json")
    metrics = read_json(run_dir / "metrics.json", "metrics file") if (run_dir / "metrics.json").exists() else {}
    return Run(run_dir, info, model, history, metrics)


def _read_list(path: Path) -> list:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: a number past int()'s digits too
        raise RunError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, list):
        raise RunError(f"{path}: expected a list of per-epoch records")
    return data


def run_split(run: Run, n: int, need_val: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(train, validation)`` indices into the ``n`` training images, as the run's run.json records them.

    A run trained without a validation split (``holdout=False``) trained on every image; asking
    for its validation images (``need_val``) raises :class:`RunError`.
    """
    record = run.info.get("data", {}).get("split", {})  # no record (older runs): the study's split
    if record and "cross_validation_folds" in record:
        raise RunError(f"{run.run_dir}: this model is fold {record.get('fold', 0) + 1} of a "
                       f"{record['cross_validation_folds']}-fold cross-validation over all {n:,} training images, "
                       "so no split of them is unseen by it; score it on the test set (--split test)")
    if record is None and need_val:
        raise RunError(f"{run.run_dir}: this run trained on all {n:,} training images (--no-holdout), so it has "
                       "no validation split; score it on the test set (--split test)")
    return _split_indices(n, record)


def check_own_data(run: Run, data: Dataset, split: str) -> None:
    """Refuse (:class:`RunError`) to take ``split`` ("val" or "train") of data the run did not train on.

    Its split of other data is no split of its: Fashion-MNIST, found by default, scored a
    custom-data run's "validation" on 12,000 images it never saw, and other custom data of the
    same size on images unrelated to it. (A test set of other data is a fair question, asked
    with the test split.) Runs that recorded no fingerprint are checked by their data's kind.
    """
    if trained_on_other_data(run, data):
        record = run.info.get("data", {})
        trained_on, source = record.get("dataset"), record.get("source")
        again = spelled(f"load_dataset({source!r}, dataset={trained_on!r})",
                        f"--dataset {trained_on} --data-dir {shell(source)}")
        raise RunError(f"{run.run_dir}: the run trained on other data ({trained_on}, {source}) than the "
                       f"{data.dataset} data given ({data.source}), so its {split} split is not there; score it on "
                       f"its own data: {again}")


def trained_on_other_data(run: Run, data: Dataset) -> bool:
    """Whether ``data`` is not what the run trained on (by its images' fingerprint, or, for runs
    that recorded none, by the data's kind)."""
    record = run.info.get("data", {})
    if record.get("sha256") is not None:
        return record["sha256"] != data_fingerprint(data)
    return bool(record.get("dataset")) and record.get("dataset") != data.dataset


def split_data(run: Run, data: Dataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, labels, indices)`` of ``split`` as the run saw it: ``"test"``, or the run's own
    ``"val"`` or ``"train"`` split of the training images (of its own data only), without the
    images it left out (``exclude`` when it trained). Indices are into the test or training set."""
    if split == "test":
        return data.x_test, data.y_test, np.arange(len(data.x_test))
    if split not in ("val", "train"):
        raise UsageError(f"{option('split')}: unknown split {split!r}; choose val, test or train")
    check_own_data(run, data, split)
    tr, val = run_split(run, len(data.x_train), need_val=split == "val")
    idx = tr if split == "train" else val
    left_out = run.info.get("data", {}).get("exclude")
    if left_out:  # the images the run itself left out are not part of its split
        idx = idx[~np.isin(idx, np.asarray(left_out["indices"], dtype=np.int64))]
    return data.x_train[idx], data.y_train[idx], idx


def evaluate_run(run_dir: str | Path, data: Dataset, split: str = "val", exclude=None) -> dict[str, Any]:
    """Reload a run and score it on ``split``: ``"val"`` (the run's own split), ``"test"`` or ``"train"``.

    Returns ``{"run", "model", "split", "loss", "accuracy", "n"}``, and ``"other_data"`` (which
    data, and which the run trained on) where ``data`` is not the run's own. ``exclude``: an audit's
    flagged images (``"DIR/audit.json[:kinds]"`` or an :class:`fmnist.auditing.Exclusion`; of
    the test split for ``"test"``, of the training split otherwise): the split is then also
    scored without them, under ``"cleaned"`` (``loss``, ``accuracy``, ``n``, ``excluded``),
    always beside the full split's scores.
    """
    run = load_run(run_dir)
    images, labels, idx = split_data(run, data, split)
    result = {"run": str(run.run_dir), "model": run.info.get("model"), "split": split,
              **evaluate(run.model, images, labels)}
    if trained_on_other_data(run, data):  # a fair question of a test set, but the answer must say so
        record = run.info.get("data", {})
        result["other_data"] = {"dataset": data.dataset, "source": str(data.source),
                                "trained_on": {"dataset": record.get("dataset"), "source": record.get("source")}}
    if exclude is not None:
        if not hasattr(exclude, "indices"):
            from fmnist.auditing.exclude import load_exclusion

            exclude = load_exclusion(exclude, data, "test" if split == "test" else "train")
        keep = ~np.isin(idx, exclude.indices)
        result["cleaned"] = {**evaluate(run.model, images[keep], labels[keep]), "excluded": int((~keep).sum()),
                             "audit": exclude.path, "kinds": list(exclude.kinds)}
    return result
