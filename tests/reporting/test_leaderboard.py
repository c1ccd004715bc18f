"""The one table renderer and leaderboard that the study, compare and report all draw with."""

from __future__ import annotations

import pytest

from fmnist.reporting.leaderboard import LEADERBOARD_COLUMNS, leaderboard, optimizer_and_lr, rank, render_table


def _run(name, lr, val, loss=0.5, **extra):
    return {"name": name, "model": "mlp-200", "optimizer": "adam", "lr": lr, "parameters": 159010, "epochs": 5,
            "train_time_s": 3.25, "val_accuracy": val, "val_loss": loss, "test_accuracy": val and val - 0.01, **extra}


def test_two_runs_of_one_preset_are_told_apart_in_every_format():
    rows = [_run("runs/mlp-200", 0.001, 0.87), _run("runs/mlp-200-2", 0.01, 0.87)]  # equal but for name and lr
    for fmt in ("text", "markdown", "html"):
        table = leaderboard(rows, fmt)
        for header in ("run", "optimizer", "lr"):
            assert header in table, (fmt, header)
        lines = [line for line in table.replace("</tr>", "\n").splitlines() if "mlp-200" in line]
        assert len(lines) == 2
        same_name = [line.replace("runs/mlp-200-2", "runs/mlp-200") for line in lines]
        assert same_name[0] != same_name[1], fmt  # the learning rate alone tells them apart
        assert "adam" in lines[0] and "0.01" in table and "0.001" in table


def test_ranked_by_validation_accuracy_then_loss_and_unscored_runs_last():
    rows = [_run("a", 0.1, 0.80), _run("b", 0.1, None), _run("c", 0.1, 0.90, loss=0.4), _run("d", 0.1, 0.90, loss=0.3)]
    assert [r["name"] for r in rank(rows)] == ["d", "c", "a", "b"]
    text = leaderboard(rows).splitlines()
    assert [line.split()[:2] for line in text[2:]] == [["1", "d"], ["2", "c"], ["3", "a"], ["4", "b"]]
    assert text[0].split()[:4] == ["rank", "run", "model", "optimizer"]


def test_text_aligns_words_left_and_numbers_right():
    table = render_table(["run", "val accuracy"], [["a", "0.5"], ["longer-name", "0.75"]]).splitlines()
    assert table[2] == "a" + " " * 21 + "0.5" and table[3] == "longer-name" + " " * 10 + "0.75"
    assert len({len(line) for line in table}) == 1


def test_markdown_and_html_are_escaped():
    md = render_table(["run", "lr"], [["a|b", "1"]], "markdown")
    assert md.splitlines()[2] == "| a\\|b | 1 |"
    html = render_table(["run", "test accuracy (reported apart)"], [["<b>x&", "0.5"]], "html")
    assert "<b>x&" not in html and "&lt;b&gt;x&amp;" in html
    assert '<td class="num test">0.5</td>' in html
    with pytest.raises(ValueError, match="unknown table format"):
        render_table(["a"], [], "latex")


def test_missing_values_show_a_dash_and_the_default_learning_rate_is_resolved():
    row = leaderboard([{"name": "sgd", "model": "sgd-logreg", "val_accuracy": 0.8}], "markdown").splitlines()[2]
    assert row.count("–") == len(LEADERBOARD_COLUMNS) - 4  # all but rank, run, model, val accuracy
    assert optimizer_and_lr({"optimizer": "adam", "lr": None}) == ("adam", 1e-3)
    assert optimizer_and_lr({"optimizer": "sgd", "lr": 0.05}) == ("sgd", 0.05)
    assert optimizer_and_lr(None) == (None, None)
