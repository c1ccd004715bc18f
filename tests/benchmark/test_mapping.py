"""From the paper's 2017 configurations to today's scikit-learn: every one builds, each rule holds."""

import numpy as np
import pytest

from fmnist.benchmark import grid, mapping
from fmnist.benchmark.grid import Config

ALL = grid.expand_grid()


@pytest.mark.parametrize("config", ALL, ids=[c.key for c in ALL])
def test_every_configuration_builds_a_valid_scaled_estimator(config):
    from sklearn.base import clone
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    pipeline = mapping.build_pipeline(config)
    scaler, estimator = (step for _, step in pipeline.steps)
    assert isinstance(scaler, StandardScaler)
    inner = estimator.estimator if isinstance(estimator, OneVsRestClassifier) else estimator
    inner._validate_params()  # scikit-learn's own check of every parameter's type and range
    assert type(inner).__name__ == mapping.rules()[config.family]["estimator"].rpartition(".")[2]
    assert clone(pipeline).get_params()["steps"][1][0] == pipeline.steps[1][0]
    assert mapping.describe(config).startswith(type(estimator).__name__ + "(")


# Fitting on ten images is what decides "cannot run"; MLP, boosting and forests are left out
# here only for time (their parameters are validated above).
CHEAP = [c for c in ALL if c.family not in ("MLPClassifier", "GradientBoostingClassifier", "RandomForestClassifier")]


def test_exactly_what_2017_scikit_learn_refused_cannot_run():
    refused = {c.key: mapping.check_runs(c) for c in CHEAP}
    refused = {k: why for k, why in refused.items() if why}
    expected = {c.key for c in ALL if (c.family == "LogisticRegression" and c.params["multi_class"] == "multinomial")
                or (c.family == "LinearSVC" and c.params["multi_class"] == "ovr" and c.params["penalty"] == "l1")}
    assert set(refused) == expected and len(expected) == 12
    assert all("\n" not in why for why in refused.values())
    assert "liblinear" in refused["LogisticRegression(penalty='l2', C=1.0, multi_class='multinomial')"]
    # None of them has a published result either: the paper's runner dropped them the same way.
    assert all(grid.published_accuracy(c) is None for c in ALL if c.key in expected)


def test_renamed_values_moved_parameters_and_2017_defaults():
    path, params, wrapper = mapping.mapped_params(Config("SGDClassifier", {"loss": "log", "penalty": "l1"}))
    assert (path, wrapper) == ("sklearn.linear_model.SGDClassifier", None)
    assert params == {"loss": "log_loss", "penalty": "l1", "max_iter": 5, "tol": None, "random_state": 42}
    _, params, _ = mapping.mapped_params(Config("PassiveAggressiveClassifier", {"C": 10.0}))
    assert params == {"loss": "hinge", "penalty": None, "learning_rate": "pa1", "max_iter": 5, "tol": None,
                      "eta0": 10.0, "random_state": 42}
    _, params, _ = mapping.mapped_params(Config("GradientBoostingClassifier", {"loss": "deviance"}), seed=None)
    assert params == {"loss": "log_loss"}
    assert mapping.mapped_params(Config("SVC", {"C": 1.0}))[1]["gamma"] == "auto"
    assert mapping.mapped_params(Config("LinearSVC", {"C": 1.0}))[1]["dual"] is True
    assert mapping.mapped_params(Config("MLPClassifier", {}))[1]["n_iter_no_change"] == 2


def test_logistic_regression_ovr_is_one_vs_rest_around_liblinear():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    ovr = mapping.build_estimator(Config("LogisticRegression", {"penalty": "l1", "C": 10.0, "multi_class": "ovr"}))
    assert isinstance(ovr, OneVsRestClassifier) and isinstance(ovr.estimator, LogisticRegression)
    assert (ovr.estimator.solver, ovr.estimator.l1_ratio, ovr.estimator.C) == ("liblinear", 1.0, 10.0)
    plain = mapping.build_estimator(Config("LogisticRegression", {"penalty": "l2", "multi_class": "multinomial"}))
    assert isinstance(plain, LogisticRegression) and plain.l1_ratio == 0.0


def test_passive_aggressive_as_sgd_learns_like_the_deprecated_class():
    import warnings

    from sklearn.linear_model import PassiveAggressiveClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 20)), rng.integers(0, 3, 300)
    ours = mapping.build_estimator(Config("PassiveAggressiveClassifier", {"C": 0.1}), seed=3).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation, and 5 epochs do not converge
        theirs = PassiveAggressiveClassifier(C=0.1, max_iter=5, tol=None, random_state=3).fit(x, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_)


def test_seed_is_the_random_state_of_estimators_that_take_one():
    assert mapping.build_estimator(Config("ExtraTreeClassifier", {}), seed=7).random_state == 7
    assert "random_state" not in mapping.mapped_params(Config("KNeighborsClassifier", {}), seed=7)[1]
    assert mapping.build_estimator(Config("DecisionTreeClassifier", {}), seed=None).random_state is None


def test_cost_estimates_scale_with_the_training_set():
    config = Config("SVC", {"C": 1.0})
    assert mapping.cost_cpu_s(config, 30_000) == mapping.cost_cpu_s(config) / 2 > 0
    assert all(mapping.rules()[f]["why"] for f in grid.families())


def test_gaussian_nb_keeps_the_2017_variance_floor():
    # scikit-learn 0.18/0.19 added 1e-9 x the largest feature variance of the training data to
    # every class's variances, with no parameter to change it: the mapped estimator does exactly that.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)) * [1.0, 3.0, 0.5, 2.0]
    y = np.arange(60) % 3
    x[y == 0, 2] = 0.25  # a feature constant within a class: its variance is the floor alone
    nb = mapping.build_estimator(Config("GaussianNB", {"priors": [0.1] * 10})).set_params(priors=None).fit(x, y)
    floor = 1e-9 * np.var(x, axis=0).max()
    expected = np.stack([np.var(x[y == c], axis=0) for c in range(3)]) + floor
    np.testing.assert_allclose(nb.var_, expected, rtol=1e-12, atol=0)
    assert nb.var_[0, 2] == pytest.approx(floor)
    assert "0.19.0" in mapping.rules()["GaussianNB"]["why"] and mapping.rules()["GaussianNB"]["differs"]
