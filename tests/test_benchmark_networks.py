"""benchmarks/: the plain PyTorch and Keras networks the CNN epochs are compared with are the presets' own."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset", ["cnn-book", "cnn-best"])
def test_the_plain_pytorch_network_is_the_presets(preset):
    run = _load("run")
    net, opt = run.eager_network(preset)
    ours = create_model(preset)
    assert run.parameters(net) == run.parameters(ours)
    # Layer by layer: the same kinds of modules in the same order (our network adds no others).
    kinds = [type(m).__name__ for m in net]
    assert kinds == [type(m).__name__ for m in ours.layers], (kinds, ours)
    assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))


def test_a_preset_without_a_plain_network_is_refused():
    with pytest.raises(ValueError, match="no plain PyTorch network"):
        _load("run").eager_network("mlp-best")


@pytest.mark.parametrize("preset", ["cnn-book", "cnn-best"])
def test_the_keras_network_has_the_presets_trainable_parameters(preset):
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import keras_epoch; "
            f"m = keras_epoch.build({preset!r}); "
            "print(json.dumps(sum(int(w.numpy().size) for w in m.trainable_weights)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if done.returncode and "No module named" in done.stderr and ("keras" in done.stderr or "tensorflow" in done.stderr):
        pytest.skip("TensorFlow is not importable here")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == _load("run").parameters(create_model(preset))


def test_the_floor_counts_each_layers_products_once_at_the_batch_asked():
    run = _load("run")
    model = create_model("cnn-best")  # predicts with the test-time flip: its layers run twice in eval
    products = run.step_products(model, torch.zeros(1, 28, 28), batch=256)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(products) == 3 * len(layers) - 1  # forward, weight and input gradient; no input gradient first
    assert len({label for label, *_ in products}) == len(products)
    assert products[0] == ("conv 1->32 28x28 forward", 256 * 28 * 28, 9, 32)


def _children(monkeypatch, stdout: str) -> list[list[str]]:
    """Child processes answered with ``stdout`` instead of run; their commands, as they come."""
    seen = []

    def fake(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=stdout)

    monkeypatch.setattr(subprocess, "run", fake)
    return seen


def test_keras_is_timed_at_the_batch_it_is_given(monkeypatch):
    run = _load("run")
    seen = _children(monkeypatch, '{"epoch_s": 1.5}\n')
    assert run.keras_epoch("cnn-best", 512, 1, "bfloat16", batch=256) == 1.5
    assert seen[0][seen[0].index("--batch") + 1] == "256"


def test_each_cnn_stack_is_timed_in_a_process_of_its_own(monkeypatch):
    run = _load("run")
    seen = _children(monkeypatch, '{"epoch_s": 2.5}\n')
    assert run.stack_child("eager", "cnn-best", 512, 2, "bfloat16", 256, 1) == {"epoch_s": 2.5}
    asked = dict(zip(seen[0][2::2], seen[0][3::2]))
    assert seen[0][1].endswith("run.py") and asked == {
        "--stack": "eager", "--preset": "cnn-best", "--images": "512", "--conv-repeats": "2",
        "--precision": "bfloat16", "--batch": "256", "--eager-threads": "1"}


@pytest.mark.parametrize("stack", ["fmnist", "eager"])
def test_a_stack_child_prints_its_epochs(stack, real_data):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--stack", stack, "--preset",
                           "cnn-book", "--images", "96", "--conv-repeats", "2"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["epoch_s"] > 0
    if stack == "fmnist":
        runs = result["epoch_runs_s"]
        assert len(runs) == 2 and min(runs) <= result["epoch_s"] <= max(runs)


def test_the_cnn_stacks_take_turns_and_each_ratio_is_the_median_of_the_rounds(monkeypatch):
    run = _load("run")
    # The GEMM is timed each round; the floor is the one at the best rate (the second round's here).
    floors = iter([{"floor_s": 2.0, "best_sgemm_gflop_per_s": 50.0}, {"floor_s": 1.0, "best_sgemm_gflop_per_s": 100.0},
                   {"floor_s": 1.25, "best_sgemm_gflop_per_s": 80.0}] * 2)

    def floor(*args, **kwargs):
        order.append("gemm")
        return next(floors)

    monkeypatch.setattr(run, "sgemm_floor", floor)
    # Round by round: fmnist 2, 4, 10 s; eager 6, 4, 30 s; Keras 10, 8, 20 s. The rounds' ratios are
    # eager 3, 1, 3 and Keras 5, 2, 2: medians 3 and 2, where the ratios of the medians are 1.5 and 2.5.
    times = {"fmnist": [2.0, 4.0, 10.0], "eager": [6.0, 4.0, 30.0], "keras": [10.0, 8.0, 20.0]}
    order = []

    def stack(name, preset, images, repeats, *rest):
        order.append(name)
        assert repeats == 1  # one epoch a round
        return {"epoch_s": times[name][order.count(name) - 1]}

    def keras(preset, images, repeats, *rest):
        order.append("keras")
        assert repeats == 1
        return times["keras"][order.count("keras") - 1]

    monkeypatch.setattr(run, "stack_child", stack)
    monkeypatch.setattr(run, "keras_epoch", keras)
    xs, ys = torch.zeros(64, 28, 28), torch.zeros(64, dtype=torch.long)
    result = run.conv_stacks("cnn-book", xs, ys, 3, 2)
    assert order == ["gemm", "fmnist", "eager", "keras"] * 3
    assert result["best_sgemm_gflop_per_s"] == 100.0 and result["floor_s"] == 1.0
    assert result["epoch_s"] == 4.0 and result["epoch_runs_s"] == [2.0, 4.0, 10.0] and result["epoch_vs_floor"] == 4.0
    assert result["eager_epoch_s"] == 6.0 and result["eager_vs_ours"] == 3.0
    assert result["eager_vs_ours_rounds"] == [3.0, 1.0, 3.0]
    assert result["keras_epoch_s"] == 10.0 and result["keras_vs_ours"] == 2.0
    assert result["keras_vs_ours_rounds"] == [5.0, 2.0, 2.0]
    assert "(1.00-3.00x in 3 rounds)" in run._beside(result) and "(2.00-5.00x in 3 rounds)" in run._beside(result)
    # Without TensorFlow every Keras round is None: no Keras numbers at all, the rest as before.
    monkeypatch.setattr(run, "keras_epoch", lambda *a, **k: None)
    order.clear()
    result = run.conv_stacks("cnn-book", xs, ys, 3, 2)
    assert result["keras_epoch_s"] is None and result["keras_vs_ours"] is None and result["eager_vs_ours"] == 3.0


def test_a_results_file_names_every_option_that_changed_what_it_measured():
    run = _load("run")
    command = lambda *argv: run.command_line(run.build_parser().parse_args(argv))  # noqa: E731
    assert command() == "python benchmarks/run.py"
    assert command("--quick", "--no-conv", "--images", "3000", "--out", "x.json") == \
        "python benchmarks/run.py --quick --no-conv --images 3000"
    assert command("--eager-threads", "1", "--threads", "2") == \
        "python benchmarks/run.py --threads 2 --eager-threads 1"
