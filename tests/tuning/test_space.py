"""fmnist.tuning.space: --param NAME=SPEC parsing, typing, and the grid Tune expands."""

from __future__ import annotations

import pytest

from fmnist.errors import UsageError
from fmnist.tuning.space import expand, grid_size, parse_param, parse_params


def test_specs_are_typed_by_the_option():
    assert parse_param("lr=0.1,0.01").values == (0.1, 0.01)
    assert parse_param("batch-size=32,64").values == (32, 64)  # dashes as on the command line
    assert parse_param("nesterov=true,false").values == (True, False)
    assert parse_param("optimizer=sgd,adam").values == ("sgd", "adam")
    spec = parse_param("lr=loguniform:1e-4:1e-2")
    assert (spec.kind, spec.low, spec.high, spec.random) == ("loguniform", 1e-4, 1e-2, True)
    assert parse_param("shift=randint:0:2").high == 2
    assert parse_param("optimizer=choice:sgd,adam").values == ("sgd", "adam")


@pytest.mark.parametrize("arg, fragment", [
    ("lr", "expected NAME=SPEC"),
    ("lr=", "expected NAME=SPEC"),
    ("lrr=0.1", "'lrr' is not a training option"),
    ("threads=1,2", "set by --cpus-per-trial"),
    ("lr=0.1,abc", "'abc' is not a finite number"),
    ("batch_size=32,0.5", "'0.5' is not a whole number"),
    ("nesterov=maybe", "not true or false"),
    ("lr=uniform:0.1", "expected uniform:LO:HI"),
    ("lr=uniform:0.2:0.1", "LO must be below HI"),
    ("lr=loguniform:0:1", "0 < LO"),
    ("lr=randint:1:5", "randint draws ints"),
    ("batch_size=uniform:16:64", "use randint:LO:HI"),
    ("lr=gauss:0:1", "unknown SPEC 'gauss'"),
    ("lr=0.1,0.1", "given twice"),
])
def test_bad_specs_are_usage_errors_naming_the_flag(arg, fragment):
    with pytest.raises(UsageError) as err:
        parse_param(arg)
    assert str(err.value).startswith(f"--param {arg}: ") and fragment in str(err.value)


def test_an_option_given_twice_is_refused():
    with pytest.raises(UsageError, match="lr is given twice"):
        parse_params(["lr=0.1", "lr=0.2"])


def test_grids_combine_in_full_and_random_specs_are_drawn_per_sample():
    specs = parse_params(["lr=0.1,0.01,0.001", "batch_size=32,64", "momentum=uniform:0:0.9"])
    assert grid_size(specs) == 6
    trials = expand(specs, samples=2, seed=7)
    assert len(trials) == 12
    grid = {(t["lr"], t["batch_size"]) for t in trials}
    assert grid == {(lr, bs) for lr in (0.1, 0.01, 0.001) for bs in (32, 64)}
    momenta = [t["momentum"] for t in trials]
    assert all(0 <= m <= 0.9 for m in momenta) and len(set(momenta)) == 12
    # Seeded: the same draws again, other draws with another seed.
    assert expand(specs, samples=2, seed=7) == trials
    assert expand(specs, samples=2, seed=8) != trials


def test_randint_includes_both_ends_and_a_single_value_is_fixed():
    specs = parse_params(["shift=randint:0:1", "epochs=3"])
    draws = expand(specs, samples=40, seed=0)
    assert {t["shift"] for t in draws} == {0, 1}
    assert {t["epochs"] for t in draws} == {3}
