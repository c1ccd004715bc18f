"""Scores over several seeds: what ``fmnist compare --seeds`` and ``fmnist sweep --seeds`` rank by.

Two recipes a few thousandths apart on 12,000 validation images may differ only by their seed.
Trained once per seed on the same split, each recipe's mean ranks it, and a challenger's gap to
the leader is taken seed by seed (same split, same seed: what the seed moves in both cancels),
with the gap's standard error and a two-sided paired t-test at 5%: with 3 seeds the gap must
exceed 4.3 standard errors to count, with 10 about 2.3.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from fmnist.errors import UsageError

__all__ = ["check_seeds", "gaps_to_leader", "paired_gap", "shared_or_mean"]


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``--seeds``: two or more different seeds, or a :class:`UsageError` saying so."""
    seeds = tuple(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: give two or more different seeds, e.g. 1,2,3 (got {','.join(map(str, seeds))})")
    return seeds


def shared_or_mean(values: Sequence[float | None]) -> float | None:
    """What replicates' runs share (their epochs), else its mean; None where none has one."""
    given = [v for v in values if v is not None]
    return (given[0] if len(set(given)) == 1 else statistics.fmean(given)) if given else None


def gaps_to_leader(rows: list[dict[str, Any]], key: str, *, higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Set each row's ``val_gap``, ``val_gap_se`` and ``beyond_noise``: its gap in ``key`` to the
    first row, paired by seed over the rows' ``runs`` (``{"seed", key}`` each; :func:`paired_gap`).
    None on the leader, on rows without a score (``row[key]`` None), and on every row when the
    first has none. Returns ``rows``."""
    lead = rows[0] if rows and rows[0][key] is not None else None
    for row in rows:
        gap = (None, None, None)
        if lead is not None and row is not lead and row[key] is not None:
            gap = paired_gap({r["seed"]: r[key] for r in lead["runs"]}, {r["seed"]: r[key] for r in row["runs"]},
                             higher_is_better=higher_is_better)
        row.update(val_gap=gap[0], val_gap_se=gap[1], beyond_noise=gap[2])
    return rows


def paired_gap(lead: Mapping[int, float], other: Mapping[int, float], *,
               higher_is_better: bool = True) -> tuple[float, float, bool]:
    """The leader's advantage over ``other``, paired by seed (both map seed -> score).

    Returns ``(mean, standard error, beyond_noise)``: the mean of the per-seed advantages (positive
    where the leader is better, whichever way the score points), its standard error, and whether
    a two-sided paired t-test at 5% rejects a zero gap. Seeds missing from either side are
    left out; fewer than two shared seeds is a ValueError.
    """
    from scipy.stats import t

    seeds = [s for s in lead if s in other]
    if len(seeds) < 2:
        raise ValueError(f"a paired gap needs two or more shared seeds, got {len(seeds)}")
    sign = 1.0 if higher_is_better else -1.0
    gaps = [sign * (lead[s] - other[s]) for s in seeds]
    mean, se = statistics.fmean(gaps), statistics.stdev(gaps) / math.sqrt(len(gaps))
    return mean, se, bool(abs(mean) > t.ppf(0.975, len(gaps) - 1) * se)
