import pytest

from fmnist.plots import learning_curves


def _history(epochs=3, val=True):
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": 1.0 / e, "accuracy": 1 - 0.5 / e}
        if val:
            row.update(val_loss=1.2 / e, val_accuracy=1 - 0.6 / e)
        rows.append(row)
    return rows


def _styles(ax):
    return [(line.get_label(), line.get_linestyle()) for line in ax.lines]


@pytest.mark.parametrize("val, expected", [(True, [("train", "-"), ("val", "--")]), (False, [("train", "-")])])
def test_single_run_train_solid_val_dashed(val, expected):
    fig = learning_curves(_history(val=val))
    loss, acc = fig.axes
    assert (loss.get_title(), acc.get_title()) == ("loss", "accuracy")
    assert _styles(loss) == _styles(acc) == expected
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3]


def test_several_runs_keep_one_colour_each():
    fig = learning_curves({"mlp-200": _history(), "softmax": _history(5, val=False)})
    loss, acc = fig.axes
    assert [lbl for lbl, _ in _styles(loss)] == ["mlp-200 train", "mlp-200 val", "softmax train"]
    assert loss.lines[0].get_color() == loss.lines[1].get_color() == acc.lines[0].get_color()
    assert loss.lines[2].get_color() != loss.lines[0].get_color()


def test_list_of_runs_is_numbered():
    fig = learning_curves([_history(), _history()])
    assert [line.get_label() for line in fig.axes[0].lines] == ["run 1 train", "run 1 val", "run 2 train", "run 2 val"]


def test_missing_metric_says_so():
    fig = learning_curves([{"epoch": 1, "loss": 0.5}])
    acc = fig.axes[1]
    assert not acc.lines
    assert acc.texts[0].get_text() == "no accuracy recorded"


@pytest.mark.parametrize("bad", [[], {}, {"a": []}])
def test_empty_history_is_an_error(bad):
    with pytest.raises(ValueError, match="at least one epoch"):
        learning_curves(bad)


def test_legend_of_three_runs_covers_no_curve():
    fig = learning_curves({name: _history(6) for name in ("mlp-200", "softmax", "cnn-book")})
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure is built without pyplot: give it a canvas that draws
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert len(legends) == 1 and len(legends[0].get_texts()) == 6  # each run's train and val, once
    box = legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
