"""Paired gaps over seeds: what compare --seeds and sweep --seeds rank challengers by."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_rel

from fmnist.errors import UsageError
from fmnist.evaluation.replicates import check_seeds, gaps_to_leader, paired_gap, shared_or_mean


@pytest.mark.parametrize("n, shift", [(3, 0.002), (3, 0.01), (5, 0.001), (10, 0.003), (10, 0.0)])
def test_the_gap_and_its_verdict_are_the_paired_t_tests(n, shift):
    rng = np.random.default_rng(n)
    lead = 0.9 + rng.normal(0, 0.003, n)
    other = lead - shift + rng.normal(0, 0.002, n)
    mean, se, beyond = paired_gap(dict(enumerate(lead)), dict(enumerate(other)))
    diff = lead - other
    assert mean == pytest.approx(diff.mean()) and se == pytest.approx(diff.std(ddof=1) / np.sqrt(n))
    assert beyond == bool(ttest_rel(lead, other).pvalue < 0.05)


def test_a_gap_of_three_and_a_half_standard_errors_over_three_seeds_is_noise():
    # Past a rule of two standard errors, short of the t-test's 4.3 at two degrees of freedom.
    mean, se, beyond = paired_gap({1: 0.9, 2: 0.9, 3: 0.9}, {1: 0.899, 2: 0.897, 3: 0.898})
    assert mean == pytest.approx(0.002) and 3 < mean / se < 4 and not beyond
    assert paired_gap({s: 0.9 for s in range(10)}, {s: 0.898 + 0.001 * (s % 3 - 1) for s in range(10)})[2]


def test_a_lower_is_better_score_counts_the_leaders_lead_as_positive():
    lead, other = {1: 0.30, 2: 0.31, 3: 0.29}, {1: 0.40, 2: 0.42, 3: 0.41}
    mean, _, beyond = paired_gap(lead, other, higher_is_better=False)
    assert mean == pytest.approx(0.11) and beyond
    assert paired_gap(lead, other)[0] == pytest.approx(-0.11)


def test_pairs_by_seed_not_by_position_and_only_shared_seeds():
    lead = {1: 0.90, 2: 0.95, 3: 0.80}
    other = {3: 0.79, 1: 0.89, 2: 0.94, 4: 0.10}  # the same scores, 0.01 lower, listed in another order
    mean, se, beyond = paired_gap(lead, other)
    assert mean == pytest.approx(0.01) and se == pytest.approx(0.0, abs=1e-12) and beyond
    with pytest.raises(ValueError, match="two or more shared seeds"):
        paired_gap({1: 0.9, 2: 0.9}, {2: 0.8, 3: 0.8})


def test_gaps_to_the_leader_leave_out_rows_without_a_score():
    def row(loss, seeds=(1, 2, 3)):
        return {"val_loss": None if loss is None else sum(loss) / 3,
                "runs": [{"seed": s, "val_loss": v} for s, v in zip(seeds, loss or (None,) * 3)]}

    rows = gaps_to_leader([row([0.30, 0.31, 0.29]), row([0.40, 0.42, 0.41]), row(None)], "val_loss",
                          higher_is_better=False)
    assert [r["val_gap"] for r in rows] == [None, pytest.approx(0.11), None]
    assert rows[1]["beyond_noise"] is True and rows[2]["beyond_noise"] is None
    # A leader without a score (every point failed): no gaps at all.
    assert {r["val_gap"] for r in gaps_to_leader([row(None), row([0.4, 0.4, 0.4])], "val_loss")} == {None}


def test_seeds_and_what_replicates_share():
    assert check_seeds([3, 1]) == (3, 1)
    for bad in ([1], [1, 2, 1]):
        with pytest.raises(UsageError, match="give two or more different seeds"):
            check_seeds(bad)
    assert shared_or_mean([5, 5, None]) == 5 and isinstance(shared_or_mean([5, 5]), int)  # shown as 5, not 5.0
    assert shared_or_mean([4, 6]) == 5.0 and shared_or_mean([None]) is None
