"""``FMNIST_NO_NUMBA=1``: the plain-torch paths that stand in for every compiled kernel.

Machines without numba train through the same loop on torch ops (optimizer updates, the
hand-written dense step, unfused conv/ReLU/pool). In-process tests cover some of those paths by
switching a kernel off; here the whole training and model test suites run in a fresh
interpreter with numba off from the first import, as such a machine would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import _numba

ROOT = Path(__file__).resolve().parents[1]


def test_training_and_model_tests_pass_without_numba(tmp_path):
    env = {**os.environ, "FMNIST_NO_NUMBA": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    code = "import fmnist._numba as n, fmnist.training._fast_epoch as e; print(n.load(), e.AVAILABLE)"
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split() == ["None", "False"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rs", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "pytest"), "tests/training", "tests/models"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]


# Train each kind of network the CLI trains (its preset's batch and precision, a validation pass,
# float32 scoring with the model's test-time augmentation), then name the kernels numba had to
# compile rather than load from its cache; then once more after calling a kernel with float64
# arrays, which nothing compiles in advance (so the count is seen to count).
_TRAIN_AND_COUNT = """
import sys, numpy as np, numba
from fmnist.evaluation.metrics import log_proba_tensors, images_to_tensor
from fmnist.models import create_model, get_preset, _fused
from fmnist.runs import resolve_config
from fmnist.training import fit

def compiled():
    return ",".join(sorted(f"{m}.{k}" for m, module in list(sys.modules.items()) if m.startswith("fmnist.")
                           for k, f in vars(module).items()
                           if isinstance(f, numba.core.registry.CPUDispatcher) and f.stats.cache_misses)) or "none"

y = np.arange(512) % 10
x = (np.arange(512 * 784) % 251).astype(np.uint8).reshape(512, 28, 28)
for name in ("cnn-book", "cnn-best"):
    model = create_model(name)
    fit(model, x, y, config=resolve_config(get_preset(name), epochs=1, patience=0), validation_data=(x[:64], y[:64]))
    log_proba_tensors(model.eval(), images_to_tensor(x[:64]))
print(compiled())
_fused._kernels().relu_forward(np.zeros((2, 3)), np.zeros((2, 3)))
print(compiled())
"""


def test_the_install_steps_warm_up_compiles_what_training_a_cnn_calls(tmp_path):
    """``make install`` runs ``python -m fmnist._warmup``: afterwards a first ``fmnist train`` of a
    CNN loads every kernel from numba's cache instead of compiling it in its first epoch."""
    from fmnist._numba import AVAILABLE

    if not AVAILABLE:
        pytest.skip("numba is not installed")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    env.pop("FMNIST_NO_NUMBA", None)

    def run(*args):
        return subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.split()

    run("-m", "fmnist._warmup")
    assert run("-c", _TRAIN_AND_COUNT) == ["none", "fmnist.models._fused_kernels.relu_forward"]


def test_a_trainer_finishes_numbas_start_up_before_it_trains():
    """The first model a process trains is not charged numba's start-up in its training time."""
    if not _numba.AVAILABLE:
        pytest.skip("no numba")
    code = ("from numba.core.registry import cpu_target\n"
            "from fmnist.models import create_model\n"
            "from fmnist.training import TrainConfig, Trainer\n"
            "before = len(cpu_target.target_context._registries)\n"
            "Trainer(create_model('softmax'), TrainConfig(device='cpu'))\n"
            "print(before, len(cpu_target.target_context._registries))\n")
    before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert before == 0 and after > 0
