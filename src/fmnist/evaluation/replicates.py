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
from collections.abc import Mapping

__all__ = ["paired_gap"]


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
