"""Fixtures for the data layer: an isolated environment and tiny MNIST-format folders."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from fmnist.data import _download, _sources
from fmnist.data.idx import write_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's cache, env vars, the Debian files and the network."""
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(_sources, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(_download, "BACKOFF_S", 0.0)
    monkeypatch.setattr(_download, "TIMEOUT_S", 5.0)

    real_urlopen = urllib.request.urlopen

    def loopback_only(url, *args, **kwargs):
        host = urlsplit(url if isinstance(url, str) else url.full_url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to reach the network: {url}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)


def tiny_arrays(n_train=20, n_test=10, seed=0):
    """Four small arrays shaped like Fashion-MNIST: images (N, 28, 28) uint8, labels (N,) 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }


def write_folder(folder: Path, arrays=None, *, gz=True) -> dict[str, np.ndarray]:
    """Write an MNIST-format folder (``.gz`` or raw IDX files); return the arrays written."""
    arrays = tiny_arrays() if arrays is None else arrays
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(folder / (f"{name}.gz" if gz else name), arr)
    return arrays


def idx_sha256(arr: np.ndarray) -> str:
    """SHA-256 of the uncompressed IDX encoding of ``arr`` (what the files table holds)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = write_idx(Path(d) / "a", arr)
        return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny gzip folder standing in for Fashion-MNIST: the digest table is patched to it.

    Returns ``(folder, arrays)`` with arrays keyed by file name.
    """
    arrays = tiny_arrays()
    folder = tmp_path / "tiny"
    write_folder(folder, arrays)
    for name, arr in arrays.items():
        monkeypatch.setitem(_sources.SHA256, name, idx_sha256(arr))
    return folder, arrays


@pytest.fixture
def make_arrays():
    """``make_arrays(n_train=20, n_test=10, seed=0)`` -> dict of tiny arrays by file name."""
    return tiny_arrays


@pytest.fixture
def make_folder():
    """``make_folder(folder, arrays=None, *, gz=True)`` writes a tiny MNIST-format folder."""
    return write_folder


