"""Shared fixtures: a tiny learnable MNIST-format dataset in tmp_path, the real one if present, and
the compiled kernels on one slice of a batch or several."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fmnist._threads import torch_threads
from fmnist.data.idx import write_idx
from fmnist.models import _batches

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """The suite trains on the CPU, as CI's machines do, also where a GPU is present: its
    expectations (bit-identical reruns, the CPU's compiled kernels, tensors compared with CPU
    ones) are the CPU's. Tests marked ``cuda`` see the GPU; commands a test starts see none."""
    if request.node.get_closest_marker("cuda") is None:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def learnable_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, 28, 28): each class lights its own horizontal band, plus noise; easy to learn."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (len(labels), 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 + 2 * int(y): 4 + 2 * int(y), 4:24] = 230
    return images


@pytest.fixture
def tiny_dir(tmp_path, monkeypatch) -> Path:
    """An MNIST-format folder of 200 training and 50 test images, classes 0..9 balanced."""
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-data"
    folder.mkdir()
    y_train = np.arange(200) % 10
    y_test = np.arange(50) % 10
    write_idx(folder / "train-images-idx3-ubyte.gz", learnable_images(y_train, 0))
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", learnable_images(y_test, 1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test.astype(np.uint8))
    return folder


@pytest.fixture
def tiny_data(tiny_dir):
    from fmnist.data import load_dataset

    return load_dataset(tiny_dir, dataset="custom")


@pytest.fixture(scope="session")
def real_data():
    from fmnist.data import load_dataset
    from fmnist.errors import DataError

    try:
        return load_dataset()
    except DataError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {exc}")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance (2 CPUs) for the whole session: each start costs several seconds.

    Code under test that calls ``fmnist._ray.start_ray`` finds it connected and uses it as is.
    """
    from fmnist._ray import start_ray, stop_ray

    info = start_ray(num_cpus=2)
    yield info
    stop_ray(info)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """An mlp-100 run folder trained on learnable tiny data (class = which band is lit)."""
    from fmnist.data import load_dataset
    from fmnist.models import get_preset
    from fmnist.runs import resolve_config, train_run

    folder = tmp_path_factory.mktemp("tiny-run")
    mp = pytest.MonkeyPatch()
    mp.setenv("FMNIST_CACHE", str(folder / "cache"))
    y_train, y_test = np.arange(400) % 10, np.arange(50) % 10
    write_idx(folder / "train-images-idx3-ubyte.gz", learnable_images(y_train, 0))
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", learnable_images(y_test, 1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test.astype(np.uint8))
    data = load_dataset(folder, dataset="custom")
    result = train_run("mlp-100", data, config=resolve_config(get_preset("mlp-100"), epochs=8, batch_size=16),
                       out_dir=folder / "run")
    mp.undo()
    assert result.metrics["val"]["accuracy"] > 0.9  # the premise of the tests that use it
    return folder / "run"


@pytest.fixture(params=["one slice", "slices"])
def slices(request, monkeypatch):
    """The compiled kernels on the whole batch at once, and on slices of it on two threads."""
    if request.param == "slices":
        monkeypatch.setattr(_batches, "min_slice_images", 1)
    with torch_threads(2):
        yield request.param


@pytest.fixture
def umask():
    """Set the process umask for one test: ``umask(0o077)``; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)
