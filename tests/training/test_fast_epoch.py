"""The compiled dense epoch (``_fast_epoch``): same training as the per-step path, reproducible."""

import numpy as np
import pytest
import torch

from fmnist.models.network import Network
from fmnist.models.spec import ModelSpec
from fmnist.training import TrainConfig, Trainer, _fast_epoch
from fmnist.training.callbacks import Callback
from tests.conftest import learnable_images

pytestmark = pytest.mark.skipif(not _fast_epoch.AVAILABLE, reason="no numba or no sgemm_ in libtorch_cpu")

Y = np.arange(200) % 10
X = learnable_images(Y)

CASES = [
    ("flatten,dense:10", "rmsprop", {}),
    ("flatten,dense:20:relu,dense:10", "rmsprop", {"momentum": 0.9}),
    ("flatten,dense:20:relu,dense:10", "sgd", {"momentum": 0.9, "nesterov": True}),
    ("flatten,dense:20:relu,dense:10", "sgd", {}),
    ("flatten,dense:16:tanh,dense:12:sigmoid,dense:10", "adagrad", {}),
    ("flatten,dense:20:relu,dense:10", "adam", {}),
    ("flatten,dense:20:relu,dense:10", "adamw", {"schedule": "cosine"}),
    ("flatten,dense:20:relu,dense:10", "rmsprop", {"schedule": "onecycle"}),
]


def train(layers, fast, callbacks=(), epochs=2, **config):
    torch.manual_seed(0)
    model = Network(ModelSpec.parse(layers))
    trainer = Trainer(model, TrainConfig(epochs=epochs, seed=0, device="cpu", **config), callbacks)
    if not fast:
        trainer._step_engine = _per_step(trainer)
    history = trainer.fit(X, Y)
    return trainer, history


def _per_step(trainer):
    """The Trainer's engine choice with the compiled engine switched off (today's per-step path)."""
    original = trainer._step_engine

    def choose(*args):
        build = _fast_epoch.FastEpoch.build
        _fast_epoch.FastEpoch.build = classmethod(lambda cls, *a: None)
        try:
            return original(*args)
        finally:
            _fast_epoch.FastEpoch.build = build

    return choose


def test_dense_models_take_the_compiled_engine():
    trainer, _ = train("flatten,dense:20:relu,dense:10", True, epochs=1)
    xs = torch.zeros(40, 28, 28)
    ys = torch.zeros(40, dtype=torch.long)
    run, chunk, _ = trainer._step_engine(xs, ys, torch.arange(40), torch.empty(40, 1), torch.empty(40, dtype=torch.long))
    assert getattr(run, "__self__", None).__class__ is _fast_epoch.FastEpoch and chunk == trainer.fast_chunk
    dropout, _ = train("flatten,dense:20:relu,dropout:0.2,dense:10", True, epochs=1)
    run, chunk, _ = dropout._step_engine(xs, ys, torch.arange(40), torch.empty(40, 1), torch.empty(40, dtype=torch.long))
    assert chunk == 1 and getattr(run, "__self__", None) is None
    augmented, _ = train("flatten,dense:10", True, epochs=1, flip=True)
    run, chunk, _ = augmented._step_engine(xs, ys, torch.arange(40), torch.empty(40, 1), torch.empty(40, dtype=torch.long))
    assert getattr(run, "__self__", None) is None


@pytest.mark.parametrize(("layers", "optimizer", "options"), CASES)
def test_compiled_epochs_match_the_per_step_path(layers, optimizer, options):
    fast, fast_history = train(layers, True, optimizer=optimizer, **options)
    slow, slow_history = train(layers, False, optimizer=optimizer, **options)
    assert fast_history[-1]["loss"] < fast_history[0]["loss"] or optimizer == "adagrad"
    for a, b in zip(fast.model.parameters(), slow.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for f, s in zip(fast_history, slow_history):
        assert f["loss"] == pytest.approx(s["loss"], rel=1e-5)
        assert f["accuracy"] == s["accuracy"]
    fast_state, slow_state = fast.optimizer.state_dict(), slow.optimizer.state_dict()
    for key, state in fast_state["state"].items():
        for name, value in state.items():
            expected = slow_state["state"][key][name]
            if torch.is_tensor(value):
                torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-8)
            else:
                assert value == expected  # the step count


@pytest.mark.parametrize(("layers", "optimizer", "options"), CASES[:3])
def test_compiled_epochs_are_bit_identical_run_after_run(layers, optimizer, options):
    a, ha = train(layers, True, optimizer=optimizer, **options)
    b, hb = train(layers, True, optimizer=optimizer, **options)
    assert ha[-1]["loss"] == hb[-1]["loss"]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_resume_from_state_dict_continues_identically():
    full, _ = train("flatten,dense:20:relu,dense:10", True, epochs=2, optimizer="adam")
    half, _ = train("flatten,dense:20:relu,dense:10", True, epochs=1, optimizer="adam")
    state = half.state_dict()
    torch.manual_seed(0)
    resumed = Trainer(Network(ModelSpec.parse("flatten,dense:20:relu,dense:10")),
                      TrainConfig(epochs=2, seed=0, device="cpu", optimizer="adam"))
    resumed.load_state_dict(state)
    resumed.fit(X, Y)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


class LrChanger(Callback):
    """A callback the engine cannot plan for: it changes lr after every step."""

    def __init__(self):
        self.batches = []

    def on_batch_end(self, trainer, batch, num_batches):
        self.batches.append(batch)
        trainer.optimizer.param_groups[0]["lr"] = 1e-3 * (1 + batch % 3)


def test_unknown_batch_callbacks_get_one_step_per_call_and_see_every_batch():
    fast_cb, slow_cb = LrChanger(), LrChanger()
    fast, _ = train("flatten,dense:20:relu,dense:10", True, callbacks=[fast_cb], batch_size=16)
    slow, _ = train("flatten,dense:20:relu,dense:10", False, callbacks=[slow_cb], batch_size=16)
    assert fast_cb.batches == slow_cb.batches == [*range(1, 14)] * 2  # 200 images: 12 of 16 and one of 8
    for a, b in zip(fast.model.parameters(), slow.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
