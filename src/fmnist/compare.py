"""Train several models on the same data split and seed, and rank them on one leaderboard.

Models are ranked by validation accuracy (the 12,000 images split off the training set),
the number a user may select by; test accuracy (t10k) is shown beside it, reported apart,
and chose nothing. Each model is trained by :func:`fmnist.runs.train_run` into its own run
folder, so every row can be reloaded, evaluated or exported later::

    OUT/
      leaderboard.md     the table, for people
      leaderboard.json   the same rows, for programs
      runs/NAME/         one run folder per model (see fmnist.runs)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fmnist._files import atomic_write, check_free, write_json
from fmnist.data import Dataset
from fmnist.errors import UsageError
from fmnist.models import count_parameters, get_preset
from fmnist.reporting.leaderboard import leaderboard, optimizer_and_lr, rank
from fmnist.runs import (
    RunResult,
    resolve_config,
    run_name,
    split_record,
    train_run,
    versions,
)
from fmnist.training import Callback

LEADERBOARD_FORMAT = "fmnist-leaderboard"


def compare(models: Sequence[str], data: Dataset, *, epochs: int | None = None, seed: int | None = None,
            out_dir: str | Path | None = None, callbacks_for: Callable[[str], Sequence[Callback]] | None = None,
            on_start: Callable[[int, str], None] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train each of ``models`` (preset names or layer strings) and rank them.

    ``seed`` overrides every preset's own (None: each preset's default): a torch model's
    shuffling and initialisation seed, a scikit-learn model's ``random_state``, so all models
    see the same split and the same seed. ``epochs`` overrides every torch preset's own;
    scikit-learn presets keep their iteration count (``max_iter``).
    Returns ``{"rows": [...best first], ...}``; with ``out_dir``, also writes the files above.
    An ``out_dir`` that holds a leaderboard or any of the run folders is refused before
    anything trains (:class:`~fmnist.errors.OutputExistsError`), unless ``overwrite``.
    """
    if not models:
        raise UsageError("compare: name at least one model (see 'fmnist models')")
    presets = [get_preset(m) for m in models]  # every name is checked before anything trains
    configs = [resolve_config(p, epochs=epochs if p.family == "torch" else None, seed=seed)
               for p in presets]  # bad --epochs fails now too
    names = _run_names(models)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        check_free([out / "leaderboard.json", out / "leaderboard.md", *(out / "runs" / n for n in names)],
                   overwrite=overwrite, what="an earlier comparison")
    rows, start = [], time.perf_counter()
    for i, (model, preset, name, config) in enumerate(zip(models, presets, names, configs), 1):
        if on_start:
            on_start(i, name)
        result = train_run(model, data, config=config, out_dir=out / "runs" / name if out else None,
                           callbacks=callbacks_for(name) if callbacks_for else (), overwrite=overwrite)
        rows.append(_row(name, model, result))
    rows = rank(rows)
    for place, row in enumerate(rows, 1):
        row["rank"] = place
    board = {"format": LEADERBOARD_FORMAT, "format_version": 1, "selected_by": "val_accuracy",
             "epochs": epochs, "seed": seed, "rows": rows, "total_time_s": time.perf_counter() - start,
             "data": {"dataset": data.dataset, "source": str(data.source), "verified": data.verified,
                      "split": split_record()},
             "versions": versions()}
    if out is not None:
        write_json(out / "leaderboard.json", board)
        atomic_write(out / "leaderboard.md", lambda tmp: tmp.write_text(format_markdown(board)))
    return board


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
        epochs = int(getattr(result.model, "n_iter_", 0)) or None
        optimizer, lr = "scikit-learn SGD", None  # its own step-size schedule, no single rate
    return {"name": name, "model": model, "family": result.preset.family, "parameters": params,
            "optimizer": optimizer, "lr": lr,
            "epochs": epochs, "train_time_s": m["train_time_s"], "val_accuracy": m["val"]["accuracy"],
            "val_loss": m["val"]["loss"], "test_accuracy": m["test"]["accuracy"], "test_loss": m["test"]["loss"],
            "config": result.config.to_dict() if result.preset.family == "torch" else None,
            "run_dir": str(result.run_dir) if result.run_dir else None}


def format_table(board: dict[str, Any]) -> str:
    """The leaderboard as aligned plain text for the terminal, best first."""
    footer = (f"ranked by validation accuracy; test (t10k) is reported apart and chose nothing; "
              f"total {board['total_time_s']:.1f}s")
    return leaderboard(board["rows"]) + "\n" + footer


def format_markdown(board: dict[str, Any]) -> str:
    data = board["data"]
    epochs = board["epochs"] or "each preset's"
    seed = board["seed"] if board["seed"] is not None else "each preset's"
    about = (f"Data: {data['dataset']} from {data['source']} (verified: {data['verified']}); validation = "
             f"{data['split']['test_size']:.0%} of the training set (random_state {data['split']['random_state']}). "
             f"Epochs: {epochs}; seed: {seed}.")
    lines = ["# fmnist compare", "", about, "", leaderboard(board["rows"], "markdown")]
    versions_line = ", ".join(f"{k} {v}" for k, v in board["versions"].items())
    lines += ["", (f"Ranked by validation accuracy. The test column is the t10k set, reported apart: nothing was "
                   f"chosen by it. Total time {board['total_time_s']:.1f} s. Versions: {versions_line}"), ""]
    return "\n".join(lines)
