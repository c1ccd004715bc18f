"""fmnist.plots.metric_vs_params: one panel per searched option, failed trials left out."""

from __future__ import annotations

import pytest

from fmnist.plots import metric_vs_params

TRIALS = [
    {"params": {"lr": 0.01, "optimizer": "adam"}, "val_accuracy": 0.9, "status": "finished"},
    {"params": {"lr": 0.0001, "optimizer": "sgd"}, "val_accuracy": 0.7, "status": "stopped"},
    {"params": {"lr": 0.001, "optimizer": "sgd"}, "val_accuracy": 0.8, "status": "finished"},
    {"params": {"lr": 1e30, "optimizer": "sgd"}, "val_accuracy": None, "status": "failed"},
]


def test_one_panel_per_option_and_failed_trials_left_out():
    fig = metric_vs_params(TRIALS, "val_accuracy")
    lr_ax, opt_ax = fig.axes[:2]
    assert [ax.get_xlabel() for ax in (lr_ax, opt_ax)] == ["lr", "optimizer"]
    # finished, stopped (hollow) and best: 2 + 1 + 1 points, the failed trial nowhere
    assert sum(len(c.get_offsets()) for c in lr_ax.collections) == 4
    best = lr_ax.collections[-1].get_offsets()
    assert tuple(best[0]) == (0.01, 0.9)
    assert lr_ax.get_xscale() == "log"  # 1e-4 .. 1e-2 spans two decades
    assert [t.get_text() for t in opt_ax.get_xticklabels()] == ["adam", "sgd"]


def test_nothing_to_plot_is_an_error():
    with pytest.raises(ValueError, match="at least one trial"):
        metric_vs_params([TRIALS[-1]], "val_accuracy")


def test_a_sweep_over_seeds_shows_each_points_mean_and_spread_best_in_red():
    trials = [{"params": {"lr": lr, "optimizer": "sgd"}, "val_accuracy": acc, "status": "finished"}
              for lr, acc in ((0.01, 0.90), (0.01, 0.92), (0.1, 0.80), (0.1, 0.86))]
    points = [{"params": {"lr": 0.01, "optimizer": "sgd"}, "val_accuracy": 0.91, "val_accuracy_sd": 0.014,
               "status": "finished"},
              {"params": {"lr": 0.1, "optimizer": "sgd"}, "val_accuracy": 0.83, "val_accuracy_sd": 0.042,
               "status": "finished"}]
    fig = metric_vs_params(trials, "val_accuracy", points=points)
    lr_ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in lr_ax.collections if len(c.get_offsets()) == 4) == 4  # every seed
    others, best = lr_ax.containers  # error bars: the other points, then the best
    assert list(zip(*best.lines[0].get_data())) == [(0.01, 0.91)] and best.lines[0].get_color() == "C3"
    assert list(zip(*others.lines[0].get_data())) == [(0.1, 0.83)]
    low, high = others.lines[2][0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx((0.83 - 0.042, 0.83 + 0.042))
