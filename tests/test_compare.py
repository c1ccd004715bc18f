"""fmnist compare: several models, one split and seed, one leaderboard ranked by validation accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fmnist
from fmnist.cli.main import main
from fmnist.compare import compare
from fmnist.errors import ModelError, UsageError
from fmnist.evaluation import evaluate
from fmnist.runs import load_run

SPEC = "flatten,dense:16:relu,dense:10"


def test_compare_cli_end_to_end(tmp_path, tiny_dir, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "softmax", SPEC, "sgd-logreg", "--epochs", "2", "--seed", "3", "--out", str(out),
            "--data-dir", str(tiny_dir), "--dataset", "custom"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy (reported apart)" in printed and "Epoch 2/2" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    rows = board["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["name"] for r in rows} == {"softmax", "flatten-dense-16-relu-dense-10", "sgd-logreg"}
    accs = [r["val_accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    md = (out / "leaderboard.md").read_text()
    assert "| rank | run | model | optimizer | lr |" in md and "reported apart" in md
    assert "| rmsprop | 0.001 |" in md  # the resolved Keras default, not "None"
    data = fmnist.load_dataset(tiny_dir, dataset="custom")
    for row in rows:
        run = load_run(row["run_dir"])
        # each row is its run folder's numbers, and the folder reloads to the same test score
        assert evaluate(run.model, data.x_test, data.y_test)["accuracy"] == pytest.approx(row["test_accuracy"])
        assert row["name"] in md
        if row["family"] == "torch":
            assert row["epochs"] == 2 and row["config"]["seed"] == 3 and len(run.history) == 2
    by_name = {r["name"]: r for r in rows}
    assert by_name["softmax"]["parameters"] == 7850 and by_name["sgd-logreg"]["parameters"] == 7850
    assert by_name["flatten-dense-16-relu-dense-10"]["parameters"] == 784 * 16 + 16 + 16 * 10 + 10


def test_compare_json_output_is_only_json(tmp_path, tiny_dir, capsys):
    assert main(["compare", SPEC, SPEC, "--epochs", "1", "--out", str(tmp_path / "c"), "--json",
                 "--data-dir", str(tiny_dir), "--dataset", "custom"]) == 0
    captured = capsys.readouterr()
    board = json.loads(captured.out)
    assert [r["name"] for r in sorted(board["rows"], key=lambda r: r["name"])] == [
        "flatten-dense-16-relu-dense-10", "flatten-dense-16-relu-dense-10-2"]
    # same model, same seed, same split: the same numbers (CPU)
    assert board["rows"][0]["val_accuracy"] == board["rows"][1]["val_accuracy"]
    assert "Epoch 1/1" in captured.err


def test_same_seed_gives_same_leaderboard(tiny_data):
    first = compare([SPEC], tiny_data, epochs=1, seed=5)["rows"][0]
    again = compare([SPEC], tiny_data, epochs=1, seed=5)["rows"][0]
    assert (first["val_accuracy"], first["val_loss"]) == (again["val_accuracy"], again["val_loss"])
    assert first["run_dir"] is None


def test_unknown_model_fails_before_training(tiny_data, tmp_path):
    with pytest.raises(ModelError, match="unknown model 'mlp-9000'"):
        compare([SPEC, "mlp-9000"], tiny_data, out_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(UsageError, match="epochs must be at least 1") as exc:
        compare([SPEC], tiny_data, epochs=0)
    assert exc.value.cli_message.startswith("--epochs must be at least 1")


def test_cli_errors_are_one_line(tmp_path, tiny_dir, capsys):
    assert main(["compare", "nope", "--out", str(tmp_path / "c"), "--data-dir", str(tiny_dir),
                 "--dataset", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist compare: error: MODEL: unknown model 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_seed_reseeds_scikit_learn_models(tiny_data, tmp_path):
    """--seed is every model's seed: sgd-logreg's random_state too (it shuffles each SGD pass)."""
    def fitted(seed, where):
        row = compare(["sgd-logreg"], tiny_data, seed=seed, out_dir=tmp_path / where)["rows"][0]
        run = load_run(row["run_dir"])
        assert run.info["preset"]["params"]["random_state"] == run.model.random_state  # run.json says what ran
        return run.model

    one, again, other, default = fitted(1, "a"), fitted(1, "b"), fitted(2, "c"), fitted(None, "d")
    assert one.random_state == again.random_state == 1 and other.random_state == 2
    assert default.random_state == 42  # no --seed: the preset's own
    np.testing.assert_array_equal(one.coef_, again.coef_)
    assert not np.array_equal(one.coef_, other.coef_)
