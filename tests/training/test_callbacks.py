"""Early stopping, the NaN guard, best-only checkpoints and the progress lines."""

import io
import re

import numpy as np
import pytest
import torch

from fmnist.errors import TrainingError, UsageError
from fmnist.models import create_model
from fmnist.training import Callback, ProgressLogger, TrainConfig, Trainer
from fmnist.training.callbacks import EarlyStopping, ModelCheckpoint, Monitor
from fmnist.training.checkpoint import load_checkpoint
from tests.conftest import learnable_images

Y = np.arange(60) % 10
X = learnable_images(Y)


class ScriptedValLoss(Callback):
    """Replaces ``monitor`` by a scripted sequence and snapshots the weights of every epoch."""

    def __init__(self, losses, monitor="val_loss"):
        self.losses, self.monitor, self.weights = losses, monitor, {}

    def on_epoch_end(self, trainer, epoch, logs):
        logs[self.monitor] = self.losses[epoch - 1]
        self.weights[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    script = ScriptedValLoss([1.0, 0.5, 0.7, 0.8, 0.4, 0.3])
    stopper = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=6, batch_size=16), [script, stopper])
    history = trainer.fit(X, Y, validation_data=(X, Y))
    assert len(history) == 4  # epoch 3 and 4 did not improve on epoch 2
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], script.weights[2][k]) for k in final)
    assert not torch.equal(final["layers.1.weight"], script.weights[4]["layers.1.weight"])
    assert "epoch 4" in trainer.stop_reason and "epoch 2" in trainer.stop_reason
    assert trainer.weights_epoch == 2


def test_early_stopping_without_a_stop_still_ends_on_the_best_epoch():
    script = ScriptedValLoss([1.0, 0.5, 0.6])
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=3, batch_size=16),
                      [script, EarlyStopping(patience=5)])
    trainer.fit(X, Y, validation_data=(X, Y))
    assert all(torch.equal(v, script.weights[2][k]) for k, v in trainer.model.state_dict().items())
    assert "restored the weights of epoch 2" in trainer.stop_reason
    assert trainer.weights_epoch == 2


def test_stop_reasons_count_in_english():
    """"1 epoch", never "1 epochs": the reason is printed to the user as it stands."""
    script = ScriptedValLoss([0.5, 0.6])
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=2, batch_size=16),
                      [script, EarlyStopping(patience=1)])
    trainer.fit(X, Y, validation_data=(X, Y))
    assert "has not improved for 1 epoch (best 0.5000 at epoch 1)" in trainer.stop_reason
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=3, batch_size=16),
                      [ScriptedValLoss([0.6, 0.5, 0.7]), EarlyStopping(patience=3)])
    trainer.fit(X, Y, validation_data=(X, Y))
    assert trainer.stop_reason == "trained 3 epochs; restored the weights of epoch 2"


def test_early_stopping_without_validation_data_is_refused_before_training():
    trainer = Trainer(create_model("softmax"), TrainConfig(patience=2, epochs=3, batch_size=16))
    with pytest.raises(UsageError, match="no validation data was given") as exc:
        trainer.fit(X, Y)
    assert trainer.history == [] and "--patience 0" in exc.value.cli_message


def test_patience_in_the_config_adds_early_stopping():
    trainer = Trainer(create_model("softmax"), TrainConfig(patience=3, schedule="cosine"))
    kinds = [type(cb).__name__ for cb in trainer.callbacks]
    assert kinds == ["LearningRateScheduler", "EarlyStopping", "TerminateOnNaN"]


def test_nan_guard_stops_a_diverging_run_with_one_line():
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=10, optimizer="sgd", lr=1e6, batch_size=16))
    with pytest.raises(TrainingError, match=r"training diverged: loss is (nan|inf) at epoch \d+ .*smaller lr") as err:
        trainer.fit(X, Y)
    assert "\n" not in str(err.value) and err.value.cli_message.endswith("smaller --lr")
    assert len(trainer.history) < 10


def test_a_run_diverging_by_its_weight_decay_is_told_so():
    """SGD at 0.01 with weight decay 1e6: each step multiplies the weights by 1 - 10,000."""
    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=10, optimizer="sgd", lr=0.01, weight_decay=1e6))
    with pytest.raises(TrainingError, match=r"times weight decay 1e\+06 is 10000") as err:
        trainer.fit(X, Y)
    assert err.value.cli_message.endswith("train again with --weight-decay below 100")


def test_best_only_checkpoint_keeps_the_best_epoch(tmp_path):
    script = ScriptedValLoss([1.0, 0.5, 0.7])
    ckpt = ModelCheckpoint(tmp_path, save_best_only=True)
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=3, batch_size=16, optimizer="adam"), [script, ckpt])
    trainer.fit(X, Y, validation_data=(X, Y))
    state = load_checkpoint(tmp_path / "best.safetensors")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert all(torch.equal(state["model"][k], v) for k, v in script.weights[2].items())
    assert state["optimizer"]["state"][0]["exp_avg"].shape == (100, 784)  # optimizer state travels too
    assert not (tmp_path / "checkpoint.safetensors").exists()


NAN = float("nan")


@pytest.mark.parametrize(("monitor", "values", "best"), [
    ("val_loss", [0.9, 0.5, 0.8, 0.3, 0.6], 4),
    ("val_accuracy", [NAN, 0.5, 0.8, 0.3, 0.6], 3),  # accuracies grow; a NaN is never the best
    ("val_error", [NAN, 0.5, 0.8, 0.3, 0.6], 4),  # any other metric shrinks, as a loss does
])
def test_early_stopping_and_best_checkpoint_agree_on_the_best_epoch(tmp_path, monitor, values, best):
    script = ScriptedValLoss(values, monitor)
    stopper = EarlyStopping(monitor, patience=10)
    ckpt = ModelCheckpoint(tmp_path, save_best_only=True, monitor=monitor)
    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=5, batch_size=16), [script, stopper, ckpt])
    trainer.fit(X, Y, validation_data=(X, Y))
    saved = load_checkpoint(tmp_path / "best.safetensors")
    assert stopper.best_epoch == saved["epoch"] == trainer.weights_epoch == best
    assert all(torch.equal(v, script.weights[best][k]) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(saved["model"][k], v) for k, v in script.weights[best].items())


def test_improvement_rule():
    loss, accuracy = Monitor("val_loss", min_delta=0.1), Monitor("val_accuracy")
    assert loss.improved(0.5, None) and not loss.improved(NAN, None) and not loss.improved(float("-inf"), 0.5)
    assert loss.improved(0.39, 0.5) and not loss.improved(0.41, 0.5)  # by more than min_delta
    assert accuracy.improved(0.81, 0.8) and not accuracy.improved(0.8, 0.8) and not accuracy.improved(0.7, 0.8)


def test_progress_lines_are_keras_lines_of_the_history():
    stream = io.StringIO()
    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=2, batch_size=16), [ProgressLogger(stream, bar=False)])
    history = trainer.fit(X, Y, validation_data=(X, Y))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line, logs in zip(lines, history):
        assert re.fullmatch(r"Epoch \d/2 - \d+\.\ds - loss: \d\.\d{4} - accuracy: \d\.\d{4} - "
                            r"val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}", line), line
        assert line.startswith(f"Epoch {logs['epoch']}/2 - ")
        assert line.endswith(" - ".join(f"{k}: {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")))


def test_a_diverged_epoch_never_replaces_the_last_good_checkpoint(tmp_path):
    class DivergeAtTwo(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                logs["loss"] = float("nan")

    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=3, batch_size=16), [DivergeAtTwo(), ModelCheckpoint(tmp_path)])
    with pytest.raises(TrainingError, match="diverged"):
        trainer.fit(X, Y)
    state = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert state["epoch"] == 1 and len(state["history"]) == 1
