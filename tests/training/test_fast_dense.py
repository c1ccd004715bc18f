"""The hand-written dense step: same gradients as autograd, and the loop stays one loop."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fmnist.models import create_model
from fmnist.models.spec import ModelSpec, Network
from fmnist.training import TrainConfig, Trainer, fit
from fmnist.training._fast_dense import DenseStep
from tests.conftest import learnable_images

Y = np.arange(160) % 10
X = learnable_images(Y)


@pytest.mark.parametrize("layers", [
    "flatten,dense:10", "flatten,dense:20:relu,dense:10", "flatten,dense:16:tanh,dense:12:sigmoid,dense:10",
])
def test_gradients_match_autograd(layers):
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(layers)).double()
    step = DenseStep.build(model)
    assert step is not None
    x = torch.rand(7, 28, 28, dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 3, 1, 2, 5])
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # stale values must be overwritten, not added to
    picked, pred = torch.empty(7, 1, dtype=torch.float64), torch.empty(7, dtype=torch.long)
    step(x, y, picked, pred)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(picked.view(-1), torch.log_softmax(logits, 1).detach()[torch.arange(7), y])
    assert torch.equal(pred, logits.argmax(1))


@pytest.mark.parametrize("layers", [
    "flatten,dense:20:relu,dropout:0.2,dense:10", "flatten,dense:20:relu,batchnorm,dense:10",
    "flatten,dense:20:gelu,dense:10", "conv:4:3,maxpool:2,flatten,dense:10",
])
def test_other_models_use_autograd_and_still_train(layers):
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(layers))
    assert DenseStep.build(model) is None
    history = fit(model, X, Y, config=TrainConfig(epochs=3, seed=0))
    assert history[-1]["loss"] < history[0]["loss"]


def test_frozen_or_eval_models_are_not_taken_by_the_fast_step():
    model = create_model("mlp-100")
    model.layers[1].weight.requires_grad_(False)
    assert DenseStep.build(model) is None
    assert DenseStep.build(create_model("mlp-100").eval()) is None


def test_fast_step_trains_like_autograd():
    """One epoch on the fast step vs the same epoch through autograd: the same numbers."""
    results = []
    for fast in (True, False):
        torch.manual_seed(0)
        trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=2, seed=0))
        if not fast:
            trainer._batch_step = lambda: trainer._autograd_step
        history = trainer.fit(X, Y)
        results.append((history, torch.cat([p.detach().view(-1) for p in trainer.model.parameters()])))
    (h_fast, w_fast), (h_slow, w_slow) = results
    torch.testing.assert_close(w_fast, w_slow, rtol=1e-4, atol=1e-5)
    assert h_fast[-1]["loss"] == pytest.approx(h_slow[-1]["loss"], rel=1e-4)
    assert h_fast[-1]["accuracy"] == h_slow[-1]["accuracy"]


@pytest.mark.parametrize("name", ["softmax", "mlp-200-100"])
def test_fast_step_same_seed_same_weights_and_loss_falls(name):
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = create_model(name)
        history = fit(model, X, Y, config=TrainConfig(epochs=3, seed=5))
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    (h1, w1), (h2, w2) = runs
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert h1[-1]["loss"] < h1[0]["loss"]


def test_learning_rate_set_between_epochs_is_used():
    class ZeroLrAfterFirstEpoch:
        def on_train_begin(self, trainer): ...
        def on_epoch_begin(self, trainer, epoch):
            for group in trainer.optimizer.param_groups:
                group["lr"] = 0.0 if epoch > 1 else group["lr"]
        def on_batch_end(self, trainer, batch, num_batches): ...
        def on_epoch_end(self, trainer, epoch, logs):
            self.weights = [p.detach().clone() for p in trainer.model.parameters()]
            if epoch == 1:
                self.after_first = self.weights
        def on_train_end(self, trainer): ...

    cb = ZeroLrAfterFirstEpoch()
    torch.manual_seed(0)
    Trainer(create_model("mlp-100"), TrainConfig(epochs=2, optimizer="sgd"), [cb]).fit(X, Y)
    # lr 0 from epoch 2 on (plain SGD): the weights stop moving.
    assert all(torch.equal(a, b) for a, b in zip(cb.after_first, cb.weights))
