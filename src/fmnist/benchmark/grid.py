"""The classical benchmark as data: the paper's parameter grids and its published results.

``zalando-baselines.json`` is the Fashion-MNIST paper's ``benchmark/baselines.json`` as
published: per scikit-learn class, a list of dicts whose values are combined as one full grid
(every dict's keys, in order, as ``itertools.product``), exactly as the paper's runner expands
it: 14 families, 143 configurations. ``zalando-table3.csv`` is the paper's Table 3: the test
accuracy of each configuration that ran (126 rows; none for GaussianProcessClassifier).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import itertools
import json
from importlib import resources
from typing import Any

from fmnist.errors import UsageError

# Families whose every configuration needs hours on a small machine (kernel SVMs on 60,000
# images, 10 x n_estimators boosted trees, n x n Gaussian-process kernels): --quick leaves them out.
SLOW_FAMILIES = ("SVC", "GradientBoostingClassifier", "GaussianProcessClassifier")


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration of the grid: a family (the 2017 class name) and its parameters as published."""

    family: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        """A stable name, e.g. ``SGDClassifier(loss='hinge', penalty='l2')``: what resume matches on."""
        return f"{self.family}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _data_text(name: str) -> str:
    return resources.files("fmnist.benchmark").joinpath("_data", name).read_text(encoding="utf-8")


@functools.cache
def baselines() -> dict[str, Any]:
    """The paper's ``baselines.json``: ``{"common": {...}, "classifiers": {family: [{param: [values]}]}}``."""
    return json.loads(_data_text("zalando-baselines.json"))


def _parse_value(value: Any) -> Any:
    # The paper's runner reads strings such as "(100,10,)" as tuples (ast.literal_eval); so do we.
    return ast.literal_eval(value) if isinstance(value, str) and value.startswith("(") else value


def expand_grid(grid: dict[str, Any] | None = None) -> list[Config]:
    """Every configuration of ``grid`` (default: the paper's), in the paper's order.

    Each family's list of dicts is one full grid over all their keys; ``common`` is added to
    every configuration, as the paper's runner does.
    """
    grid = baselines() if grid is None else grid
    configs = []
    for family, blocks in grid["classifiers"].items():
        names = [name for block in blocks for name in block]
        values = [[_parse_value(v) for v in block[name]] for block in blocks for name in block]
        for combo in itertools.product(*values):
            configs.append(Config(family, {**dict(zip(names, combo)), **grid.get("common", {})}))
    return configs


def families() -> list[str]:
    """The 14 family names, in the paper's order."""
    return list(baselines()["classifiers"])


def _comparable(value: Any) -> Any:
    """Table 3 writes C=1 for 1.0 and [100, 10] for (100, 10): compare numbers as floats, sequences as lists."""
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _parse_table_params(text: str) -> dict[str, Any]:
    """``"criterion=entropy max_depth=10"`` -> ``{"criterion": "entropy", "max_depth": 10}``; lists may hold spaces."""
    params: dict[str, Any] = {}
    name, depth, token = None, 0, ""
    for part in text.split(" "):
        if depth == 0:
            name, token = part.split("=", 1)
        else:
            token += " " + part
        depth = token.count("[") - token.count("]")
        if depth == 0:
            try:
                params[name] = ast.literal_eval(token)
            except (ValueError, SyntaxError):
                params[name] = token
    return params


@functools.cache
def published_table() -> list[dict[str, Any]]:
    """Table 3 as rows ``{"family", "params", "accuracy"}`` (test accuracy on Fashion-MNIST), as printed."""
    rows = csv.DictReader(_data_text("zalando-table3.csv").splitlines())
    return [{"family": r["family"], "params": _parse_table_params(r["parameters"]),
             "accuracy": float(r["test_accuracy_fashion"])} for r in rows]


def published_accuracy(config: Config) -> float | None:
    """Table 3's test accuracy for this configuration, or None when the paper has no row for it."""
    want = {k: _comparable(v) for k, v in config.params.items()}
    for row in published_table():
        if row["family"] == config.family and {k: _comparable(v) for k, v in row["params"].items()} == want:
            return row["accuracy"]
    return None


def published_best(family: str) -> tuple[float, Config] | None:
    """The family's best Table 3 accuracy and its configuration (the first listed on ties); None if no row."""
    best = None
    for config in expand_grid():
        if config.family == family:
            acc = published_accuracy(config)
            if acc is not None and (best is None or acc > best[0]):
                best = (acc, config)
    return best


def select(quick: bool = False, family_names: list[str] | None = None) -> tuple[list[Config], list[str]]:
    """The configurations to run and the families left out by ``quick`` (with no explicit ``family_names``).

    ``quick``: each family's published best configuration only. ``family_names``: only those
    families (names as in the paper, case-insensitive); unknown names are a :class:`UsageError`.
    """
    known = families()
    left_out: list[str] = []
    if family_names:
        by_lower = {name.lower(): name for name in known}
        unknown = [name for name in family_names if name.lower() not in by_lower]
        if unknown:
            raise UsageError(f"--families: unknown family {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(known)}")
        chosen = [by_lower[name.lower()] for name in family_names]
    else:
        chosen = known
        if quick:
            left_out = [name for name in known if name in SLOW_FAMILIES]
            chosen = [name for name in known if name not in SLOW_FAMILIES]
    if quick:
        bests = {name: published_best(name) for name in chosen}
        no_row = [name for name, best in bests.items() if best is None]
        left_out += [name for name in no_row if name not in left_out]
        return [best[1] for best in bests.values() if best is not None], left_out
    return [c for c in expand_grid() if c.family in chosen], left_out
