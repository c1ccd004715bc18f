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
