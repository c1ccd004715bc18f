"""Train several models on the same data split and seed, and rank them on one leaderboard.

Models are ranked by validation accuracy (the 12,000 images split off the training set),
the number a user may select by; test accuracy (t10k) is shown beside it, reported apart,
and chose nothing. Each model is trained by :func:`fmnist.runs.train_run` into its own run
folder, so every row can be reloaded, evaluated or exported later::

    OUT/
      compare.json       what was asked (models, epochs, seeds, data), written first: --resume reads it
      leaderboard.md     the table, for people
      leaderboard.json   the same rows, for programs
      runs/NAME/         one run folder per model (see fmnist.runs)
      runs/NAME-seedS/   with several seeds: one per model and seed

On one machine the runs train one after another, each on every core (the right order for
networks that use them all). On Ray (``ray=True``, or an ``address``), each run is a Ray task
with ``cpus_per_run`` CPUs, as many at once as the cluster holds; on several machines the
output folder must be on storage every node can reach.

With several seeds each model trains once per seed and its row holds the mean and standard
deviation over them; every other row also holds its gap to the leader paired by seed, with
the gap's standard error, and whether a paired t-test over the seeds tells it from noise
(:mod:`fmnist.evaluation.replicates`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fmnist._files import (
    atomic_write_all,
    check_free,
    check_not_busy,
    check_other_work,
    claim,
    json_writer,
    text_writer,
    write_json,
)
from fmnist._text import shell
from fmnist.data import Dataset
from fmnist.errors import FmnistError, OutputExistsError, RunError, UsageError
from fmnist.evaluation.replicates import check_seeds, gaps_to_leader, shared_or_mean
from fmnist.models import Preset, count_parameters, get_preset
from fmnist.reporting.leaderboard import leaderboard, optimizer_and_lr, rank, replicate_leaderboard
from fmnist.runs import (
    CHECKPOINT,
    RunResult,
    data_fingerprint,
    load_run,
    replacing_outputs,
    resolve_config,
    resume_run,
    run_name,
    settle_replaced_outputs,
    split_record,
    train_run,
    versions,
)
from fmnist.training import Callback, TrainConfig

LEADERBOARD_FORMAT = "fmnist-leaderboard"
PLAN_FILE, PLAN_FORMAT = "compare.json", "fmnist-compare"
# What a comparison writes beside its runs, the file that marks it finished first.
RESULTS = ("leaderboard.json", "leaderboard.md", PLAN_FILE)


def compare(models: Sequence[str], data: Dataset, *, epochs: int | None = None, seed: int | None = None,
            seeds: Sequence[int] | None = None, out_dir: str | Path | None = None,
            callbacks_for: Callable[[str], Sequence[Callback]] | None = None,
            on_start: Callable[[int, int, str], None] | None = None, overwrite: bool = False, ray: bool = False,
            address: str | None = None, cpus_per_run: int = 1,
            on_finish: Callable[[int, int, str, RunResult], None] | None = None) -> dict[str, Any]:
    """Train each of ``models`` (preset names or layer strings) and rank them.

    ``seed`` overrides every preset's own (None: each preset's default): a torch model's
    shuffling and initialisation seed, a scikit-learn model's ``random_state``, so all models
    see the same split and the same seed. ``seeds`` (two or more, instead of ``seed``) trains
    every model once per seed and ranks them by the mean (see the module's docstring).
    ``epochs`` overrides every torch preset's own; scikit-learn presets keep their iteration
    count (``max_iter``). ``on_start(i, total, run)`` is called before each training run, and
    ``on_finish(i, total, run, result)`` after it (on Ray, in the order they finish). ``ray``:
    train the runs as Ray tasks of ``cpus_per_run`` CPUs each, on a local Ray started for the
    call, or on the cluster at ``address`` (``"auto"``, ``"host:port"``; also ``$RAY_ADDRESS``
    when ``ray``); the board then records the ``cluster``. ``callbacks_for`` applies to runs in
    this process only.
    Returns ``{"rows": [...best first], ...}``; with ``out_dir``, also writes the files above.
    An ``out_dir`` that holds a comparison or any of its run folders is refused before
    anything trains (:class:`~fmnist.errors.OutputExistsError`), unless ``overwrite``; an
    interrupted one is finished by :func:`resume_compare`.
    """
    if not models:
        raise UsageError("compare: name at least one model (see 'fmnist models')")
    if seeds is not None:
        seeds = _check_seeds(seeds, seed)
    plan = {"models": list(models), "epochs": epochs, "seed": seed, "seeds": seeds}
    jobs = _jobs(plan)  # every name and config is checked before anything trains
    out = Path(out_dir) if out_dir is not None else None
    _check_cpus(cpus_per_run)
    if ray or address is not None:
        from fmnist._ray import check_address

        check_address(address)
    # Claimed, then checked: a second comparison given the same folder is refused, not mixed in.
    with claim(out) if out is not None else contextlib.nullcontext():
        outputs = (RESULTS, [out / "runs" / job.run for job in jobs]) if out is not None else None
        if out is not None:
            settle_replaced_outputs(out, *outputs)  # what a killed --overwrite left
            check_other_work(out, PLAN_FILE)
            if (out / PLAN_FILE).exists() and not (out / "leaderboard.json").exists() and not overwrite:
                raise OutputExistsError(f"{out}: an interrupted comparison is there; finish it with 'fmnist compare "
                                        f"--resume {shell(out)}', or pass --overwrite to start it again")
            check_free([out / PLAN_FILE, out / "leaderboard.json", out / "leaderboard.md",
                        *(out / "runs" / job.run for job in jobs)], overwrite=overwrite, what="an earlier comparison")
        # With --overwrite the earlier comparison (its leaderboard, plan and runs, all at once: a
        # resume after Ctrl-C would otherwise keep or continue a run this one had not reached yet)
        # waits aside, whole, until this one has written its leaderboard; interrupted, it is put back.
        with replacing_outputs(out, *outputs) if outputs and overwrite else contextlib.nullcontext():
            if out is not None:
                # Written before anything trains: what --resume finishes if the comparison is interrupted.
                write_json(out / PLAN_FILE, {"format": PLAN_FORMAT, "format_version": 1, **plan,
                                             "data": {"dataset": data.dataset, "source": str(data.source),
                                                      "sha256": data_fingerprint(data)}})
            return _run(plan, jobs, data, out, overwrite=overwrite, resume=False, ray=ray or address is not None,
                        address=address, cpus=cpus_per_run, callbacks_for=callbacks_for, on_start=on_start,
                        on_finish=on_finish)


def resume_compare(out_dir: str | Path, data: Dataset, *, ray: bool = False, address: str | None = None,
                   cpus_per_run: int = 1, callbacks_for: Callable[[str], Sequence[Callback]] | None = None,
                   on_start: Callable[[int, int, str], None] | None = None,
                   on_finish: Callable[[int, int, str, RunResult], None] | None = None) -> dict[str, Any]:
    """Finish the interrupted comparison in ``out_dir``, as it was asked for (its ``compare.json``).

    Finished runs are kept, not trained again (``on_finish`` is called for each of them first);
    an interrupted run continues from its checkpoint (:func:`fmnist.runs.resume_run`); the
    others train. ``data`` must be the data it started on. The other options as for :func:`compare`.
    """
    from fmnist.models.io import read_json

    out = Path(out_dir)
    if not out.is_dir():
        raise RunError(f"{out}: no such comparison folder")
    check_not_busy(out)
    if (out / "leaderboard.json").exists():
        raise RunError(f"{out}: this comparison finished already (leaderboard.json is there); start a new one "
                       "with another --out")
    if not (out / PLAN_FILE).exists():
        raise RunError(f"{out}: no {PLAN_FILE} here, so nothing to resume; start the comparison with "
                       "'fmnist compare MODEL... --out DIR'")
    recorded = read_json(out / PLAN_FILE, f"fmnist comparison ({PLAN_FILE})")
    if recorded.get("format") != PLAN_FORMAT:
        raise RunError(f"{out / PLAN_FILE}: not an fmnist comparison (format is {recorded.get('format')!r})")
    if recorded.get("data", {}).get("sha256") != data_fingerprint(data):
        raise RunError(f"{out / PLAN_FILE}: the comparison trained on other data "
                       f"({recorded.get('data', {}).get('source')}); pass the same --data-dir/--dataset as when it "
                       "started")
    try:
        plan = {k: recorded[k] for k in ("models", "epochs", "seed", "seeds")}
        jobs = _jobs(plan)
    except (KeyError, FmnistError) as exc:
        raise RunError(f"{out / PLAN_FILE}: cannot be read back ({exc})") from None
    _check_cpus(cpus_per_run)
    with claim(out):  # the comparison may still be running, not interrupted
        board = _run(plan, jobs, data, out, overwrite=False, resume=True, ray=ray or address is not None,
                     address=address, cpus=cpus_per_run, callbacks_for=callbacks_for, on_start=on_start,
                     on_finish=on_finish)
        # A comparison that a killed --overwrite had started is finished: the one it replaced goes.
        settle_replaced_outputs(out, RESULTS, [out / "runs" / job.run for job in jobs])
        return board


@dataclasses.dataclass(frozen=True)
class _Job:
    """One training run of a comparison: a model (its folder ``name``) with one seed, in ``runs/run``."""

    model: str
    preset: Preset
    name: str
    seed: int | None
    config: TrainConfig
    run: str


def _jobs(plan: dict[str, Any]) -> list[_Job]:
    """One job per model and seed; every config is resolved now, so a bad --epochs fails before training."""
    models, seeds = plan["models"], plan["seeds"]
    presets = [get_preset(m) for m in models]
    jobs = []
    for model, preset, name in zip(models, presets, _run_names(models)):
        for s in seeds or [plan["seed"]]:
            config = resolve_config(preset, epochs=plan["epochs"] if preset.family == "torch" else None, seed=s)
            jobs.append(_Job(model, preset, name, s, config, name if seeds is None else f"{name}-seed{s}"))
    return jobs


def _check_cpus(cpus: int) -> None:
    if cpus < 1:
        raise UsageError(f"--cpus-per-run must be at least 1, got {cpus}")


def _run(plan, jobs, data, out, *, overwrite, resume, ray, address, cpus, callbacks_for, on_start, on_finish):
    """Train (or, resuming, keep or continue) every job, then rank and write the leaderboard."""
    start = time.perf_counter()
    results: list[RunResult | None] = [None] * len(jobs)
    kept = 0
    for k, job in enumerate(jobs):
        if resume and (out / "runs" / job.run / "run.json").exists():
            results[k] = _finished_run(job, out / "runs" / job.run)
            kept += 1
            if on_finish:
                on_finish(kept, len(jobs), job.run, results[k])
    todo = [k for k, result in enumerate(results) if result is None]
    cluster = None
    if ray and todo:
        # Numbered after the runs kept, among all the comparison's runs.
        report = (lambda i, total, run, result: on_finish(kept + i, len(jobs), run, result)) if on_finish else None
        trained, cluster = _train_on_ray([jobs[k] for k in todo], data, out, overwrite, resume, address, cpus,
                                         report)
        for k, result in zip(todo, trained):
            results[k] = result
    else:
        for i, k in enumerate(todo, kept + 1):
            job = jobs[k]
            if on_start:
                on_start(i, len(jobs), job.run)
            results[k] = _train(job, data, out, overwrite, resume,
                                callbacks=callbacks_for(job.run) if callbacks_for else ())
            if on_finish:
                on_finish(i, len(jobs), job.run, results[k])
    by_name: dict[str, list[tuple[int | None, RunResult]]] = {}
    for job, result in zip(jobs, results):
        by_name.setdefault(job.name, []).append((job.seed, result))
    models, seeds = plan["models"], plan["seeds"]
    if seeds is None:
        rows = rank([_row(name, model, runs[0][1]) for (name, runs), model in zip(by_name.items(), models)])
    else:
        rows = gaps_to_leader(rank([_replicate_row(name, model, runs)
                                    for (name, runs), model in zip(by_name.items(), models)]), "val_accuracy")
    for place, row in enumerate(rows, 1):
        row["rank"] = place
    board = {"format": LEADERBOARD_FORMAT, "format_version": 1, "selected_by": "val_accuracy",
             "epochs": plan["epochs"], "seed": plan["seed"], "seeds": seeds, "rows": rows,
             "total_time_s": time.perf_counter() - start, "resumed": kept if resume else None, "cluster": cluster,
             "data": {"dataset": data.dataset, "source": str(data.source), "verified": data.verified,
                      "split": split_record()},
             "versions": versions()}
    if out is not None:
        # The pair together, leaderboard.json (what marks the comparison finished) renamed last.
        atomic_write_all([(out / "leaderboard.md", text_writer(format_markdown(board))),
                          (out / "leaderboard.json", json_writer(board))])
    return board


def _train(job: _Job, data: Dataset, out: Path | None, overwrite: bool, resume: bool,
           callbacks: Sequence[Callback] = ()) -> RunResult:
    """One job's run: trained, or (resuming) continued from its checkpoint where it has one."""
    run_dir = out / "runs" / job.run if out is not None else None
    if resume and (run_dir / CHECKPOINT).exists():
        return resume_run(run_dir, data, callbacks=callbacks)
    # Resuming, a folder without a checkpoint is a start that never finished an epoch: nothing
    # in it can be kept, and the comparison owns it.
    return train_run(job.model, data, config=job.config, out_dir=run_dir, callbacks=callbacks,
                     overwrite=overwrite or resume)


def _finished_run(job: _Job, run_dir: Path) -> RunResult:
    """A run an interrupted comparison finished, read back from its folder."""
    run = load_run(run_dir)
    info = run.info
    # The config the run recorded, resolved as it trained (learning rate, device), as a run this
    # call trains returns it; the job's own leaves those to their defaults ("auto", None).
    # A scikit-learn run records none: its job's seed is all a row needs.
    try:
        config = TrainConfig(**info["config"]) if info.get("config") else job.config
    except (TypeError, ValueError, FmnistError) as exc:
        raise RunError(f"{run_dir / 'run.json'}: its config cannot be read back ({exc}); remove {run_dir} and "
                       "resume, which trains it again") from None
    return RunResult(info["model"], job.preset, run.model, config, run.history, run.metrics, run_dir=run_dir,
                     threads=info.get("threads"))


def _train_on_ray(jobs, data, out, overwrite, resume, address, cpus, on_finish):
    """Every job as a Ray task; the results in the jobs' order, and the cluster they ran on."""
    from fmnist._ray import as_finished, ray_session

    with ray_session(address) as cluster:
        import ray

        if cpus > cluster.cpus:
            raise UsageError(f"--cpus-per-run {cpus}: the Ray cluster at {cluster.address} has {cluster.cpus} CPUs")
        task = ray.remote(_train_task).options(num_cpus=cpus, max_retries=0)
        shared = ray.put(data)  # to the object store once: every task reads the same read-only images
        # A worker of a cluster runs in a folder of its own: a relative --out would land there.
        where = out.resolve() if out is not None else None
        tasks = {task.remote(job, shared, where, overwrite, resume, cpus): k for k, job in enumerate(jobs)}
        results: list[RunResult | None] = [None] * len(jobs)
        with as_finished(tasks) as finished:
            for done, ref in enumerate(finished, 1):
                k = tasks[ref]
                try:
                    results[k] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise _task_error(jobs[k].run, exc) from None
                if on_finish:
                    on_finish(done, len(jobs), jobs[k].run, results[k])
    return results, {**cluster.to_json(), "cpus_per_run": cpus}


def _train_task(job: _Job, data: Dataset, out: Path | None, overwrite: bool, resume: bool, cpus: int) -> RunResult:
    """One run in a Ray worker, computing with its allotment of CPUs."""
    import os

    # The Trainer takes its thread count from OMP_NUM_THREADS (TrainConfig.threads left to its
    # default); Ray sets it only where the user's environment has none.
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    return _train(job, data, out, overwrite, resume)


def _task_error(run: str, exc: BaseException) -> FmnistError:
    """A run that failed on Ray, as the one-line error it would have raised here."""
    from fmnist.tuning._trial import one_line

    cause = getattr(exc, "cause", None)
    if isinstance(cause, FmnistError):
        return cause
    return RunError(f"{run}: training failed on Ray: {one_line(exc)}")


def read_leaderboard(compare_dir: str | Path) -> dict[str, Any] | None:
    """The leaderboard of the finished comparison in ``compare_dir``; None when it holds none."""
    from fmnist.models.io import read_json

    board_path = Path(compare_dir) / "leaderboard.json"
    if not board_path.is_file():
        return None
    board = read_json(board_path, "fmnist comparison (leaderboard.json)")
    return board if board.get("format") == LEADERBOARD_FORMAT else None


def run_dirs(compare_dir: str | Path, board: dict[str, Any] | None = None) -> list[Path] | None:
    """The run folders of the comparison in ``compare_dir`` (its ``board``, read here when not
    given), best first (each model's seeds in order), found beside its leaderboard wherever the
    folder has moved; None when it holds none."""
    board = board if board is not None else read_leaderboard(compare_dir)
    if board is None:
        return None
    # A model over several seeds lists its runs; their folders sit under runs/ by name.
    return [Path(compare_dir) / "runs" / Path(run["run_dir"]).name
            for row in board["rows"] for run in row.get("runs", [row])]


def _check_seeds(seeds: Sequence[int], seed: int | None) -> list[int]:
    if seed is not None:
        raise UsageError("--seeds: give either --seed (one seed for every model) or --seeds (several), not both")
    return list(check_seeds(seeds))


def _replicate_row(name: str, model: str, runs: list[tuple[int, RunResult]]) -> dict[str, Any]:
    """One model over its seeds: the means (ranked like a single run's numbers), spreads and each run."""
    each = [_row(name, model, result) for _, result in runs]
    per_seed = [{"seed": s, **{k: r[k] for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss",
                                                 "train_time_s", "epochs", "run_dir")}}
                for (s, _), r in zip(runs, each)]
    row = dict(each[0])
    row.pop("run_dir")
    row["config"] = row["config"] and {k: v for k, v in row["config"].items() if k != "seed"}
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_time_s"):
        row[key] = statistics.fmean(r[key] for r in per_seed)
    for key in ("val_accuracy", "test_accuracy"):
        row[f"{key}_sd"] = statistics.stdev(r[key] for r in per_seed)
    row["epochs"] = shared_or_mean([r["epochs"] for r in per_seed])
    row["runs"] = per_seed
    return row


def _run_names(models: Sequence[str]) -> list[str]:
    """A folder name per model (:func:`fmnist.runs.run_name`), numbered from the second of a kind."""
    names, seen = [], {}
    for model in models:
        base = run_name(model)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _row(name: str, model: str, result: RunResult) -> dict[str, Any]:
    m = result.metrics
    if result.preset.family == "torch":
        params, epochs = count_parameters(result.model.spec), len(result.history)
        optimizer, lr = optimizer_and_lr(result.config.to_dict())
    else:  # a linear estimator: its coefficients; its "epochs" are SGD's passes over the data
        params = int(result.model.coef_.size + result.model.intercept_.size)
        epochs = m.get("n_iter")
        optimizer, lr = "scikit-learn SGD", None  # its own step-size schedule, no single rate
    return {"name": name, "model": model, "family": result.preset.family, "parameters": params,
            "optimizer": optimizer, "lr": lr,
            "epochs": epochs, "train_time_s": m["train_time_s"], "val_accuracy": m["val"]["accuracy"],
            "val_loss": m["val"]["loss"], "test_accuracy": m["test"]["accuracy"], "test_loss": m["test"]["loss"],
            "config": result.config.to_dict() if result.preset.family == "torch" else None,
            "run_dir": str(result.run_dir) if result.run_dir else None}


def _table(board: dict[str, Any], fmt: str) -> str:
    if board.get("seeds"):
        return replicate_leaderboard(board["rows"], fmt)
    return leaderboard(board["rows"], fmt)


def ranking(board: dict[str, Any]) -> str:
    """How the leaderboard ranks its rows, in words (its footers', and the report's)."""
    if not board.get("seeds"):
        return "ranked by validation accuracy"
    return (f"ranked by mean validation accuracy over seeds {', '.join(map(str, board['seeds']))} (± their standard "
            f"deviation); the gap to #1 is paired by seed, ± its standard error; beyond noise: a paired t-test "
            f"over the seeds (two-sided, 5%) rejects a zero gap")


def _where(board: dict[str, Any]) -> str:
    c = board.get("cluster")
    if not c:
        return ""
    return (f"trained on Ray at {c['address']} ({c['nodes']} node{'s' if c['nodes'] != 1 else ''}, {c['cpus']} CPUs, "
            f"{c['cpus_per_run']} per run)")


def _total(board: dict[str, Any]) -> str:
    """The wall time, said as what it covers: a resumed comparison's clock ran in the last call only."""
    if board.get("resumed") is None:
        return f"total {board['total_time_s']:.1f} s"
    kept = board["resumed"]
    return (f"{board['total_time_s']:.1f} s in the call that resumed it ({kept} run{'s' if kept != 1 else ''} kept "
            "from before, their time not counted)")


def format_table(board: dict[str, Any]) -> str:
    """The leaderboard as aligned plain text for the terminal, best first."""
    where = _where(board)
    footer = (f"{ranking(board)}; test (t10k) is reported apart and chose nothing; "
              f"{where + '; ' if where else ''}{_total(board)}")
    return _table(board, "text") + "\n" + footer


def format_markdown(board: dict[str, Any]) -> str:
    data = board["data"]
    epochs = board["epochs"] or "each preset's"
    seed = board["seed"] if board["seed"] is not None else "each preset's"
    if board.get("seeds"):
        seed = ", ".join(map(str, board["seeds"]))
    about = (f"Data: {data['dataset']} from {data['source']} (verified: {data['verified']}); validation = "
             f"{data['split']['test_size']:.0%} of the training set (random_state {data['split']['random_state']}). "
             f"Epochs: {epochs}; seed: {seed}.")
    lines = ["# fmnist compare", "", about, "", _table(board, "markdown")]
    versions_line = ", ".join(f"{k} {v}" for k, v in board["versions"].items())
    ranked, where, total = ranking(board), _where(board), _total(board)
    lines += ["", (f"{ranked[:1].upper()}{ranked[1:]}. The test column is the t10k set, reported apart: nothing "
                   f"was chosen by it. {where[:1].upper() + where[1:] + '. ' if where else ''}"
                   f"{total[:1].upper()}{total[1:]}. Versions: {versions_line}"), ""]
    return "\n".join(lines)
