"""The tutorial's study (shared/seed, chapter 7-1), reproduced on the real data.

Four experiments, each a row of data: the linear baseline scored by 5-fold cross-validation
on the 60,000 training images, then three networks trained for 5 epochs on the 48,000 /
12,000 split and scored on the 12,000. Each row carries the tutorial's number and the band
of run-to-run noise we accept around it. The test set (t10k) is scored apart and labelled so:
nothing is chosen by it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import atomic_write_all, check_free, check_other_work, claim, json_writer, text_writer
from fmnist._text import plural, signed
from fmnist.data import Dataset
from fmnist.errors import DataError
from fmnist.evaluation import evaluate
from fmnist.evaluation.metrics import as_features
from fmnist.models import create_model, get_preset
from fmnist.reporting.leaderboard import render_table
from fmnist.runs import (
    RunResult,
    check_run_dir,
    recorded_warnings,
    replacing_outputs,
    resolve_config,
    save_run,
    settle_replaced_outputs,
    train_run,
    versions,
)
from fmnist.training import Callback


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    model: str
    metric: str
    tutorial: float
    band: float  # accepted |ours - tutorial|: the run-to-run noise of the tutorial's setup


EXPERIMENTS = (
    Experiment("SGDClassifier (log loss)", "sgd-logreg", "5-fold CV accuracy", 0.8196, 0.005),
    Experiment("Softmax network", "softmax", "validation accuracy", 0.8496, 0.01),
    Experiment("Dense 200 + softmax", "mlp-200", "validation accuracy", 0.8758, 0.01),
    Experiment("Dense 200 + 100 + softmax", "mlp-200-100", "validation accuracy", 0.8625, 0.015),
)


def cross_validate_linear(data: Dataset, model_name: str = "sgd-logreg",
                          folds: int = 5) -> tuple[float, dict[str, Any], list[str], list[Any]]:
    """The study's ``cross_validate(sc, train_scaled, train_target, n_jobs=-1)``.

    Returns (mean CV accuracy, the test-set (t10k) loss and accuracy averaged over the five
    fold models, captured warnings, the fold models). The fold models come back from
    ``cross_validate`` itself
    (``return_estimator=True``): fitting a sixth model on all 60,000 images only for the test
    number would add a quarter to the study's scikit-learn time.

    Threads instead of joblib's default processes: the result is identical, scikit-learn's SGD
    releases the GIL, the 376 MB feature matrix is not copied to workers, and the expected
    ConvergenceWarning (max_iter=5) is captured here instead of printed by each worker.
    """
    import joblib
    from sklearn.model_selection import cross_validate

    if len(data.x_train) < folds:
        raise DataError(f"{plural(len(data.x_train), 'training image')}: too few for {folds}-fold cross-validation; "
                        f"give the data at least {folds} images")
    with recorded_warnings() as caught, joblib.parallel_config(backend="threading"):
        scores = cross_validate(create_model(model_name), as_features(data.x_train), data.y_train, cv=folds,
                                n_jobs=-1, return_estimator=True)
    tests = [evaluate(model, data.x_test, data.y_test) for model in scores["estimator"]]
    test = {"loss": float(np.mean([t["loss"] for t in tests])),
            "accuracy": float(np.mean([t["accuracy"] for t in tests])), "n": tests[0]["n"],
            "note": f"test (t10k), mean of the {folds} fold models"}
    return (float(np.mean(scores["test_score"])), test,
            caught, list(scores["estimator"]))


def run_experiment(exp: Experiment, data: Dataset, out_dir: Path | None,
                   callbacks: list[Callback], *, overwrite: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    run_dir = out_dir / "runs" / exp.model if out_dir else None
    if run_dir:
        check_run_dir(run_dir, overwrite=overwrite)  # the linear experiment writes its run itself
    if exp.metric.startswith("5-fold"):
        ours, test, caught, fold_models = cross_validate_linear(data, exp.model)
        # The run folder keeps one fold model (the first) as a loadable model; the test
        # number stored with it is the mean of the five, labelled so.
        model = fold_models[0]
        if run_dir:
            preset = get_preset(exp.model)
            metrics = {"cv_accuracy": ours, "test": test, "warnings": caught}
            save_run(RunResult(exp.model, preset, model, resolve_config(preset), [], metrics,
                               cv_fold=(0, len(fold_models))), run_dir, data)
        extra = {"warnings": caught}
    else:
        result = train_run(exp.model, data, out_dir=run_dir, callbacks=callbacks, overwrite=overwrite)
        ours, test = result.metrics["val"]["accuracy"], result.metrics["test"]
        extra = {"history": result.history, "val_loss": result.metrics["val"]["loss"]}
    return {"experiment": exp.name, "model": exp.model, "metric": exp.metric, "tutorial": exp.tutorial,
            "ours": ours, "delta": ours - exp.tutorial, "band": exp.band,
            "within_band": abs(ours - exp.tutorial) <= exp.band, "test_accuracy": test["accuracy"],
            "test_loss": test["loss"], "test_note": test.get("note"), "time_s": time.perf_counter() - start,
            "run_dir": str(run_dir) if run_dir else None, **extra}


def reproduce(data: Dataset, out_dir: Path | None = None, *, experiments=EXPERIMENTS,
              callbacks_for: Callable[[Experiment], list[Callback]] = lambda exp: [],
              on_start: Callable[[Experiment], None] = lambda exp: None, overwrite: bool = False) -> dict[str, Any]:
    """Run the study; returns ``{"rows": [...], "total_time_s", ...}`` and writes it when ``out_dir``.

    ``on_start`` and ``callbacks_for`` let a caller (the CLI) show progress; the library prints nothing.
    An ``out_dir`` holding earlier results or run folders is refused before anything trains
    (:class:`~fmnist.errors.OutputExistsError`), unless ``overwrite``; the earlier study is then
    replaced only by a finished one (interrupted, this one leaves it as it was).
    """
    if out_dir is None:
        return _reproduce(data, None, experiments, callbacks_for, on_start, overwrite)
    out = Path(out_dir)
    results, runs = ("results.json", "results.md"), [out / "runs" / exp.model for exp in experiments]
    # Claimed, then checked: a second study given the same folder is refused, not mixed with this one.
    with claim(out):
        settle_replaced_outputs(out, results, runs)  # what a killed --overwrite left
        check_other_work(out, "results.json")
        check_free([*(out / name for name in results), *runs], overwrite=overwrite, what="an earlier study")
        # The earlier study waits aside, whole, until this one has written its results.
        with replacing_outputs(out, results, runs) if overwrite else contextlib.nullcontext():
            return _reproduce(data, out, experiments, callbacks_for, on_start, overwrite)


def _reproduce(data, out_dir, experiments, callbacks_for, on_start, overwrite) -> dict[str, Any]:
    start = time.perf_counter()
    rows = []
    for exp in experiments:
        on_start(exp)
        rows.append(run_experiment(exp, data, Path(out_dir) if out_dir else None, callbacks_for(exp),
                                   overwrite=overwrite))
    result = {"rows": rows, "total_time_s": time.perf_counter() - start,
              "data": {"dataset": data.dataset, "source": str(data.source), "verified": data.verified},
              "versions": versions()}
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_all([(out_dir / "results.md", text_writer(format_markdown(result))),
                          (out_dir / "results.json", json_writer(result))])
    return result


def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["experiment", "metric", "tutorial", "ours", "Δ", "in band", "test (t10k)", "time"]
    rows = [[r["experiment"], r["metric"], f"{r['tutorial']:.4f}", f"{r['ours']:.4f}", signed(r["delta"], 4),
             ("yes" if r["within_band"] else "NO") + f" (±{r['band']})", f"{r['test_accuracy']:.4f}",
             f"{r['time_s']:.1f}s"] for r in result["rows"]]
    return header, rows


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    out = [render_table(*table_rows(result))]
    out.append(f"total {result['total_time_s']:.1f}s; test (t10k) is reported apart and chose nothing")
    out += [f"{r['experiment']}: {r['test_note']}" for r in result["rows"] if r.get("test_note")]
    return "\n".join(out)


def format_markdown(result: dict[str, Any]) -> str:
    on = "the real Fashion-MNIST" if result["data"]["dataset"] == "fashion-mnist" else "other MNIST-format data"
    lines = [f"# fmnist reproduce: the tutorial's study on {on}", "",
             f"Data: {result['data']['dataset']} from {result['data']['source']} "
             f"(verified: {result['data']['verified']}). Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), "",
             render_table(*table_rows(result), "markdown")]
    tutorial = ("The tutorial's numbers are from Keras 2 on the same data; 'in band' means within the run-to-run "
                "noise of that setup." if result["data"]["dataset"] == "fashion-mnist" else
                "The tutorial's numbers are from Keras 2 on Fashion-MNIST, not this data: they are no target here.")
    test = "the t10k set" if result["data"]["dataset"] == "fashion-mnist" else "the data's test set"
    lines += ["", f"Total time {result['total_time_s']:.1f} s. {tutorial} The test column is {test}, kept apart: "
              "nothing was chosen by it.", ""]
    lines += [f"{r['experiment']}: {r['test_note']}." for r in result["rows"] if r.get("test_note")]
    return "\n".join(lines)
