import os

import numpy as np
import pytest
import torch

from fmnist.errors import UsageError
from fmnist.evaluation import evaluate
from fmnist.models import ModelSpec, create_model, get_preset
from fmnist.models.network import Network
from fmnist.training import (
    Callback,
    KerasRMSprop,
    TrainConfig,
    Trainer,
    build_optimizer,
    fit,
)
from tests.conftest import learnable_images

Y = np.arange(160) % 10
X = learnable_images(Y)


def trained(name="mlp-100", seed=0, epochs=3, **kw):
    torch.manual_seed(seed)
    model = create_model(name)
    history = fit(model, X, Y, config=TrainConfig(epochs=epochs, seed=seed, **kw), validation_data=(X[:40], Y[:40]))
    return model, history


def test_loss_falls_and_history_is_returned():
    _, history = trained(epochs=4)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"] / 2
    assert history[-1]["val_accuracy"] > 0.9
    assert set(history[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "time"}


def test_same_seed_same_result_different_seed_different():
    m1, h1 = trained(seed=3)
    m2, h2 = trained(seed=3)
    m3, _ = trained(seed=4)
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(m1.parameters()), next(m3.parameters()))


def test_a_cnn_with_dropout_in_bfloat16_on_two_threads_same_seed_same_result(monkeypatch):
    from fmnist.models import _batches

    monkeypatch.setattr(_batches, "min_slice_images", 8)  # the fused kernels split each batch of 32 in two
    kw = dict(name="conv:8:3,maxpool:2,flatten,dropout:0.3,dense:10", epochs=2, batch_size=32,
              precision="bfloat16", threads=2)
    (m1, h1), (m2, h2), (m3, _) = trained(seed=3, **kw), trained(seed=3, **kw), trained(seed=4, **kw)
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert not torch.equal(next(m1.parameters()), next(m3.parameters()))


def test_keras_rmsprop_matches_reference_update():
    """Keras: v = rho v + (1 - rho) g^2; p -= lr g / sqrt(v + eps), eps inside the root."""
    rng = np.random.default_rng(0)
    p0, grads = rng.normal(size=5), [rng.normal(size=5) for _ in range(3)]
    param = torch.nn.Parameter(torch.tensor(p0))
    opt = KerasRMSprop([param], lr=0.01, rho=0.9, eps=1e-7)
    p, v = p0.copy(), np.zeros(5)
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
        v = 0.9 * v + 0.1 * g * g
        p = p - 0.01 * g / np.sqrt(v + 1e-7)
    np.testing.assert_allclose(param.detach().numpy(), p, rtol=1e-12)


def test_epsilon_placement_is_keras_not_torch():
    # With a tiny gradient the two placements differ a lot: sqrt(v + eps) vs sqrt(v) + eps.
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    param.grad = torch.full((1,), 1e-4, dtype=torch.float64)
    KerasRMSprop([param], lr=1.0, eps=1e-7).step()
    v = 0.1 * 1e-8
    assert param.item() == pytest.approx(-1e-4 / np.sqrt(v + 1e-7))


@pytest.mark.parametrize("name", ["rmsprop", "sgd", "adagrad", "adam", "adamw"])
def test_every_optimizer_trains(name):
    lr = {"sgd": 0.1, "adagrad": 0.05}.get(name)
    _, history = trained(optimizer=name, lr=lr, epochs=3)
    assert history[-1]["loss"] < history[0]["loss"]


def test_callbacks_see_every_epoch_and_can_stop():
    class StopAfterTwo(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, trainer, epoch, logs):
            self.seen.append(epoch)
            trainer.stop_training = epoch == 2

    cb = StopAfterTwo()
    torch.manual_seed(0)
    history = Trainer(create_model("softmax"), TrainConfig(epochs=5), [cb]).fit(X, Y)
    assert cb.seen == [1, 2] and len(history) == 2


@pytest.mark.parametrize("kwargs, fragment", [
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"lr": -1.0}, "--lr"),
    ({"label_smoothing": 1.0}, "--label-smoothing"), ({"label_smoothing": -0.1}, "--label-smoothing"),
    # From a notebook: a fraction of an epoch, text for a number, a flag given as 1.
    ({"epochs": 2.5}, "--epochs must be a whole number, got 2.5"), ({"epochs": True}, "--epochs must be a whole"),
    ({"lr": "0.1"}, "--lr must be a number, got '0.1'"), ({"erase": None}, "--erase must be a number"),
    ({"flip": 1}, "--flip must be True or False"),
])
def test_bad_config_is_a_usage_error(kwargs, fragment):
    with pytest.raises(UsageError) as exc:
        TrainConfig(**kwargs)
    assert exc.value.cli_message.startswith(fragment)  # the CLI's words; Python's name the parameter
    assert str(exc.value).startswith(fragment[2:].replace("-", "_"))


def test_unknown_optimizer_and_misused_nesterov():
    with pytest.raises(UsageError, match="unknown optimizer"):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(UsageError, match="nesterov"):
        build_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], nesterov=True)


def test_step_macs_counts_conv_and_dense_products():
    from fmnist.training.loop import step_macs

    model = create_model("conv:4:3:valid,maxpool:2,flatten,dense:10")
    # conv: 26*26 outputs x 4 filters x 9 taps; dense: 13*13*4 inputs x 10 units
    assert step_macs(model, torch.rand(1, 28, 28)) == 26 * 26 * 4 * 9 + 13 * 13 * 4 * 10
    assert model.training  # counting leaves the model in the mode it found
    # A model that predicts with the test-time flip runs its layers twice in eval mode; a
    # training step runs them once, and that is what the thread count is chosen for.
    flipped = Network(ModelSpec.parse("conv:4:3:valid,maxpool:2,flatten,dense:10", tta="flip"))
    assert step_macs(flipped, torch.rand(1, 28, 28)) == 26 * 26 * 4 * 9 + 13 * 13 * 4 * 10


def test_thread_count_follows_the_work_per_step(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    small = Trainer(create_model("mlp-200"), TrainConfig(device="cpu"))
    big = Trainer(create_model("cnn-book"), TrainConfig(device="cpu"))
    sample = torch.rand(1, 28, 28)
    assert small.train_threads(sample) == Trainer.cpu_train_threads
    assert big.train_threads(sample) == big.threads == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("threads", [1, "more than the CPUs"])
def test_config_threads_bound_the_steps_and_are_restored(threads):
    from fmnist._threads import available_cpus

    before = torch.get_num_threads()
    # A request above the CPUs this process may use is held to them: more would only take turns.
    asked, threads = (available_cpus() + 1, available_cpus()) if threads == "more than the CPUs" else (threads, threads)
    seen = []

    class Watch(Callback):
        def on_batch_end(self, trainer, batch, num_batches):
            seen.append(torch.get_num_threads())  # runs inside the epoch, with the steps' setting

        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(("epoch", torch.get_num_threads()))

    torch.manual_seed(0)
    trainer = Trainer(create_model("conv:4:3,maxpool:2,flatten,dense:10"), TrainConfig(epochs=1, device="cpu",
                                                                                        threads=asked),
                      [Watch()])
    trainer.cpu_parallel_macs = 0  # this tiny conv counts as a big step: it gets all the threads
    trainer.fit(X[:64], Y[:64], validation_data=(X[:32], Y[:32]))
    assert trainer.step_threads == threads and set(seen) == {threads, ("epoch", threads)}
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_thread_counts_below_one_or_not_whole_are_refused(bad):
    with pytest.raises(UsageError, match="threads"):
        TrainConfig(threads=bad)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch-ops"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_the_steps_loss_is_torch_cross_entropy_with_its_gradient_and_metrics(compiled, smoothing, monkeypatch):
    from fmnist.training import _loss

    if compiled and not _loss.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_loss, "AVAILABLE", compiled)
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(33, 10, generator=gen) * 4).requires_grad_()
    with torch.no_grad():
        logits[5, 2] = logits[5, 7] = logits[5].max() + 1  # a tie: the first of equal maxima is the prediction
    y = torch.randint(0, 10, (33,), generator=gen)
    picked, pred = torch.empty(33), torch.empty(33, dtype=torch.int64)
    loss = _loss.softmax_cross_entropy(logits, y, smoothing, picked, pred)
    (grad,) = torch.autograd.grad(3 * loss, logits)

    ref_logits = logits.detach().clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(ref_logits, y, label_smoothing=smoothing)
    (ref_grad,) = torch.autograd.grad(3 * ref, ref_logits)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(picked, torch.log_softmax(logits.detach(), 1).gather(1, y.view(-1, 1)).view(-1))
    assert torch.equal(pred, logits.detach().argmax(1)) and pred[5] == 2


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch-ops"])
@pytest.mark.parametrize("bad", [10, -1])
def test_a_label_outside_the_classes_raises_as_torchs_cross_entropy_does(compiled, bad, monkeypatch):
    """The compiled loss reads the logit each label names: a label past the classes must raise, not read
    past the row, for callers that skip ``Trainer.fit``'s check too (the conv step's chain included)."""
    from fmnist.training import _loss
    from fmnist.training._fast_dense import DenseStep

    if compiled and not _loss.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_loss, "AVAILABLE", compiled)
    y = torch.tensor([3, bad, 1])
    with pytest.raises(IndexError):
        _loss.softmax_cross_entropy(torch.randn(3, 10, requires_grad=True), y)
    if compiled:
        with pytest.raises(IndexError):
            _loss.loss_gradient(torch.randn(3, 10), y)
        step = DenseStep.build(create_model("cnn-book"), per_batch=True)
        if step is not None and step.front:
            with pytest.raises(IndexError):
                step(torch.rand(32, 28, 28), torch.cat([y, torch.zeros(29, dtype=torch.int64)]))


def test_label_smoothing_trains_a_dense_model_through_autograd():
    # Dense stacks normally take the compiled step, whose kernel knows only plain cross-entropy.
    _, plain = trained(epochs=3)
    _, smoothed = trained(epochs=3, label_smoothing=0.2)
    assert smoothed[-1]["val_accuracy"] > 0.9
    assert [h["loss"] for h in smoothed] != [h["loss"] for h in plain]
    assert smoothed[-1]["loss"] < smoothed[0]["loss"]


class EvaluateOnlyTrainer(Trainer):
    """A train_step that never updates: the loop must still call it, and log what it returns."""

    def train_step(self, xb, yb):
        self.batch_sizes.append(len(xb))
        with torch.no_grad():
            return self.model(xb)


def test_an_overridden_train_step_is_called_for_every_batch_of_a_dense_model():
    # mlp-100 would otherwise run in compiled chunks that no Python method sees.
    torch.manual_seed(0)
    trainer = EvaluateOnlyTrainer(create_model("mlp-100"), TrainConfig(epochs=2, batch_size=64))
    trainer.batch_sizes = []
    before = [p.detach().clone() for p in trainer.model.parameters()]
    history = trainer.fit(X, Y)
    assert trainer.batch_sizes == [64, 64, 32] * 2
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    # The epoch's loss and accuracy are those of the logits train_step returned.
    expected = evaluate(trainer.model, X, Y)
    for logs in history:
        assert logs["loss"] == pytest.approx(expected["loss"], rel=1e-6)
        assert logs["accuracy"] == expected["accuracy"]


def test_a_train_step_replaced_on_the_instance_is_called_too():
    torch.manual_seed(0)
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=1, batch_size=40))
    calls = []
    step = trainer.train_step
    trainer.train_step = lambda xb, yb: (calls.append(len(xb)), step(xb, yb))[1]
    history = trainer.fit(X, Y)
    assert calls == [40] * 4 and history[0]["loss"] > 0


class OrderRecorder(Trainer):
    """Notes which training images (by index) each batch held, in order."""

    index = {bytes(img): i for i, img in enumerate(X)}

    def train_step(self, xb, yb):
        pixels = (xb * 255).round().to(torch.uint8).numpy()
        self.order.append([self.index[bytes(img)] for img in pixels])
        return super().train_step(xb, yb)


def epoch_orders(seed, epochs=3):
    torch.manual_seed(0)
    trainer = OrderRecorder(create_model("softmax"), TrainConfig(epochs=epochs, batch_size=32, seed=seed))
    trainer.order = []
    trainer.fit(X, Y)
    flat = [i for batch in trainer.order for i in batch]
    return [flat[e * len(X):(e + 1) * len(X)] for e in range(epochs)]


def test_every_epoch_visits_each_image_once_in_a_fresh_seeded_order():
    orders = epoch_orders(seed=1)
    assert all(sorted(order) == list(range(len(X))) for order in orders)
    assert len({tuple(order) for order in orders}) == 3  # reshuffled every epoch
    assert orders == epoch_orders(seed=1) and orders != epoch_orders(seed=2)


def _output_dtypes(model, kind, training=True, images=None):
    """The dtypes of every output of ``kind`` modules in training (or eval) mode, seen by forward
    hooks; only of batches of ``images`` images when given."""
    seen = []

    def hook(m, i, out):
        if m.training == training and images in (None, len(out)):
            seen.append(out.dtype)

    for module in model.modules():
        if isinstance(module, kind):
            module.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("name, kind", [("conv:8:3,maxpool:2,flatten,dense:10", torch.nn.Conv2d),
                                        ("mlp-100", torch.nn.Linear)])
def test_bfloat16_precision_runs_the_forward_in_bfloat16_and_keeps_float32_weights(name, kind):
    # A dense stack too: its hand-written float32 steps must step aside (they never call the modules).
    torch.manual_seed(0)
    model = create_model(name)
    seen, validated = _output_dtypes(model, kind), _output_dtypes(model, kind, training=False, images=40)
    history = fit(model, X, Y, config=TrainConfig(epochs=4, seed=0, precision="bfloat16", optimizer="adam"),
                  validation_data=(X[:40], Y[:40]))
    assert seen and set(seen) == {torch.bfloat16}
    assert validated and set(validated) == {torch.bfloat16}  # the per-epoch monitor, at the training precision
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert history[-1]["val_accuracy"] > 0.9 and history[-1]["loss"] < history[0]["loss"]
    # Scores after training are float32.
    validated.clear()
    scores = evaluate(model, X[:40], Y[:40])
    assert set(validated) == {torch.float32} and abs(scores["accuracy"] - history[-1]["val_accuracy"]) <= 0.05


def test_bfloat16_precision_of_a_dense_stack_is_not_the_float32_engines():
    # Without hooks (they already turn the compiled engines off), mlp-100 would take the
    # hand-written float32 steps: the same numbers as float32 precision.
    runs = {p: trained(epochs=2, precision=p, optimizer="adam")[1] for p in ("float32", "bfloat16")}
    assert [h["loss"] for h in runs["float32"]] != [h["loss"] for h in runs["bfloat16"]]
    assert runs["bfloat16"][-1]["val_accuracy"] > 0.9


def test_float32_precision_runs_the_forward_in_float32():
    torch.manual_seed(0)
    model = create_model("conv:8:3,maxpool:2,flatten,dense:10")
    seen = _output_dtypes(model, torch.nn.Conv2d)
    fit(model, X, Y, config=TrainConfig(epochs=1, seed=0))
    assert seen and set(seen) == {torch.float32}


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_the_hardware_has_it(monkeypatch, native):
    # Emulated bfloat16 is several times slower than float32: "auto" (cnn-best's) must not pick it.
    from fmnist.training import loop

    monkeypatch.setattr(loop, "bfloat16_native", lambda device: native)
    torch.manual_seed(0)
    model = create_model("conv:8:3,maxpool:2,flatten,dense:10")
    seen = _output_dtypes(model, torch.nn.Conv2d)
    config = TrainConfig(epochs=1, seed=0, precision="auto")
    trainer = Trainer(model, config)
    trainer.fit(X, Y)
    expected = "bfloat16" if native else "float32"
    assert set(seen) == {getattr(torch, expected)}
    # What a run records and a checkpoint resumes with is the precision it trained in.
    assert trainer.config.precision == expected and trainer.state_dict()["config"]["precision"] == expected
    assert config.precision == "auto"  # the caller's config is left as it was


def test_cnn_best_trains_in_bfloat16_only_where_the_hardware_has_it():
    assert get_preset("cnn-best").train["precision"] == "auto"


def test_unknown_precision_is_a_usage_error():
    with pytest.raises(UsageError) as exc:
        TrainConfig(precision="float16")
    assert exc.value.cli_message.startswith("--precision") and "bfloat16" in str(exc.value)


def test_the_per_epoch_monitor_scores_one_view_and_reported_scores_the_models_own():
    from fmnist.evaluation.metrics import images_to_tensor, log_proba_tensors, score

    torch.manual_seed(0)
    model = create_model("flatten,dense:32:relu,dense:10", tta="flip")
    history = fit(model, X, Y, config=TrainConfig(epochs=2, seed=0), validation_data=(X[:40], Y[:40]))
    xs, ys = images_to_tensor(X[:40]), torch.as_tensor(Y[:40])
    one_view, with_flip = (score(log_proba_tensors(model, xs, tta=tta), ys)["loss"] for tta in (False, True))
    assert one_view != with_flip  # the mirror changes this model's scores
    assert history[-1]["val_loss"] == one_view
    assert evaluate(model, X[:40], Y[:40])["loss"] == with_flip


def test_labels_and_validation_data_are_checked_before_the_first_epoch():
    from fmnist.errors import DataError

    class Count(Callback):
        epochs = 0

        def on_epoch_end(self, trainer, epoch, logs):
            Count.epochs += 1

    def trainer():
        torch.manual_seed(0)
        return Trainer(create_model("softmax"), TrainConfig(epochs=1, batch_size=32), [Count()])

    with pytest.raises(DataError, match=r"^y of shape \(100,\) for 160 images"):
        trainer().fit(X, Y[:100])
    with pytest.raises(DataError, match=r"^the validation labels of shape \(10,\) for 20 images"):
        trainer().fit(X, Y, validation_data=(X[:20], Y[:10]))
    assert Count.epochs == 0
    # Labels as a column train as labels.
    column = trainer().fit(X, Y[:, None], validation_data=(X[:20], Y[:20, None]))
    plain = trainer().fit(X, Y, validation_data=(X[:20], Y[:20]))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[h[k] for k in keys] for h in column] == [[h[k] for k in keys] for h in plain]


def test_fitting_a_trainer_again_after_all_its_epochs_is_refused_not_a_silent_no_op():
    trainer = Trainer(create_model("softmax"), TrainConfig(epochs=2, device="cpu"))
    assert len(trainer.fit(X, Y)) == 2
    with pytest.raises(UsageError, match="has trained its 2 epochs"):
        trainer.fit(X, Y)
