"""Hyperparameter sweeps on Ray Tune: ``fmnist sweep`` and :func:`sweep`.

Each trial is one ordinary training run (fmnist.runs) in a Ray Tune trial, reported epoch by
epoch by a callback (:class:`~fmnist.tuning._trial.TuneReporter`); Tune runs the trials on a
local Ray or a cluster, stops weak ones early (ASHA), and restores an interrupted sweep. Every
trial trains on the same 48,000 images and is judged on the same 12,000 validation images;
only the chosen best trial is scored on the test set (t10k), reported apart. With several training seeds
(``--seeds``), every point of the search trains once per seed and the points are ranked by
their mean, each with its gap to the leader paired by seed (:mod:`fmnist.evaluation.replicates`),
so that a lucky seed does not pick the winner::

    DIR/
      sweep.json          what was asked (model, SPECs, samples, scheduler, ...): --resume reads it
      leaderboard.json    {"metric", "best", "trials", "cluster"}, best first (with seeds also
                          "seeds" and "points", the trials grouped by point)
      leaderboard.md      the same, for people
      trials/trial-NNNNN/ one run folder per trial (fmnist evaluate/report/predict/export work on it)
      tune/               Ray Tune's experiment state (what a resume restores)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from fmnist._files import atomic_write_all, check_not_busy, claim, holds_work, json_writer, text_writer, write_json
from fmnist._ray import ray_session, require_ray
from fmnist._text import shell
from fmnist.errors import RunError, UsageError, option, spelled
from fmnist.reporting.leaderboard import spread, verdict
from fmnist.tuning.space import ParamSpec, expand, grid_size, param_space, parse_params

SWEEP_FORMAT = "fmnist-sweep"
SWEEP_FILE, LEADERBOARD_FILE, LEADERBOARD_MD = "sweep.json", "leaderboard.json", "leaderboard.md"
TRIALS_DIR, TUNE_DIR = "trials", "tune"
METRICS = {"val_accuracy": "max", "val_loss": "min"}
SCHEDULERS = ("fifo", "asha")
DRAW_SEED = 42  # the random SPECs' draws when no --seed is given: a sweep repeats by default


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated sweep request; what sweep.json records and ``--resume`` reads back."""

    model: str
    params: tuple[str, ...]
    samples: int
    scheduler: str
    metric: str
    epochs: int | None
    cpus_per_trial: int
    seed: int | None
    seeds: tuple[int, ...] | None = None
    gpus_per_trial: float = 0

    @property
    def specs(self) -> list[ParamSpec]:
        return parse_params(self.params)

    @property
    def trials(self) -> int:
        return grid_size(self.specs) * self.samples * len(self.seeds or (None,))

    @property
    def draw_seed(self) -> int:
        return DRAW_SEED if self.seed is None else self.seed

    def fixed(self) -> dict[str, Any]:
        """Training options every trial shares (None: the preset's); with ``seeds`` each trial has its own."""
        return {"epochs": self.epochs, "seed": None if self.seeds else self.seed}

    def space(self) -> dict[str, Any]:
        """Tune's ``param_space``. With seeds, the points are drawn first (``point``, the same
        draws for every seed) and crossed with the seeds (``seed``): a point's replicates differ
        by their training seed only."""
        from ray import tune

        if not self.seeds:
            return param_space(self.specs)
        # Each point carries its number: random draws may repeat a point, which is still its own.
        points = [{"index": i, "params": p} for i, p in enumerate(expand(self.specs, self.samples, self.draw_seed), 1)]
        return {"point": tune.grid_search(points), "seed": tune.grid_search(list(self.seeds))}

    def max_epochs(self) -> int:
        from fmnist.models import get_preset
        from fmnist.runs import resolve_config

        for spec in self.specs:
            if spec.name == "epochs":
                return int(spec.possible_max())
        return resolve_config(get_preset(self.model), **self.fixed()).epochs


# Points checked one by one before a sweep starts; a larger grid is checked value by value.
_MAX_CHECKED = 4096


def _firsts(specs) -> dict[str, Any]:
    return {spec.name: (spec.values or (spec.low,))[0] for spec in specs}


def plan_sweep(model: str, params: Sequence[str] | Mapping[str, Any] = (), *, samples: int | None = None,
               scheduler: str = "fifo", metric: str = "val_accuracy", epochs: int | None = None,
               cpus_per_trial: int = 1, seed: int | None = None, seeds: Sequence[int] | None = None,
               gpus_per_trial: float = 0) -> SweepPlan:
    """Check a sweep request before anything starts; every mistake is a :class:`UsageError`."""
    from fmnist.models import get_preset
    from fmnist.runs import resolve_config

    preset = get_preset(model)
    if preset.family != "torch":
        raise UsageError(f"sweep: {model} is a scikit-learn preset; sweeps train torch models "
                         "(a preset such as mlp-200, or a layer spec)")
    texts = _param_texts(params)
    specs = parse_params(texts)
    if metric not in METRICS:
        raise UsageError(f"--metric: unknown metric {metric!r}; choose {', '.join(METRICS)} "
                         "(the test set chooses nothing)")
    if scheduler not in SCHEDULERS:
        raise UsageError(f"--scheduler: unknown scheduler {scheduler!r}; choose {', '.join(SCHEDULERS)}")
    if cpus_per_trial < 1:
        raise UsageError(f"--cpus-per-trial must be at least 1, got {cpus_per_trial}")
    if not 0 <= gpus_per_trial < math.inf:
        raise UsageError(f"--gpus-per-trial must be 0 or more, got {gpus_per_trial}")
    names = {s.name for s in specs}
    # Ray hides the GPUs from a trial that holds none: device=cuda would fail in every trial.
    cuda = [v for s in specs if s.name == "device" for v in s.values or () if str(v).startswith("cuda")]
    if cuda and not gpus_per_trial:
        raise UsageError(f"--param device={cuda[0]}: a trial sees a GPU only when it holds one; add "
                         "--gpus-per-trial 1 (or a fraction such as 0.25, for trials sharing a GPU)")
    if epochs is not None and "epochs" in names:
        raise UsageError("--epochs and --param epochs=... both set the epochs; give one of them")
    if seeds is not None:
        from fmnist.evaluation.replicates import check_seeds

        seeds = check_seeds(seeds)
        if scheduler == "asha":
            raise UsageError("--seeds with --scheduler asha: ASHA stops single trials early, so a point's seeds "
                             "would not train alike; use --scheduler fifo")
    random = any(s.random for s in specs)
    if samples is None:
        samples = 10 if random else 1
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}")
    if samples > 1 and not random:
        raise UsageError(f"--samples {samples}: only random SPECs (uniform:, loguniform:, randint:, choice:) are "
                         "drawn; a grid runs each point once")
    fixed = {"epochs": epochs, "seed": seed}
    resolve_config(preset, **fixed)  # a bad --epochs fails here, not in every trial
    for s in seeds or ():
        resolve_config(preset, **{**fixed, "seed": s})
    # Every config a trial may get is valid (a range: both ends), or the flags say why. Together,
    # not one by one: pct_start needs schedule=onecycle beside it, and momentum=0.9 suits sgd
    # but not adam.
    for spec in specs:  # each alone first, for the plainest message where one value is wrong
        for value in spec.values or (spec.low, spec.high):
            try:
                resolve_config(preset, **{**fixed, **_firsts(specs), spec.name: value})
            except UsageError:
                try:
                    resolve_config(preset, **{**fixed, spec.name: value})
                except UsageError as exc:
                    raise UsageError(f"--param {spec.text}: {exc.cli_message}") from None
    choices = [spec.values or (spec.low, spec.high) for spec in specs]
    if math.prod(len(c) for c in choices) <= _MAX_CHECKED:
        for combo in itertools.product(*choices):
            point = dict(zip((spec.name for spec in specs), combo))
            try:
                resolve_config(preset, **{**fixed, **point})
            except UsageError as exc:
                where = ", ".join(f"{k}={v}" for k, v in point.items())
                raise UsageError(f"{' '.join(f'--param {spec.text}' for spec in specs)}: the point {where} "
                                 f"fails: {exc.cli_message}") from None
    return SweepPlan(model, tuple(texts), samples, scheduler, metric, epochs, cpus_per_trial, seed, seeds,
                     gpus_per_trial)


def sweep(model: str, params: Sequence[str] | Mapping[str, Any] = (), data=None, *, samples: int | None = None,
          scheduler: str = "fifo", metric: str = "val_accuracy", epochs: int | None = None,
          cpus_per_trial: int = 1, address: str | None = None, out_dir: str | Path | None = None,
          seed: int | None = None, seeds: Sequence[int] | None = None, gpus_per_trial: float = 0,
          on_trial: Callable[[dict[str, Any]], None] | None = None,
          on_start: Callable[[Any, int], None] | None = None, progress: TextIO | None = None) -> dict[str, Any]:
    """Train ``model`` once per point of the search space ``params``; return the leaderboard.

    ``params``: ``{"lr": "loguniform:1e-4:1e-2", "batch_size": [32, 64]}`` or
    ``["lr=loguniform:1e-4:1e-2", "batch_size=32,64"]`` (SPECs: :mod:`fmnist.tuning.space`).
    Grids combine as a full grid; random SPECs are drawn ``samples`` times (default 10 when there
    are any, else 1), seeded by ``seed``, which is also every trial's training seed (default:
    the draws use 42, training the preset's seed). ``seeds`` (two or more): every point trains
    once per seed, and points are ranked by their mean over the seeds (``seed`` then seeds the
    draws only; not with ASHA, which would stop some replicates and not others). ``scheduler``:
    ``"fifo"`` (every trial runs to the end) or ``"asha"`` (weak trials stop early, judged on
    ``metric`` each epoch). ``gpus_per_trial``: the Ray GPUs each trial holds (a fraction shares
    one); without them a trial trains on its CPUs, since Ray hides the GPUs from it.
    ``epochs``: every trial's epochs (default: the preset's). ``address``: a Ray cluster
    (``"auto"``, ``"host:port"``; default ``$RAY_ADDRESS``, else a local Ray). ``data``: a
    :class:`~fmnist.data.Dataset` (default: ``fmnist.load_dataset()``). ``on_trial`` is called
    with each finished trial's leaderboard row, ``on_start`` with the
    :class:`~fmnist._ray.ClusterInfo` and the number of trials; ``progress``: a stream for a
    progress bar (shown on a terminal only).

    Returns ``{"metric", "best", "trials", "cluster"}`` (also DIR/leaderboard.json): trials best
    first, each ``{"trial", "params", "val_accuracy", "val_loss", "epochs", "status"
    ("finished", "stopped" or "failed"), "error", "time_s", "run_dir"}``; ``best`` is the best
    trial with its test-set scores. With ``seeds``, also ``"seeds"`` and ``"points"``: the
    trials grouped by point, best mean first, each ``{"point", "params", metric and the other
    score's means and standard deviations, "val_gap", "val_gap_se", "beyond_noise", "epochs",
    "time_s", "status", "error", "runs"}``; ``best`` is then the best point, its test scores the
    mean and standard deviation over its seeds' runs (each in ``runs``), its ``trial`` and
    ``run_dir`` its first seed's. Ctrl-C raises KeyboardInterrupt and leaves ``out_dir``
    resumable with :func:`resume_sweep`.
    """
    plan = plan_sweep(model, params, samples=samples, scheduler=scheduler, metric=metric, epochs=epochs,
                      cpus_per_trial=cpus_per_trial, seed=seed, seeds=seeds, gpus_per_trial=gpus_per_trial)
    out = Path(out_dir) if out_dir is not None else default_out(model)
    check_not_busy(out)
    require_ray()
    data = data if data is not None else _default_data()
    # Claimed, then checked: a second sweep given the same folder is refused, not mixed with this one.
    with claim(out):
        place, other = option("out_dir", str(out), cli="--out"), option("out_dir", cli="--out")
        if (out / LEADERBOARD_FILE).exists():
            raise UsageError(f"{place}: a finished sweep is there (its leaderboard: {out / LEADERBOARD_MD}); "
                             f"choose another {other}")
        if (out / SWEEP_FILE).exists():
            resume = spelled(f"resume_sweep({str(out)!r})", f"'fmnist sweep --resume {shell(out)}'")
            raise UsageError(f"{place}: a sweep is there already; continue it with {resume}, or choose another {other}")
        if holds_work(out):
            raise UsageError(f"{place}: the folder is not empty; choose a new or empty folder")
        return _run(plan, out.resolve(), data, address, restore=False, on_trial=on_trial, on_start=on_start,
                    progress=progress)


def resume_sweep(out_dir: str | Path, data=None, *, address: str | None = None,
                 on_trial: Callable[[dict[str, Any]], None] | None = None,
                 on_start: Callable[[Any, int], None] | None = None,
                 progress: TextIO | None = None) -> dict[str, Any]:
    """Finish the interrupted sweep in ``out_dir``: finished trials are kept, not trained again."""
    out = Path(out_dir)
    check_not_busy(out)  # the sweep may still be running, not interrupted (its sweep.json half-way there)
    plan, recorded = read_plan(out)
    if (out / LEADERBOARD_FILE).exists():  # written once, when the last trial is done
        raise RunError(f"{out}: this sweep finished already; its leaderboard is {out / LEADERBOARD_MD} (a new "
                       "sweep needs a new --out)")
    require_ray()
    data = data if data is not None else _default_data()
    if recorded.get("data", {}).get("sha256") != _data_record(data)["sha256"]:
        raise RunError(f"{out / SWEEP_FILE}: the sweep trained on other data "
                       f"({recorded.get('data', {}).get('source')}); pass the same --data-dir/--dataset as when it "
                       "started")
    if not (out / TUNE_DIR).is_dir():
        raise RunError(f"{out}: no Ray Tune state ({TUNE_DIR}/): the sweep was interrupted before it started; "
                       "start it again with a new --out")
    with claim(out):
        return _run(plan, out.resolve(), data, address, restore=True, on_trial=on_trial, on_start=on_start,
                    progress=progress)


def read_plan(out_dir: Path) -> tuple[SweepPlan, dict[str, Any]]:
    from fmnist.models.io import read_json

    if not Path(out_dir).is_dir():
        raise RunError(f"{out_dir}: no such sweep folder")
    recorded = read_json(Path(out_dir) / SWEEP_FILE, "fmnist sweep description (sweep.json)")
    if recorded.get("format") != SWEEP_FORMAT:
        raise RunError(f"{Path(out_dir) / SWEEP_FILE}: not an fmnist sweep (format is {recorded.get('format')!r})")
    fields = {f.name for f in dataclasses.fields(SweepPlan)}
    try:
        plan = SweepPlan(**{k: v for k, v in recorded.items() if k in fields})
        plan = dataclasses.replace(plan, params=tuple(plan.params),
                                   seeds=tuple(plan.seeds) if plan.seeds is not None else None)
    except TypeError as exc:
        raise RunError(f"{Path(out_dir) / SWEEP_FILE}: incomplete ({exc})") from None
    return plan, recorded


# --- running it on Ray Tune -----------------------------------------------------------------------

def _run(plan: SweepPlan, out: Path, data, address: str | None, *, restore: bool,
         on_trial: Callable[[dict[str, Any]], None] | None, on_start: Callable[[Any, int], None] | None,
         progress: TextIO | None) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from fmnist.tuning._trial import TrialJob, run_trial, trial_name
    from fmnist.tuning._watch import TrialWatcher

    with ray_session(address) as cluster:
        if plan.cpus_per_trial > cluster.cpus:
            raise UsageError(f"--cpus-per-trial {plan.cpus_per_trial}: the Ray cluster at {cluster.address} has "
                             f"{cluster.cpus} CPUs")
        if plan.gpus_per_trial > cluster.gpus:
            raise UsageError(f"--gpus-per-trial {plan.gpus_per_trial:g}: the Ray cluster at {cluster.address} has "
                             f"{cluster.gpus:g} GPUs")
        if not restore:  # written once the sweep can start: a refused one leaves no folder behind
            write_json(out / SWEEP_FILE, {"format": SWEEP_FORMAT, "format_version": 1, **dataclasses.asdict(plan),
                                          "data": _data_record(data)})
        if on_start is not None:
            on_start(cluster, plan.trials)
        job = TrialJob(plan.model, plan.fixed(), str(out / TRIALS_DIR), plan.cpus_per_trial)
        trainable = tune.with_resources(tune.with_parameters(run_trial, job=job, data=data),
                                        {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial})
        watcher = TrialWatcher(plan.trials, lambda trial, error: _live_row(plan, out, trial, error), on_trial,
                               progress, finished=_finished(out) if restore else set())
        if restore:
            # Restoring, Tune warns about every trial that had not reported yet; those are the
            # trials the resume is for.
            with _quiet_tune():
                tuner = tune.Tuner.restore(str(out / TUNE_DIR), trainable=trainable, resume_unfinished=True,
                                           resume_errored=False, restart_errored=False)
            # Tune restores its callbacks from its own pickle; ours writes to this terminal.
            tuner._local_tuner.get_run_config().callbacks = [watcher]
        else:
            mode = METRICS[plan.metric]
            scheduler = (ASHAScheduler(time_attr="epoch", metric=plan.metric, mode=mode, max_t=plan.max_epochs(),
                                       grace_period=1, stop_last_trials=False)
                         if plan.scheduler == "asha" else FIFOScheduler())
            tuner = tune.Tuner(
                trainable, param_space=plan.space(),
                tune_config=tune.TuneConfig(
                    # With seeds the points are drawn already (plan.space): one pass over the grid.
                    num_samples=1 if plan.seeds else plan.samples, scheduler=scheduler,
                    search_alg=BasicVariantGenerator(random_state=plan.draw_seed),
                    trial_dirname_creator=lambda trial: trial_name(trial.trial_id),
                    trial_name_creator=lambda trial: trial_name(trial.trial_id),
                    # No reused trial actors: a stopped trial's process ends, and its threads with it.
                    reuse_actors=False),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(out), verbose=0, callbacks=[watcher],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    failure_config=tune.FailureConfig(max_failures=0)))
        with watcher, _quiet_tune():
            grid = tuner.fit()
        if grid.num_terminated + grid.num_errors < len(grid):
            raise KeyboardInterrupt(f"sweep interrupted; resume with: fmnist sweep --resume {shell(out)}")
        board = _leaderboard(plan, out, grid, data, cluster)
    # The pair together, leaderboard.json (what marks the sweep finished) renamed last.
    atomic_write_all([(out / LEADERBOARD_MD, text_writer(format_markdown(board, plan))),
                      (out / LEADERBOARD_FILE, json_writer(board))])
    return board


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune logs each failed trial's traceback and its own start-up and shut-down notes; a sweep
    prints one line per trial instead, so its loggers are silenced while it runs."""
    loggers = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    # Tune's newer console output prints its experiment table and paths whatever the verbosity;
    # the classic one honours verbose=0. Tune's own Ctrl-C handler ends the run as if it had
    # finished (every trial marked terminated), so a sweep could not tell it was interrupted:
    # Ctrl-C stays a KeyboardInterrupt. Tune's state on disk and the run folders' checkpoints
    # are what a resume continues from.
    env = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the leaderboard ------------------------------------------------------------------------------

def _leaderboard(plan: SweepPlan, out: Path, grid, data, cluster) -> dict[str, Any]:
    from fmnist.runs import CHECKPOINT, load_run, resume_run
    from fmnist.tuning._trial import one_line

    rows = []
    for result in grid:
        name = Path(result.path).name
        run_dir = out / TRIALS_DIR / name
        error = one_line(result.error) if result.error is not None else None
        if error is None and not (run_dir / "run.json").exists():
            if (run_dir / CHECKPOINT).exists():
                # The scheduler ended the trial after the epoch it judged (on disk already):
                # the run folder is completed from that checkpoint, without training more.
                epoch = (result.metrics or {}).get("epoch")
                resume_run(run_dir, data, evaluate_test=False,
                           stop=f"stopped early by the {plan.scheduler} scheduler after epoch {epoch}")
            else:
                error = "the trial ended before its first epoch finished"
        config = result.config or _params_file(result.path)
        rows.append(_row(name, _trial_params(plan, config), run_dir, error, result.metrics or {},
                         _trial_seed(plan, config)))
    if plan.seeds:
        return _replicate_leaderboard(plan, rows, data, cluster)
    sign = -1 if METRICS[plan.metric] == "max" else 1
    rows.sort(key=lambda r: (r["status"] == "failed", sign * (r[plan.metric] or 0.0), r["trial"]))
    best = None
    ranked = [r for r in rows if r["status"] != "failed"]
    if ranked:
        from fmnist.evaluation import evaluate

        top = ranked[0]
        run = load_run(top["run_dir"])
        test = evaluate(run.model, data.x_test, data.y_test)
        best = {**{k: top[k] for k in ("trial", "params", "val_accuracy", "val_loss", "epochs", "run_dir")},
                "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_n": test["n"]}
    return {"metric": plan.metric, "best": best, "trials": rows, "cluster": cluster.to_json()}


def _replicate_leaderboard(plan: SweepPlan, rows: list[dict[str, Any]], data, cluster) -> dict[str, Any]:
    """The leaderboard of a sweep over seeds: trials grouped by point, points ranked by their mean."""
    from fmnist.evaluation import evaluate
    from fmnist.evaluation.replicates import gaps_to_leader, shared_or_mean
    from fmnist.runs import load_run

    metric, mode = plan.metric, METRICS[plan.metric]
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["point"], []).append(row)
    points = []
    for index, runs in groups.items():
        runs.sort(key=lambda r: plan.seeds.index(r["seed"]))
        failed = [r for r in runs if r["status"] == "failed"]
        point = {"point": index, "params": runs[0]["params"], "status": "failed" if failed else "finished",
                 "error": failed[0]["error"] if failed else None}
        done = not failed and all(r[metric] is not None for r in runs)
        for key in ("val_accuracy", "val_loss"):
            values = [r[key] for r in runs]
            point[key] = statistics.fmean(values) if done else None
            point[f"{key}_sd"] = statistics.stdev(values) if done else None
        point["epochs"] = shared_or_mean([r["epochs"] for r in runs])
        times = [r["time_s"] for r in runs if r["time_s"] is not None]
        point["time_s"] = statistics.fmean(times) if times else None
        point["runs"] = [{k: r[k] for k in ("seed", "trial", "status", "val_accuracy", "val_loss", "run_dir")}
                         for r in runs]
        points.append(point)
    sign = -1 if mode == "max" else 1
    points.sort(key=lambda p: (p["status"] == "failed", sign * (p[metric] or 0.0), p["point"]))
    gaps_to_leader(points, metric, higher_is_better=mode == "max")  # a failed point has no score: no gap
    best = None
    if points and points[0]["status"] != "failed":
        top = points[0]
        runs = []
        for r in top["runs"]:
            test = evaluate(load_run(r["run_dir"]).model, data.x_test, data.y_test)
            runs.append({**r, "test_accuracy": test["accuracy"], "test_loss": test["loss"]})
        best = {**{k: top[k] for k in ("point", "params", "val_accuracy", "val_accuracy_sd", "val_loss",
                                       "val_loss_sd", "epochs")},
                "trial": runs[0]["trial"], "run_dir": runs[0]["run_dir"],
                "test_accuracy": statistics.fmean(r["test_accuracy"] for r in runs),
                "test_accuracy_sd": statistics.stdev(r["test_accuracy"] for r in runs),
                "test_loss": statistics.fmean(r["test_loss"] for r in runs), "test_n": test["n"], "runs": runs}
    order = {p["point"]: place for place, p in enumerate(points)}
    rows.sort(key=lambda r: (order[r["point"]], plan.seeds.index(r["seed"])))
    return {"metric": metric, "seeds": list(plan.seeds), "best": best, "points": points, "trials": rows,
            "cluster": cluster.to_json()}


def _row(name: str, params: dict[str, Any], run_dir: Path, error: str | None,
         last: Mapping[str, Any], seed: tuple[int, int] | None = None) -> dict[str, Any]:
    """One trial's leaderboard row, from its run folder (the truth), else Tune's last result.
    ``seed``: a sweep over seeds' (point, seed) for the trial, kept in the row as ``point`` and ``seed``."""
    row = {"trial": name, "params": params, "val_accuracy": None, "val_loss": None, "epochs": None,
           # The epochs' own time, as a run folder counts it (Tune's time_total_s holds the trial
           # process's start too: seconds for a trial that failed in its first epoch).
           "status": "failed" if error else "finished", "error": error, "time_s": last.get("train_time_s"),
           "run_dir": None}
    if seed is not None:
        row["point"], row["seed"] = seed
    if error is None and (run_dir / "run.json").exists():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        stopped = metrics.get("stopped") or ""
        row.update(val_accuracy=metrics["val"]["accuracy"], val_loss=metrics["val"]["loss"], epochs=len(history),
                   time_s=metrics["train_time_s"], run_dir=str(run_dir),
                   status="stopped" if stopped.startswith("stopped early by the") else "finished")
    elif error is None:  # ended by the scheduler; its folder is completed after the sweep
        whole = last.get("epoch") is not None and last.get("epoch") == last.get("epochs")
        row.update(val_accuracy=last.get("val_accuracy"), val_loss=last.get("val_loss"), epochs=last.get("epoch"),
                   status="finished" if whole else "stopped")
    return row


def _live_row(plan: SweepPlan, out: Path, trial, error: str | None) -> dict[str, Any]:
    """The row of a trial Tune has just finished (Tune's Trial object), for the one-line report."""
    from fmnist.tuning._trial import trial_name

    name = trial_name(trial.trial_id)
    return _row(name, _trial_params(plan, trial.config), out / TRIALS_DIR / name, error, trial.last_result or {},
                _trial_seed(plan, trial.config))


def _trial_params(plan: SweepPlan, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The searched options' values for one trial (Tune's config may hold more)."""
    config = config or {}
    if plan.seeds:
        config = (config.get("point") or {}).get("params") or {}
    return {s.name: config.get(s.name) for s in plan.specs}


def _trial_seed(plan: SweepPlan, config: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """A sweep over seeds: the trial's point number and training seed (None otherwise)."""
    if not plan.seeds:
        return None
    config = config or {}
    return (config.get("point") or {}).get("index"), config.get("seed")


def _params_file(path: str) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "params.json").read_text())
    except (OSError, ValueError):
        return {}


def _finished(out: Path) -> set[str]:
    """Trials whose run folder is complete."""
    trials = out / TRIALS_DIR
    return {d.name for d in trials.iterdir() if (d / "run.json").exists()} if trials.is_dir() else set()


# --- text ----------------------------------------------------------------------------------------

def format_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def format_trial(row: Mapping[str, Any]) -> str:
    """``[3/6] trial-00002 lr=0.01 - 5 epochs - 4.2s - val_loss: 0.4123 - val_accuracy: 0.8512``."""
    head = f"[{row['index']}/{row['total']}] " if "index" in row else ""
    head += f"{row['trial']} {format_params(row['params'])}".rstrip()
    if "seed" in row:
        head += f" seed={row['seed']}"
    if row["status"] == "failed":
        return f"{head} - failed: {row['error']}"
    parts = [head]
    if row["epochs"] is not None:
        parts.append(f"{row['epochs']} epoch{'s' if row['epochs'] != 1 else ''}")
    if row["time_s"] is not None:
        parts.append(f"{row['time_s']:.1f}s")
    for key in ("val_loss", "val_accuracy"):
        if row[key] is not None:
            parts.append(f"{key}: {row[key]:.4f}")
    line = " - ".join(parts)
    return line + (" (stopped early)" if row["status"] == "stopped" else "")


def _num(value: float | int | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def option_value(params: Mapping[str, Any], name: str) -> str:
    """One option's value in a trial's or point's params, as ``format_params`` writes it."""
    return format_params({name: params.get(name)}).split("=", 1)[1]


def point_table(board: Mapping[str, Any], names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """A sweep over seeds' points as text cells, best first: the header and one row per point.

    The one table behind ``leaderboard.md`` and the report's: rank (– for a failed point), point,
    the searched options, status, seeds, epochs (their mean where seeds stopped apart), mean
    time, the metric's mean ± standard deviation, the paired gap to #1 ± its standard error, and
    whether a paired t-test tells that gap from noise.
    """
    metric = board["metric"]
    head = ["rank", "point", *names, "status", "seeds", "epochs", "time (s)", f"{metric} (mean ± sd)",
            "gap to #1 (± se)", "beyond noise"]
    rows = [[str(rank) if p["status"] != "failed" else "–", str(p["point"]),
             *(option_value(p["params"], n) for n in names), p["status"], str(len(p["runs"])),
             _num(p["epochs"], "" if isinstance(p["epochs"], int) else ".1f"), _num(p["time_s"], ".1f"),
             spread(p[metric], p[metric + "_sd"]), spread(p["val_gap"], p["val_gap_se"]),
             verdict(p.get("beyond_noise"))]
            for rank, p in enumerate(board["points"], 1)]
    return head, rows


def _ranking(board: Mapping[str, Any]) -> str:
    metric = board["metric"]
    if not board.get("seeds"):
        return f"ranked by {metric} on the validation split"
    return (f"ranked by the mean {metric} over seeds {', '.join(map(str, board['seeds']))} on the validation "
            f"split (± the standard deviation); the gap to #1 is paired by seed (± its standard error), and "
            f"beyond noise where a paired t-test over the seeds (two-sided, 5%) rejects a zero gap")


def format_point(rank: int | None, point: Mapping[str, Any], metric: str) -> str:
    """``#2 point 3 lr=0.01 - 3 seeds - 5 epochs - 4.2s - val_accuracy: 0.8512 ± 0.0021 - gap to #1: ...``."""
    head = f"{'#' + str(rank) if rank else '–'} point {point['point']} {format_params(point['params'])}".rstrip()
    seeds = f"{len(point['runs'])} seeds"
    if point["status"] == "failed":
        return f"{head} - {seeds} - failed: {point['error']}"
    parts = [head, seeds]
    if point["epochs"] is not None:
        parts.append(f"{point['epochs']} epoch{'s' if point['epochs'] != 1 else ''}")
    if point["time_s"] is not None:
        parts.append(f"{point['time_s']:.1f}s")
    parts.append(f"{metric}: {spread(point[metric], point[metric + '_sd'])}")
    if point.get("val_gap") is not None:
        parts.append(f"gap to #1: {spread(point['val_gap'], point['val_gap_se'])} "
                     f"(beyond noise: {verdict(point.get('beyond_noise'))})")
    return " - ".join(parts)


def format_table(board: Mapping[str, Any]) -> str:
    """The leaderboard as terminal text: one line per trial (with seeds: per point), best first,
    then the best's test score."""
    if board.get("seeds"):
        ranks = range(1, len(board["points"]) + 1)
        lines = [format_point(rank if p["status"] != "failed" else None, p, board["metric"])
                 for rank, p in zip(ranks, board["points"])]
    else:
        lines = [format_trial(r) for r in board["trials"]]
    best = board["best"]
    c = board["cluster"]
    lines.append(f"{_ranking(board)}; {c['nodes']} node(s), {c['cpus']} CPUs at {c['address']}")
    if best and board.get("seeds"):
        lines.append(f"best: point {best['point']} {format_params(best['params'])} - {board['metric']}: "
                     f"{spread(best[board['metric']], best[board['metric'] + '_sd'])} (test accuracy, reported "
                     f"apart: {spread(best['test_accuracy'], best['test_accuracy_sd'])} over its "
                     f"{len(best['runs'])} seeds) - {', '.join(r['run_dir'] for r in best['runs'])}")
    elif best:
        lines.append(f"best: {best['trial']} {format_params(best['params'])} - {board['metric']}: "
                     f"{best[board['metric']]:.4f} (test accuracy, reported apart: {best['test_accuracy']:.4f}) "
                     f"- {best['run_dir']}")
    else:
        lines.append("best: none (every trial failed)")
    return "\n".join(lines)


def format_markdown(board: Mapping[str, Any], plan: SweepPlan) -> str:
    names = [s.name for s in plan.specs]
    seeds = board.get("seeds")
    head = ["point" if seeds else "rank", "trial", *names, *(["seed"] if seeds else []), "status", "epochs",
            "time (s)", "val accuracy", "val loss"]
    lines = [f"# fmnist sweep: {plan.model}", "",
             f"Search: {', '.join(plan.params) or 'no parameters'}; samples {plan.samples}; scheduler "
             f"{plan.scheduler}. Every trial is judged on the same validation images; {_ranking(board)}.", ""]

    if seeds:
        top, rows = point_table(board, names)
        lines += ["| " + " | ".join(top) + " |", "|" + "---|" * len(top)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += ["", "Trials, one per point and seed:", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, r in enumerate(board["trials"], 1):
        values = [option_value(r["params"], n) for n in names] + ([str(r["seed"])] if seeds else [])
        place = str(r["point"]) if seeds else str(rank) if r["status"] != "failed" else "–"
        lines.append("| " + " | ".join([place, r["trial"],
                                        *values, r["status"], _num(r["epochs"], "d"), _num(r["time_s"], ".1f"),
                                        _num(r["val_accuracy"], ".4f"), _num(r["val_loss"], ".4f")]) + " |")
    failed = [r for r in board["trials"] if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed trials:", ""] + [f"- {r['trial']}: {r['error']}" for r in failed]
    best = board["best"]
    lines.append("")
    if best and seeds:
        folders = ", ".join(f"`{r['run_dir']}`" for r in best["runs"])
        lines.append(f"Best: point {best['point']} ({format_params(best['params'])}), mean {board['metric']} "
                     f"{spread(best[board['metric']], best[board['metric'] + '_sd'])} over seeds "
                     f"{', '.join(map(str, seeds))}. Test accuracy (t10k, {best['test_n']:,} images), reported apart "
                     f"and chosen by nothing: {spread(best['test_accuracy'], best['test_accuracy_sd'])} over its "
                     f"runs ({folders}).")
    elif best:
        lines.append(f"Best: {best['trial']} ({format_params(best['params'])}), {board['metric']} "
                     f"{best[board['metric']]:.4f}. Test accuracy (t10k, {best['test_n']:,} images), reported "
                     f"apart and chosen by nothing: {best['test_accuracy']:.4f}. Run folder: `{best['run_dir']}`.")
    c = board["cluster"]
    lines += ["", f"Ray: {c['nodes']} node(s), {c['cpus']} CPUs, at {c['address']}.", ""]
    return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------------------

def _param_texts(params: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """``{"lr": [0.1, 0.01]}`` or ``{"lr": "0.1,0.01"}`` or ``["lr=0.1,0.01"]`` -> ``["lr=0.1,0.01"]``."""
    if isinstance(params, str):
        return [params]
    if isinstance(params, Mapping):
        return [f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in params.items()]
    return list(params)


def default_out(model: str) -> Path:
    """``sweeps/MODEL``, the layer string made path-safe."""
    import re

    return Path("sweeps") / (re.sub(r"[^A-Za-z0-9.]+", "-", model).strip("-")[:80] or "model")


def _default_data():
    from fmnist.data import load_dataset

    return load_dataset()


def _data_record(data) -> dict[str, Any]:
    from fmnist.runs import data_fingerprint

    return {"dataset": data.dataset, "source": str(data.source), "verified": data.verified,
            "sha256": data_fingerprint(data)}

