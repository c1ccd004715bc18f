"""keep_freed_memory: raises glibc's thresholds once; opt-out by environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = "from fmnist._malloc import keep_freed_memory as k; print(k(), k())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_raises_thresholds_once_per_process():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setenv("FMNIST_SYSTEM_MALLOC", "1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
