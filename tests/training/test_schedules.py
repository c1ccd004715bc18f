"""Learning-rate schedules: the rates the optimizer really used, step by step, against closed forms
and against PyTorch's own schedulers."""

import itertools
import math

import numpy as np
import pytest
import torch

from fmnist.errors import UsageError
from fmnist.models import create_model
from fmnist.training import Callback, TrainConfig, Trainer
from fmnist.training.callbacks import cosine_lr, onecycle_lr, step_lr
from tests.conftest import learnable_images

Y = np.arange(70) % 10
X = learnable_images(Y)  # 70 images, batch 16: 5 steps per epoch, the last one short


class UsedRates(Callback):
    """The rate each optimizer step used: set before the epoch's first step and after every step."""

    def __init__(self):
        self.rates = []

    def on_epoch_begin(self, trainer, epoch):
        self.rates.append(trainer.optimizer.param_groups[0]["lr"])

    def on_batch_end(self, trainer, batch, num_batches):
        if batch < num_batches:
            self.rates.append(trainer.optimizer.param_groups[0]["lr"])


def used_rates(epochs=4, **config):
    rec = UsedRates()
    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=epochs, batch_size=16, **config), [rec])
    trainer.fit(X, Y)
    assert len(rec.rates) == epochs * 5
    return rec.rates, trainer


def torch_rates(make_scheduler, lr, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_schedule_is_per_epoch_closed_form_and_torch_steplr():
    rates, trainer = used_rates(epochs=5, optimizer="sgd", lr=0.1, schedule="step", lr_step_epochs=2, lr_gamma=0.5)
    per_epoch = rates[::5]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-12)
    assert all(len(set(rates[i:i + 5])) == 1 for i in range(0, 25, 5))  # constant within an epoch
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 0.1, 5)
    assert per_epoch == pytest.approx(ref, rel=1e-12)
    assert [h["lr"] for h in trainer.history] == pytest.approx(per_epoch)


def test_cosine_schedule_is_per_step_from_lr_to_zero():
    rates, _ = used_rates(epochs=4, optimizer="adam", lr=0.01, schedule="cosine")
    total = 20
    assert rates == pytest.approx([0.005 * (1 + math.cos(math.pi * t / total)) for t in range(total)], rel=1e-12)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total), 0.01, total)
    np.testing.assert_allclose(rates, ref, rtol=1e-9, atol=1e-15)
    assert rates[0] == 0.01 and all(a > b for a, b in itertools.pairwise(rates))


def test_onecycle_matches_torch_onecycle_lr():
    rates, _ = used_rates(epochs=4, optimizer="adam", lr=0.02, schedule="onecycle", pct_start=0.25)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.02, total_steps=20, pct_start=0.25, cycle_momentum=False), 0.02, 20)
    np.testing.assert_allclose(rates, ref, rtol=1e-9)
    assert rates[0] == pytest.approx(0.02 / 25) and max(rates) == pytest.approx(0.02)
    assert rates[-1] == pytest.approx(0.02 / 25 / 1e4)
    assert int(np.argmax(rates)) == 4  # warm-up ends after pct_start * 20 - 1 steps


def test_default_lr_is_the_optimizers_keras_default():
    rates, _ = used_rates(epochs=2, optimizer="adam", schedule="cosine")
    assert rates[0] == 1e-3


def test_closed_forms_at_their_ends():
    assert step_lr(1.0, 1, 3, 0.1) == 1.0 and step_lr(1.0, 4, 3, 0.1) == pytest.approx(0.1)
    assert cosine_lr(2.0, 0, 10) == 2.0 and cosine_lr(2.0, 10, 10) == pytest.approx(0.0)
    assert onecycle_lr(1.0, 0, 100) == pytest.approx(0.04) and onecycle_lr(1.0, 29, 100) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"schedule": "linear"}, "--schedule"), ({"schedule": "onecycle", "pct_start": 1.0}, "--pct-start"),
    ({"schedule": "step", "lr_step_epochs": 0}, "--lr-step-epochs"),
    ({"schedule": "step", "lr_gamma": 0.0}, "--lr-gamma"),
    ({"patience": -1}, "--patience"), ({"shift": 20}, "--shift"), ({"erase": 2.0}, "--erase"),
])
def test_bad_schedule_options_are_usage_errors(kwargs, fragment):
    with pytest.raises(UsageError) as exc:
        TrainConfig(**kwargs)
    # The command line reads its own option; Python reads the parameter's name.
    assert exc.value.cli_message.startswith(fragment)
    assert str(exc.value).startswith(fragment[2:].replace("-", "_"))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"pct_start": 0.2}, "--pct-start 0.2 applies to --schedule onecycle only"),
    ({"schedule": "onecycle", "lr_gamma": 0.5}, "--lr-gamma 0.5 applies to --schedule step only"),
    ({"schedule": "cosine", "lr_step_epochs": 3}, "--lr-step-epochs 3 applies to --schedule step only"),
])
def test_a_setting_of_another_schedule_is_refused_not_ignored(kwargs, fragment):
    with pytest.raises(UsageError) as exc:
        TrainConfig(**kwargs)
    assert fragment in exc.value.cli_message


def test_resolved_config_spells_out_the_schedule_defaults():
    assert TrainConfig(schedule="step").resolved().lr_step_epochs == 10
    assert TrainConfig(schedule="step", lr_gamma=0.5).resolved().lr_gamma == 0.5
    onecycle = TrainConfig(schedule="onecycle").resolved()
    assert (onecycle.pct_start, onecycle.lr_step_epochs) == (0.3, None)


def test_none_and_zero_switch_off_a_presets_schedule_and_patience():
    config = TrainConfig(schedule="none", patience=0)
    assert config.schedule is None and config.patience is None
