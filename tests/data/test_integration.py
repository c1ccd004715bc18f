"""The real Fashion-MNIST files (Debian's dataset-fashion-mnist); skipped when absent."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import (
    CLASS_NAMES,
    dataset_summary,
    load_dataset,
    read_idx,
    train_val_split,
)
from fmnist.data._sources import FILES, find_files
from fmnist.data.idx import _read_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
READER = Path("/usr/share/doc/dataset-fashion-mnist/utils/mnist_reader.py")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(find_files(REAL_DIR)[1]), reason=f"Fashion-MNIST not in {REAL_DIR}"),
]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    # Module-scoped, so the autouse isolation has not run yet: point the cache at tmp here.
    mp = pytest.MonkeyPatch()
    mp.setenv("FMNIST_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield load_dataset(REAL_DIR)
    finally:
        mp.undo()


def test_shapes_dtypes_and_counts(ds):
    assert ds.verified and ds.origin == "argument" and ds.class_names == CLASS_NAMES
    assert (ds.x_train.shape, ds.y_train.shape) == ((60000, 28, 28), (60000,))
    assert (ds.x_test.shape, ds.y_test.shape) == ((10000, 28, 28), (10000,))
    assert {a.dtype for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)} == {np.dtype(np.uint8)}
    s = dataset_summary(ds)
    assert s["train"]["classes"] == list(range(10)) and s["train"]["counts"] == [6000] * 10
    assert s["test"]["counts"] == [1000] * 10
    assert s["first_train_labels"] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


@pytest.mark.parametrize("name, sha", FILES)
def test_digests(name, sha):
    assert _read_idx(REAL_DIR / f"{name}.gz", digest=True)[1] == sha


def test_byte_identical_with_zalando_reader(ds):
    if not READER.is_file():
        pytest.skip(f"{READER} not installed")
    spec = importlib.util.spec_from_file_location("mnist_reader", READER)
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    for kind, x, y in (("train", ds.x_train, ds.y_train), ("t10k", ds.x_test, ds.y_test)):
        images, labels = reader.load_mnist(str(REAL_DIR), kind=kind)
        assert images.tobytes() == x.tobytes() and labels.tobytes() == y.tobytes()


def test_fast_path_gives_the_same_arrays(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path))
    first = load_dataset(REAL_DIR)
    second = load_dataset(REAL_DIR)
    assert not first.from_cache and second.from_cache and second.verified
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(ds, name).tobytes() == getattr(second, name).tobytes()


def test_read_idx_on_real_labels():
    assert read_idx(REAL_DIR / "t10k-labels-idx1-ubyte.gz").shape == (10000,)


def test_split_sizes_and_indices(ds):
    from sklearn.model_selection import train_test_split

    x_tr, x_val, y_tr, y_val = train_val_split(ds.x_train, ds.y_train)
    assert (len(x_tr), len(x_val), len(y_tr), len(y_val)) == (48000, 12000, 48000, 12000)
    ref = train_test_split(ds.x_train, ds.y_train, test_size=0.2, random_state=42)
    assert all(np.array_equal(a, b) for a, b in zip((x_tr, x_val, y_tr, y_val), ref, strict=True))
