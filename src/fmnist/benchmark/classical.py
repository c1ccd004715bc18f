"""The Fashion-MNIST paper's classical benchmark, re-run on Ray: one Ray task per configuration.

Two protocols side by side, per family:

- **as published**: every configuration fitted on the 60,000 training images and scored on
  t10k; the family's best by test accuracy (the paper's Table 3 protocol).
- **chosen honestly**: every configuration fitted on the tutorial's 48,000 and scored on its
  12,000 validation images (``train_test_split(test_size=0.2, random_state=42)``); the family's
  best by validation accuracy, then that configuration's t10k score. Nothing is chosen by t10k.

``DIR/results.json`` is rewritten (atomically) as each configuration finishes, so an
interrupted run loses only the configurations in flight; running the same command again skips
every configuration already finished with the same estimator, data and seed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import BENCHMARK_RESULTS, atomic_write_all, check_other_work, claim, json_writer, text_writer
from fmnist._text import signed
from fmnist.benchmark import grid, mapping
from fmnist.benchmark.grid import Config
from fmnist.data._prep import SPLIT_SEED, VAL_SIZE, split_indices
from fmnist.errors import FmnistError, UsageError, option

# Judged bands around the published accuracy: one run of a 5-epoch SGD-type model moves by more
# than the others between shuffles of the training data.
BAND = 0.015
WIDE_BAND = {"Perceptron": 0.02, "PassiveAggressiveClassifier": 0.02, "SGDClassifier": 0.02}
SPLIT = {"test_size": VAL_SIZE, "random_state": SPLIT_SEED}
RESULTS = "results.json"


def data_fingerprint(data) -> str:
    """SHA-256 (first 16 hex digits) of the four arrays: finished results are reused only on the same data."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def run_config(config: Config, phases: tuple[str, ...], seed: int, cpus: int, x_train, y_train, x_test,
               y_test) -> dict[str, Any]:
    """Fit and score one configuration; the body of each Ray task (also callable directly).

    ``phases``: ``"val"`` (fit on the 48,000, score the 12,000) and/or ``"test"`` (fit on all
    training images, score t10k). Returns a record; a configuration scikit-learn refuses is
    ``status: "cannot_run"`` with its reason, any other exception ``"failed"`` with one line.
    BLAS/OpenMP threads and joblib workers are held to ``cpus``, the task's Ray allotment, so
    tasks sharing a machine do not oversubscribe it.
    """
    import warnings

    import joblib
    from threadpoolctl import threadpool_limits

    record: dict[str, Any] = {"status": "finished", "cpus": cpus, "node": socket.gethostname()}
    with threadpool_limits(limits=cpus), joblib.parallel_config(backend="threading", n_jobs=cpus), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reason = mapping.check_runs(config, seed)
            if reason:
                return {**record, "status": "cannot_run", "error": reason}
            for phase in phases:
                start = time.perf_counter()
                if phase == "val":
                    tr, val = split_indices(len(x_train), **SPLIT)
                    fit_x, fit_y, score_x, score_y = x_train[tr], y_train[tr], x_train[val], y_train[val]
                else:
                    fit_x, fit_y, score_x, score_y = x_train, y_train, x_test, y_test
                model = mapping.build_pipeline(config, seed).fit(_features(fit_x), fit_y)
                accuracy, undecided = scored(model, _features(score_x), score_y)
                record[f"{phase}_accuracy"] = accuracy
                if undecided:
                    record[f"{phase}_undecided"] = undecided
                record[f"{phase}_time_s"] = time.perf_counter() - start
        except Exception as exc:  # a configuration that breaks is a result, not the end of the benchmark
            record.update(status="failed", error=_one_line(exc))
    warned = sorted({f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught})
    if warned:
        record["warnings"] = warned
    return record


def scored(model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """``(accuracy, undecided)``: a prediction made from NaN or infinite scores counts as wrong.

    scikit-learn predicts the argmax of a model's scores, and numpy's argmax of a row holding
    NaN is the first NaN's index: a degenerate fit (a zero variance in naive Bayes, weights
    that overflowed) would silently "predict" a class. Where the scores are cheap to get again
    (naive Bayes' joint log-likelihood, a linear model's decision function, a network's
    probabilities) such rows are found, counted wrong and returned as ``undecided``.
    """
    predicted = model.predict(x)
    scores = _scores(model, x)
    if scores is None:
        return float(np.mean(predicted == y)), 0
    scores = np.asarray(scores, dtype=np.float64).reshape(len(x), -1)
    with np.errstate(invalid="ignore"):
        undecided = np.isnan(scores).any(axis=1) | ~np.isfinite(scores.max(axis=1))
    return float(np.mean((predicted == y) & ~undecided)), int(undecided.sum())


def _scores(model, x: np.ndarray):
    """The scores ``model.predict`` takes the argmax of, where they cost little to compute again; else None."""
    final = model
    if hasattr(model, "steps"):  # a Pipeline: its scaler, then the estimator's own scores
        final = model.steps[-1][1]
        x = model[:-1].transform(x) if len(model.steps) > 1 else x
    parts = [final, *getattr(final, "estimators_", [])]  # OneVsRestClassifier's binary models
    if hasattr(final, "predict_joint_log_proba"):
        return final.predict_joint_log_proba(x)
    if hasattr(final, "coefs_"):  # a multilayer perceptron
        return final.predict_proba(x)
    if any(hasattr(p, "coef_") and not hasattr(p, "support_vectors_") for p in parts):
        return final.decision_function(x)
    return None


def _features(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 784), a view: the paper's runner feeds the flat raw pixels to its scaler."""
    return images.reshape(len(images), -1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_previous(out_dir: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, dict[str, Any]]:
    """The finished configuration records of an earlier run into ``out_dir`` (by key), if it may be reused."""
    path = out_dir / RESULTS
    if not path.exists() or overwrite:
        return {}
    import json

    try:
        previous = json.loads(path.read_text())
        same = {k: previous.get(k) for k in identity} == identity
        configs = previous["configs"]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise FmnistError(f"{path}: not a results file of 'fmnist benchmark classical'; choose another --out, "
                          "or pass --overwrite to replace it") from None
    if not same:
        differs = ", ".join(k for k in identity if previous.get(k) != identity[k])
        raise FmnistError(f"{path}: holds results for another {differs}; choose another --out, or pass "
                          "--overwrite to replace them")
    return {c["key"]: c for c in configs}


def _needs(record: dict[str, Any] | None, phases: tuple[str, ...], estimator: str) -> tuple[str, ...]:
    """The phases still to compute for a configuration given its earlier record (none if complete)."""
    if record is None or record.get("estimator") != estimator or record["status"] == "failed":
        return phases
    if record["status"] == "cannot_run":
        return ()
    return tuple(p for p in phases if f"{p}_accuracy" not in record)


def summarize(family: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One family's row: the published best beside ours by the published protocol and chosen honestly."""
    best = grid.published_best(family)
    ran = [r for r in records if r["status"] == "finished"]
    scored = [r for r in ran if "test_accuracy" in r]
    validated = [r for r in scored if "val_accuracy" in r]
    ours = max(scored, key=lambda r: r["test_accuracy"], default=None)  # first of equals: the grid's order
    chosen = max(validated, key=lambda r: r["val_accuracy"], default=None)
    band = WIDE_BAND.get(family, BAND)
    row = {
        "family": family,
        "published": best[0] if best else None,
        "published_params": best[1].params if best else None,
        "ours": ours["test_accuracy"] if ours else None,
        "best_params": ours["params"] if ours else None,
        "ours_val_chosen": chosen["test_accuracy"] if chosen else None,
        "val_chosen_params": chosen["params"] if chosen else None,
        "val_accuracy": chosen["val_accuracy"] if chosen else None,
        "band": band,
        "within_band": (abs(ours["test_accuracy"] - best[0]) <= band) if ours and best else None,
        "configs": {"grid": sum(c.family == family for c in grid.expand_grid()), "run": len(records),
                    "finished": len(ran), "cannot_run": sum(r["status"] == "cannot_run" for r in records),
                    "failed": sum(r["status"] == "failed" for r in records)},
        "estimator": mapping.rules()[family]["estimator"],
        "mapping": mapping.rules()[family]["why"],
        # Why ours and Table 3 disagree, where the 2017 code, faithfully mapped, does not reproduce it.
        "differs": mapping.rules()[family].get("differs"),
        "time_s": sum(r.get("val_time_s", 0.0) + r.get("test_time_s", 0.0) for r in records),
    }
    return row


def estimate(configs: list[Config], phases: tuple[str, ...], n_train: int, cpus: int) -> dict[str, float]:
    """Rough cost before starting: CPU-hours and hours of wall time on ``cpus`` CPUs."""
    share = {"val": 1 - SPLIT["test_size"], "test": 1.0}
    cpu_s = sum(mapping.cost_cpu_s(c, n_train) * share[p] for c in configs for p in phases)
    return {"cpu_hours": cpu_s / 3600, "wall_hours": cpu_s / 3600 / max(cpus, 1)}


def benchmark_classical(data, out_dir: str | Path | None = None, *, quick: bool = False,
                        families: list[str] | None = None, address: str | None = None,
                        cpus_per_task: int = 1, num_cpus: int | None = None, seed: int = 42,
                        overwrite: bool = False,
                        on_plan: Callable[[dict[str, Any]], None] = lambda plan: None,
                        on_config: Callable[[dict[str, Any], int, int], None] = lambda rec, done, total: None,
                        ) -> dict[str, Any]:
    """Run the paper's classical benchmark on Ray; return (and write to ``out_dir``) the results.

    ``data``: a :class:`fmnist.data.Dataset`. ``quick``: each family's published best
    configuration only, without the families that need hours (``grid.SLOW_FAMILIES``); the
    honest column needs a grid to choose from, so quick runs fit on all training images only.
    ``families``: only these. ``address``: an existing Ray cluster (default: a local Ray with
    ``num_cpus``). Each configuration is one Ray task of ``cpus_per_task`` CPUs.

    Returns ``{"families": [row per family], "configs": [record per configuration], "data",
    "seed", "split", "selection", "cluster", "sessions", "wall_time_s"}``; see :func:`summarize`
    for a row and :func:`run_config` for a record. ``on_plan(plan)`` is called before any work
    (what will run, the estimated cost, the cluster), ``on_config(record, done, total)`` as each
    configuration finishes; the library prints nothing.
    """
    if families is not None and not families:  # an empty list is not "all of them"
        raise UsageError(f"{option('families')}: name at least one family (e.g. SVC,LogisticRegression), or leave it "
                         "out for all of them")
    if num_cpus is not None and num_cpus < 1:
        raise UsageError(f"{option('num_cpus', num_cpus, cli='--cpus')} must be at least 1")
    configs, left_out = grid.select(quick, families)
    phases = ("test",) if quick else ("val", "test")
    identity = {"data": {"dataset": data.dataset, "fingerprint": data_fingerprint(data),
                         "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test))},
                "seed": seed, "split": SPLIT}
    out = Path(out_dir) if out_dir is not None else None
    # Claimed, then read: a second benchmark given the same folder is refused, not run twice over it.
    with claim(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            check_other_work(out, BENCHMARK_RESULTS)
        return _run(data, out, configs, left_out, phases, identity, address, cpus_per_task, num_cpus, seed,
                    overwrite, on_plan, on_config)


def _run(data, out, configs, left_out, phases, identity, address, cpus_per_task, num_cpus, seed, overwrite,
         on_plan, on_config) -> dict[str, Any]:
    from fmnist._ray import ray_session
    from fmnist.runs import versions

    previous = _load_previous(out, identity, overwrite) if out else {}
    records = dict(previous)
    todo = []
    for config in configs:
        estimator = mapping.describe(config, seed)
        need = _needs(previous.get(config.key), phases, estimator)
        base = previous.get(config.key) if need != phases else None
        records[config.key] = base or {"key": config.key, "family": config.family, "params": config.params,
                                       "estimator": estimator, "published": grid.published_accuracy(config),
                                       "status": "pending"}
        if need:
            todo.append((config, need))

    start = time.perf_counter()
    sessions = _previous_sessions(out) if out and previous else []
    # Slowest first: the last task to finish is then a short one, not an hour-long one started last.
    todo.sort(key=lambda item: -mapping.cost_cpu_s(item[0]))
    # Ray is started only when there is work for it (it takes seconds, and a finished run has none).
    with ray_session(address, num_cpus) if todo else contextlib.nullcontext() as cluster:
        if cluster and cpus_per_task > cluster.cpus:  # Ray would wait for such a node forever
            raise UsageError(f"{option('cpus_per_task', cpus_per_task)}: the Ray cluster at {cluster.address} "
                             f"has {cluster.cpus} CPUs")
        where = cluster.to_json() if cluster else None
        plan = {"configs": len(configs), "families": sorted({c.family for c in configs}, key=grid.families().index),
                "to_run": len(todo), "finished_before": len(configs) - len(todo), "left_out": left_out,
                "phases": list(phases), "cpus_per_task": cpus_per_task, "cluster": where,
                "log_dir": cluster.log_dir if cluster else None,
                **estimate([c for c, _ in todo], phases, len(data.y_train), cluster.cpus if cluster else 1)}
        on_plan(plan)
        # This command's own entry, its wall time brought up to date at every save: an interrupted
        # run's time still counts when it is resumed. The load average beside it says, on a shared
        # machine, how much of that time was the benchmark's own.
        session = {"started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "wall_time_s": 0.0, "configs_run": len(todo), "cluster": where,
                   "loadavg_start": [round(v, 2) for v in os.getloadavg()], "versions": versions(),
                   "selection": {"quick": phases == ("test",), "families": plan["families"]}}
        if todo:  # a call that finds everything finished adds no session of its own
            sessions.append(session)

        def save() -> dict[str, Any]:
            session["wall_time_s"] = time.perf_counter() - start
            session["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
            return _assemble(records, configs, identity, plan, sessions, out)

        save()
        if todo:
            _dispatch(todo, data, seed, cpus_per_task, records, save, on_config)
    return save()


def _previous_sessions(out: Path) -> list[dict[str, Any]]:
    import json

    return list(json.loads((out / RESULTS).read_text()).get("sessions", []))


def _dispatch(todo, data, seed, cpus_per_task, records, save, on_config) -> None:
    """One Ray task per configuration; each finished one is recorded (and saved) at once."""
    import ray

    from fmnist._ray import as_finished

    task = ray.remote(run_config).options(num_cpus=cpus_per_task, max_retries=0)
    # The images go to Ray's object store once; every task reads the same shared, read-only arrays.
    arrays = [ray.put(np.ascontiguousarray(a)) for a in (data.x_train, data.y_train, data.x_test, data.y_test)]
    tasks = {task.remote(config, need, seed, cpus_per_task, *arrays): config for config, need in todo}
    with as_finished(tasks) as finished:
        for done, ref in enumerate(finished, 1):
            config = tasks[ref]
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (out of memory, killed): a failed configuration
                outcome = {"status": "failed", "error": _one_line(exc)[:300]}
            record = records[config.key]
            record.pop("error", None)  # a configuration that failed before and runs now
            record.update(outcome)
            save()
            on_config(record, done, len(todo))


def _selection(plan, sessions, family_names: list[str]) -> dict[str, Any]:
    """What the results cover over every session that added to them (a run with other
    ``--families`` adds its own to the folder's): every family they hold; ``quick`` where no
    session ran any of them in full, ``mixed`` where some families had a full grid and others
    only ``--quick``'s configuration."""
    chosen = [s["selection"] for s in sessions if "selection" in s] or [
        {"quick": plan["phases"] == ["test"], "families": plan["families"]}]
    full = {f for sel in chosen if not sel["quick"] for f in sel["families"]}
    quick = [f for f in family_names if f not in full]
    return {"quick": not full, "mixed": bool(full) and bool(quick), "families": family_names,
            "left_out": [f for f in plan["left_out"] if f not in family_names], "cpus_per_task": plan["cpus_per_task"]}


def _assemble(records, configs, identity, plan, sessions, out: Path | None) -> dict[str, Any]:
    """The results object (written to ``out`` when given): per-family rows first, then every configuration."""
    chosen = {c.key for c in configs}
    ordered = [records[c.key] for c in grid.expand_grid() if c.key in records]
    family_names = [f for f in grid.families() if any(r["family"] == f for r in ordered)]
    rows = [summarize(f, [r for r in ordered if r["family"] == f and (r["key"] in chosen or r["status"] != "pending")])
            for f in family_names]
    if identity["data"]["dataset"] != "fashion-mnist":  # Table 3 is Fashion-MNIST's: no band to be in on other data
        rows = [{**row, "within_band": None} for row in rows]
    result = {"benchmark": "classical (Xiao, Rasul & Vollgraf 2017, Table 3)", **identity,
              "selection": _selection(plan, sessions, family_names),
              "families": rows, "configs": ordered, "cluster": next((s["cluster"] for s in reversed(sessions) if s["cluster"]), None),
              "sessions": sessions,
              "wall_time_s": sum(s["wall_time_s"] for s in sessions)}
    # As results.json holds it: a configuration fitted now has tuples ((100,)) where one read
    # back from the file has lists, and results.md would spell the same setting two ways.
    result = json.loads(json.dumps(result))
    if out is not None:
        atomic_write_all([(out / "results.md", text_writer(format_markdown(result))),
                          (out / RESULTS, json_writer(result))])
    return result


def _undecided(record: dict[str, Any], phase: str) -> str:
    n = record.get(f"{phase}_undecided")
    return f" ({n:,} undecided)" if n else ""


def outside_notes(result: dict[str, Any]) -> list[str]:
    """One line per family outside its band whose difference from Table 3 has a known reason."""
    return [f"**{row['family']}** is outside its band: {row['differs']}" for row in result["families"]
            if row["within_band"] is False and row.get("differs")]


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _params(params: dict[str, Any] | None) -> str:
    return "—" if params is None else " ".join(f"{k}={v}" for k, v in params.items())


def format_table(result: dict[str, Any]) -> str:
    """The per-family table, Markdown: published best beside ours (as published, and chosen honestly)."""
    lines = ["| family | published (Table 3) | ours, as published | its configuration | ours, chosen by validation "
             "| its configuration | configurations (finished/grid) | fit time |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["families"]:
        mark = "" if row["within_band"] is None else (" ✓" if row["within_band"] else f" (outside ±{row['band']})")
        n = row["configs"]
        lines.append(f"| {row['family']} | {_acc(row['published'])} | {_acc(row['ours'])}{mark} | "
                     f"{_params(row['best_params'])} | {_acc(row['ours_val_chosen'])} | "
                     f"{_params(row['val_chosen_params'])} | {n['finished']}/{n['grid']} | {row['time_s']:.0f} s |")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    """``results.md``: the family table, the configurations that could not run, and the mapping to today's scikit-learn."""
    sel = result["selection"]
    cluster = result["cluster"] or {"cpus": "?", "nodes": "?"}
    n_train, n_val = result["data"]["n_train"], round(result["data"]["n_train"] * SPLIT["test_size"])
    other = ([f"On other data ({result['data']['dataset']}): the published accuracies are Fashion-MNIST's, "
              "shown for reference, not as a target.", ""] if result["data"]["dataset"] != "fashion-mnist" else [])
    parts = ["# The classical benchmark of the Fashion-MNIST paper, re-run", "", *other,
             f"Wall time {result['wall_time_s']:.0f} s on {cluster['cpus']} CPUs ({cluster['nodes']} node(s)); "
             + ("the full grid of some families, each family's published best configuration only for others "
                "(the configurations column says which). " if sel.get("mixed") else
                "--quick: each family's published best configuration only. " if sel["quick"] else
                "the full grid of the selected families. ")
             + f"As published: fitted on the {n_train:,} training images, best by t10k accuracy (the paper's "
             f"protocol). Chosen by validation: fitted on the other {n_train - n_val:,} of "
             f"`train_test_split(test_size=0.2, random_state=42)`, best by accuracy on its {n_val:,}, then that "
             "configuration's t10k accuracy as published.", "",
             format_table(result), ""]
    notes = outside_notes(result)
    if notes:
        parts += [*notes, ""]
    if sel["left_out"]:
        parts += [f"Left out: {', '.join(sel['left_out'])} (hours per configuration on a small machine, or no "
                  "published result; run them with `--families` on a cluster).", ""]
    broken = [r for r in result["configs"] if r["status"] in ("cannot_run", "failed")]
    if broken:
        parts += ["## Configurations that did not run", "", "| configuration | status | why |", "|---|---|---|"]
        parts += [f"| `{r['key']}` | {r['status'].replace('_', ' ')} | {r['error']} |" for r in broken]
        parts.append("")
    parts += ["## Every configuration", "", "| configuration | today's estimator | published | test | validation |",
              "|---|---|---|---|---|"]
    parts += [f"| `{r['key']}` | `{r['estimator']}` | {_acc(r['published'])} | "
              f"{_acc(r.get('test_accuracy'))}{_undecided(r, 'test')} | {_acc(r.get('val_accuracy'))}"
              f"{_undecided(r, 'val')} |" for r in result["configs"]]
    if any(r.get(f"{p}_undecided") for r in result["configs"] for p in ("val", "test")):
        parts += ["", "Undecided: images whose scores were NaN or infinite (a degenerate fit); counted as wrong."]
    parts += ["", "## From scikit-learn 0.19 (2017) to today's", ""]
    parts += [f"- **{row['family']}** → `{row['estimator']}`: {row['mapping']}" for row in result["families"]]
    return "\n".join(parts) + "\n"


MEASURED = "src/fmnist/measured/benchmark-classical.json"


def format_readme(result: dict[str, Any] | None) -> list[str]:
    """The README's section (lines) from a committed ``results.json``: how long, and each family beside the paper."""
    if result is None:
        return [f"Not measured yet: run `fmnist benchmark classical --quick --out DIR` and commit DIR/results.json "
                f"as `{MEASURED}`."]
    sessions = result["sessions"]
    started = next((s["started"] for s in sessions if "started" in s), None)
    loads = [s[k][0] for s in sessions for k in ("loadavg_start", "loadavg_end") if k in s]
    cluster = result["cluster"] or {"cpus": "?", "nodes": "?"}
    command = "fmnist benchmark classical" + (" --quick" if result["selection"]["quick"] else "")
    when = f", {started[:10]}" if started else ""
    load = f", load average {min(loads):.1f}-{max(loads):.1f} (a shared machine)" if loads else ""
    lines = [f"`{command}` on {cluster['cpus']} CPUs ({cluster['nodes']} node){when}{load}: wall time "
             f"{result['wall_time_s']:.0f} s to the last finished configuration"
             + (f", over {len(sessions)} sessions (resumed)" if len(sessions) > 1 else "")
             + f"; each configuration one Ray task of {result['selection'].get('cpus_per_task', 1)} CPU.", "",
             "| family | published (Table 3) | ours | difference | band | configuration |", "|---|---|---|---|---|---|"]
    for row in result["families"]:
        if row["ours"] is None or row["published"] is None:
            lines.append(f"| {row['family']} | {_acc(row['published'])} | {_acc(row['ours'])} | — | — | "
                         f"{_params(row['best_params'] or row['published_params'])} |")
            continue
        verdict = "within" if row["within_band"] else "outside"
        lines.append(f"| {row['family']} | {row['published']:.3f} | {row['ours']:.3f} | "
                     # The difference of the two columns as shown: 0.836 beside 0.836 differs by +0.000.
                     f"{signed(round(row['ours'], 3) - round(row['published'], 3), 3)} | ±{row['band']} ({verdict}) | "
                     f"{_params(row['best_params'])} |")
    notes = outside_notes(result)
    if notes:
        lines += ["", *notes]
    unfinished = [row["family"] for row in result["families"] if row["ours"] is None and row["configs"]["cannot_run"]
                  < row["configs"]["run"]]
    if unfinished:
        lines += ["", f"Not finished in this run: {', '.join(unfinished)} (the same command continues it where it "
                      "stopped)."]
    if result["selection"]["left_out"]:
        lines += ["", f"Left out by `--quick`: {', '.join(result['selection']['left_out'])} (hours per configuration "
                      "on a small machine, or no published result)."]
    return lines + ["", f"<sub>Generated by `make readme` from `{MEASURED}`.</sub>"]
