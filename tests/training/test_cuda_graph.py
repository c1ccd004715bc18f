"""The CUDA graph step (training/_cuda_graph.py): the same training as eager steps, on a GPU only."""

import numpy as np
import pytest
import torch

from fmnist.models import create_model
from fmnist.training import TrainConfig, Trainer
from tests.conftest import learnable_images

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# 330 images: at batch 32 ten full batches and a short one (10 images, an eager step); at batch 8,
# 41 full and a short one of 2.
Y = np.arange(330) % 10
X = learnable_images(Y)


def train(spec, graphs, epochs=2, trainer_class=Trainer, **config):
    torch.manual_seed(0)
    trainer_class.cuda_graphs = graphs
    try:
        trainer = trainer_class(create_model(spec), TrainConfig(epochs=epochs, device="cuda", seed=0, **config))
        trainer.fit(X, Y, validation_data=(X[:64], Y[:64]))
    finally:
        trainer_class.cuda_graphs = True
    return trainer


def test_graph_steps_train_as_eager_steps_do(monkeypatch):
    """Batch norm, a schedule and a last short batch: weights, batch norm's statistics and the
    metrics equal eager training's."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    spec = "conv:8:3:same:relu,maxpool:2,batchnorm,flatten,dense:32:relu,dense:10"
    kw = dict(optimizer="adamw", lr=3e-3, schedule="onecycle", batch_size=8, epochs=3)
    graphed, eager = train(spec, True, **kw), train(spec, False, **kw)
    assert graphed._graphed.failed is None
    # Batch norm's averaging rate reaches its floor after 99 steps (42 an epoch, the short ones
    # too): the graph is captured at the 16th batch of epoch 3 and replays the 26 full batches left.
    assert graphed._graphed.replays == 26
    assert eager._graphed is None
    for (name, a), b in zip(graphed.model.state_dict().items(), eager.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    for h, e in zip(graphed.history, eager.history):
        assert h["loss"] == pytest.approx(e["loss"], rel=1e-5)
        assert h["accuracy"] == e["accuracy"]


def test_dropout_and_bfloat16_replay_and_learn():
    trainer = train("conv:8:3:same:relu,maxpool:2,flatten,dropout:0.3,dense:10", True, epochs=4,
                    optimizer="adam", precision="bfloat16")
    assert trainer._graphed.failed is None and trainer._graphed.replays > 0
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]
    assert trainer.history[-1]["val_accuracy"] > 0.8


class HostSync(torch.nn.Module):
    """Reads a value back to the host in its forward pass: such a step cannot be captured."""

    def forward(self, x):
        if float(x.detach().abs().sum()) < 0:
            return -x
        return x


def test_a_step_that_cannot_be_captured_trains_eagerly_with_a_warning():
    """Dropout after the failed capture too: the CUDA generator is left usable."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(HostSync(), torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(32, 10))
    trainer = Trainer(model, TrainConfig(epochs=2, device="cuda", seed=0, optimizer="adam"))
    with pytest.warns(RuntimeWarning, match="cannot run as a CUDA graph"):
        trainer.fit(X, Y)
    assert trainer._graphed.failed and trainer._graphed.replays == 0
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_a_train_step_of_the_users_own_is_never_graphed():
    calls = []

    class Own(Trainer):
        def train_step(self, xb, yb):
            calls.append(len(xb))
            return super().train_step(xb, yb)

    trainer = train("flatten,dense:10", True, epochs=1, trainer_class=Own)
    assert trainer._graphed is None and calls == [32] * 10 + [10]
