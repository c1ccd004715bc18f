"""The hand-written dense step: same gradients as autograd, and the loop stays one loop."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fmnist._numba import AVAILABLE
from fmnist.errors import DataError
from fmnist.models import _fused, _winograd, create_model
from fmnist.models.network import Network
from fmnist.models.spec import ModelSpec
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
    out = step(x, y)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, logits.detach(), rtol=1e-12, atol=1e-12)
    assert not out.requires_grad


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


needs_kernels = pytest.mark.skipif(not (AVAILABLE and _winograd.usable()),
                                   reason="the conv front runs the compiled kernels: numba and MKL's sgemm")

# A stem ('same'), a Winograd convolution ('valid') and ReLU + pool, dropout in the dense stack;
# two Winograd convolutions, the first with a plain ReLU, the second read by the flatten; a stem
# alone, then the compiled dense layers' tanh, dropout and sigmoid; dropout after tanh, whose
# backward reads the activation before the mask.
PER_BATCH = [
    "conv:32:3:same:relu,maxpool:2,conv:32:3:valid:relu,maxpool:2,flatten,dense:20:relu,dropout:0.3,dense:10",
    "conv:32:3:same:relu,maxpool:2,conv:32:3:same:relu,conv:32:3:valid:linear,flatten,dense:10",
    "conv:32:3:valid:relu,maxpool:2,flatten,dense:16:tanh,dropout:0.5,dense:12:sigmoid,dense:10",
    "flatten,dense:20:tanh,dropout:0.5,dense:16:relu,dropout:0.2,dense:10",
]


@needs_kernels
@pytest.mark.parametrize("layers", PER_BATCH)
def test_per_batch_step_gradients_match_autograd(layers, slices):
    """Conv fronts and dropout: the same logits and gradients as autograd through the same
    kernels, with the same dropout masks from the same seed; on one slice of the batch, and on
    slices whose threads take their images through the front's steps in a row."""
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(layers))
    assert DenseStep.build(model) is None  # the compiled epoch's step takes neither
    step = DenseStep.build(model, per_batch=True)
    assert step is not None and (step.front or any(step.drops))
    x = torch.rand(7, 28, 28)
    y = torch.tensor([0, 3, 9, 3, 1, 2, 5])
    torch.manual_seed(1)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # stale values must be overwritten, not added to
    torch.manual_seed(1)
    out = step(x, y)
    torch.testing.assert_close(out, logits.detach(), rtol=1e-6, atol=1e-6)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))


@needs_kernels
def test_a_planned_conv_step_reads_each_batch_and_the_parameters_as_they_are_then(slices):
    """The conv step plans its chain once per batch shape and runs it again: each call's images,
    labels and dropout masks, and the parameters as the optimizer left them, as autograd sees them."""
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(PER_BATCH[0]))
    step = DenseStep.build(model, per_batch=True)
    for call, n in enumerate((7, 7, 5, 7)):  # a short last batch gets a chain of its own
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.9).add_(0.01 * call)  # an optimizer's update: in place
        x, y = torch.rand(n, 28, 28), torch.randint(0, 10, (n,))
        for p in model.parameters():
            p.grad = None
        torch.manual_seed(call)
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        expected = [p.grad.clone() for p in model.parameters()]
        torch.manual_seed(call)
        out = step(x, y)
        torch.testing.assert_close(out, logits.detach(), rtol=1e-4, atol=1e-5 * float(logits.detach().abs().max()))
        for p, g in zip(model.parameters(), expected):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))
        picked, pred = step.metrics  # this call's, for the loop's loss and accuracy
        torch.testing.assert_close(torch.from_numpy(picked), torch.log_softmax(out, 1)[torch.arange(n), y])
        assert np.array_equal(pred, out.argmax(1).numpy())


def test_per_batch_step_takes_every_plain_dense_stack():
    """What the compiled epoch's step takes, the per-batch one takes too, with or without a Flatten first."""
    for layers in ("flatten,dense:10", "flatten,dense:16:tanh,dense:12:sigmoid,dense:10"):
        model = Network(ModelSpec.parse(layers))
        assert DenseStep.build(model, per_batch=True).layers == DenseStep.build(model).layers
        del model.layers[0]  # the Flatten: the first Linear then ends the (empty) front
        model._plan = _fused.Plan(list(model.layers))
        assert DenseStep.build(model, per_batch=True).layers == DenseStep.build(model).layers


@pytest.mark.parametrize("layers", [
    "conv:32:3:same:relu,maxpool:2,batchnorm,flatten,dense:10",  # batch norm in the front
    "conv:16:3:same:relu,maxpool:2,conv:16:3:same:relu,maxpool:2,flatten,dense:10",  # oneDNN's conv
    "conv:32:3:same:relu,avgpool:2,flatten,dense:10",
    "conv:32:3:same:relu,maxpool:2,flatten,dropout:0.2,dense:10",  # dropout before the first dense layer
])
def test_per_batch_step_leaves_other_models_to_autograd(layers):
    assert DenseStep.build(Network(ModelSpec.parse(layers)), per_batch=True) is None


@needs_kernels
def test_per_batch_conv_step_trains_like_plain_autograd(slices):
    """Two epochs of a conv net with dropout on the hand-written step and on plain autograd:
    the same weights, losses and accuracies."""
    layers = PER_BATCH[0]
    results = []
    for cls in (Trainer, PlainAutogradTrainer):
        torch.manual_seed(0)
        trainer = cls(Network(ModelSpec.parse(layers)), TrainConfig(epochs=2, seed=0, optimizer="adam"))
        history = trainer.fit(X, Y)
        if cls is Trainer:
            assert trainer._dense_step is not None and trainer._dense_step.front
        results.append((history, torch.cat([p.detach().view(-1) for p in trainer.model.parameters()])))
    (h_fast, w_fast), (h_ref, w_ref) = results
    assert h_ref[-1]["loss"] < h_ref[0]["loss"]
    torch.testing.assert_close(w_fast, w_ref, rtol=1e-4, atol=1e-5)
    for fast, ref in zip(h_fast, h_ref):
        assert fast["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert fast["accuracy"] == ref["accuracy"]


@needs_kernels
def test_a_train_step_of_ones_own_gives_the_epochs_metrics_from_its_logits():
    """The conv step's chain computes the loss and predictions the loop records; a subclass's
    train_step returns logits of its own, and those are what the epoch's metrics describe."""

    class Uniform(Trainer):
        def train_step(self, xb, yb):
            return torch.zeros_like(super().train_step(xb, yb))  # every class equally likely

    trainer = Uniform(Network(ModelSpec.parse(PER_BATCH[0])), TrainConfig(epochs=1, seed=0, optimizer="adam"))
    (logs,) = trainer.fit(X, Y)
    assert trainer._dense_step is not None and trainer._dense_step.metrics is not None  # the chain ran
    assert logs["loss"] == pytest.approx(np.log(10), rel=1e-6)
    assert logs["accuracy"] == np.mean(Y == 0)  # argmax of equal logits: class 0


class PlainAutogradTrainer(Trainer):
    """The reference: torch's forward, ``F.cross_entropy`` and ``backward``, nothing of ours but the optimizer."""

    def train_step(self, xb, yb):
        self.steps = getattr(self, "steps", 0) + 1
        logits = self.model(xb)
        self.optimizer.zero_grad()
        F.cross_entropy(logits, yb).backward()
        self.optimizer.step()
        return logits.detach()


class PerStepDenseTrainer(Trainer):
    """The Trainer's own step, one batch per call: an overridden ``train_step`` keeps the compiled engine out."""

    def train_step(self, xb, yb):
        self.steps = getattr(self, "steps", 0) + 1
        return super().train_step(xb, yb)


@pytest.mark.parametrize("engine", [Trainer, PerStepDenseTrainer])
@pytest.mark.parametrize(("layers", "optimizer"), [
    ("flatten,dense:20:relu,dense:10", "rmsprop"), ("flatten,dense:16:tanh,dense:12:sigmoid,dense:10", "adam"),
])
def test_fast_steps_train_like_plain_autograd(engine, layers, optimizer):
    """Two epochs on the fast steps (compiled chunks, or the hand-written step per batch) and
    through plain torch autograd: the same weights, losses and accuracies."""
    results = []
    for cls in (engine, PlainAutogradTrainer):
        torch.manual_seed(0)
        trainer = cls(Network(ModelSpec.parse(layers)), TrainConfig(epochs=2, seed=0, optimizer=optimizer))
        history = trainer.fit(X, Y)
        results.append((history, torch.cat([p.detach().view(-1) for p in trainer.model.parameters()])))
        if cls is not Trainer:
            assert trainer.steps == 2 * 5  # 160 images, batches of 32: every batch went through train_step
    (h_fast, w_fast), (h_ref, w_ref) = results
    assert h_ref[-1]["loss"] < h_ref[0]["loss"]  # it trained: equal weights are not two idle runs
    torch.testing.assert_close(w_fast, w_ref, rtol=1e-4, atol=1e-5)
    for fast, ref in zip(h_fast, h_ref):
        assert fast["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert fast["accuracy"] == ref["accuracy"]


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


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_outside_the_classes_are_refused_before_training(bad):
    """The compiled loss reads the logit a label names: a label past the classes is a clear error, not a crash."""
    y = Y.copy()
    y[3] = bad
    model = Network(ModelSpec.parse(PER_BATCH[0]))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DataError, match=f"labels from {min(bad, 0)} to {max(bad, 9)}; they must be class indices"):
        fit(model, X, y, config=TrainConfig(epochs=1, seed=0))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(DataError, match="the validation labels"):
        fit(model, X, Y, validation_data=(X, y), config=TrainConfig(epochs=1, seed=0))
