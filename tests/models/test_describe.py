"""fmnist models NAME: the full spec, the training recipe and the measured results (from the results files)."""

from __future__ import annotations

import json

import pytest

import fmnist.measured
from fmnist.cli.main import main
from fmnist.models import get_preset
from fmnist.models.describe import describe, recipe


def _record(folder, name, **fields):
    preset = get_preset(name)
    entry = {"val_accuracy": 0.91234, "test_accuracy": 0.90123, "train_time_s": 321.0, "epochs_run": 9,
             "date": "2026-01-02T03:04:05Z", "loadavg_before": [1.5, 1, 1], "command": f"fmnist train {name}",
             "spec": preset.spec.to_dict(), "train": dict(preset.train), "config": {"precision": "float32"}, **fields}
    (folder / "presets.json").write_text(json.dumps({"presets": {name: entry}}))


def test_cnn_book_shows_full_spec_recipe_and_its_measured_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fmnist.measured, "MEASURED_DIR", tmp_path)
    _record(tmp_path, "cnn-book")
    assert main(["models", "cnn-book"]) == 0
    out = capsys.readouterr().out
    assert "conv:32:3:same:relu,maxpool:2,conv:64:3:same:relu" in out  # in the spec line and the summary
    assert "20 epochs, batch 32, adam (lr 0.001" in out and "early stopping on val_loss (patience 2" in out
    assert "validation accuracy 0.9123, test (t10k, reported apart) 0.9012, 9 epochs, 321 s training (2026-01-02" in out
    assert "Total params: 333,526" in out


@pytest.mark.parametrize("trained_in", ["float32", "bfloat16"])
def test_a_preset_that_sets_its_precision_says_which_it_trained_in(tmp_path, monkeypatch, trained_in):
    monkeypatch.setattr(fmnist.measured, "MEASURED_DIR", tmp_path)
    _record(tmp_path, "cnn-best", config={"precision": trained_in})
    assert f"9 epochs, 321 s training in {trained_in} (" in describe(get_preset("cnn-best"))


def test_an_unmeasured_preset_says_how_to_measure_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist.measured, "MEASURED_DIR", tmp_path)
    assert "python benchmarks/accuracy.py presets cnn-best" in describe(get_preset("cnn-best"))
    # A layer spec is no preset that script measures: training it is how.
    spec = "flatten,dense:20:relu,dense:10"
    assert describe(get_preset(spec)).endswith(f"nothing recorded (a layer spec: fmnist train '{spec}' measures it)")


def test_results_of_an_older_recipe_are_flagged(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist.measured, "MEASURED_DIR", tmp_path)
    _record(tmp_path, "mlp-best", train={**get_preset("mlp-best").train, "epochs": 3})
    assert "measured with an earlier recipe" in describe(get_preset("mlp-best"))


def test_the_studys_presets_read_their_row_of_the_study(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist.measured, "MEASURED_DIR", tmp_path)
    rows = [{"model": "sgd-logreg", "metric": "5-fold CV accuracy", "ours": 0.81941, "test_accuracy": 0.80622,
             "time_s": 12.0, "history": []},
            {"model": "mlp-200", "metric": "validation accuracy", "ours": 0.87841, "test_accuracy": 0.87341,
             "time_s": 3.3, "history": [{}] * 5}]
    (tmp_path / "reproduce.json").write_text(json.dumps({
        "measured": {"date": "2026-01-02T03:04:05Z", "loadavg_before": [0.5], "command": "fmnist reproduce"},
        "result": {"rows": rows}}))
    text = describe(get_preset("sgd-logreg"))
    assert "parameters: loss=log_loss, max_iter=5, random_state=42" in text and "{" not in text
    # The study records each experiment's wall time, not its training's: said as what it is.
    assert ("5-fold CV accuracy 0.8194, test (t10k, reported apart) 0.8062, 12 s wall time of its whole experiment "
            "in the study (5-fold cross-validation, scoring and saving; 2026-01-02") in text
    assert ("validation accuracy 0.8784, test (t10k, reported apart) 0.8734, 5 epochs, 3 s wall time of its whole "
            "experiment in the study (training, scoring and saving; 2026-01-02") in describe(get_preset("mlp-200"))


@pytest.mark.parametrize("train, words", [
    ({}, "5 epochs, batch 32, rmsprop (lr 0.001 as Keras)"),
    ({"optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle", "flip": True, "erase": 0.2},
     "adamw (lr 0.003, weight decay 0.004 as Keras), one-cycle schedule (peak lr 0.003, warm-up 30% of the "
     "steps), augmentation: mirroring, random erasing p=0.2"),
    ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "shift": 2, "label_smoothing": 0.1},
     "sgd (lr 0.01 as Keras, momentum 0.9, Nesterov), augmentation: shifts up to 2 px, label smoothing 0.1"),
    ({"precision": "bfloat16"}, "rmsprop (lr 0.001 as Keras), bfloat16 mixed precision"),
    ({"precision": "auto"}, "as Keras), bfloat16 mixed precision where the hardware has it (float32 elsewhere)"),
])
def test_recipe_in_words(train, words):
    assert words in recipe(train)


def test_test_time_flip_is_described():
    from fmnist.models.registry import Preset
    from fmnist.models.spec import ModelSpec

    text = "conv:8:3,maxpool:2,flatten,dense:10"
    flip = Preset("p", "d", "torch", spec=ModelSpec.parse(text, tta="flip"))
    assert "predicting: the mean log-probability of each image and its mirror" in describe(flip)
    assert "predicting:" not in describe(Preset("p", "d", "torch", spec=ModelSpec.parse(text)))
