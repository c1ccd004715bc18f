import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import (
    CLASS_NAMES,
    Dataset,
    _npycache,
    dataset_summary,
    load_data,
    load_dataset,
)
from fmnist.data.idx import write_idx
from fmnist.errors import DataError


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_load_verified(tiny):
    folder, arrays = tiny
    ds = load_dataset(folder)
    assert isinstance(ds, Dataset)
    assert (ds.source, ds.origin, ds.verified, ds.from_cache) == (folder, "argument", True, False)
    assert ds.dataset == "fashion-mnist" and ds.class_names == CLASS_NAMES
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert type(a) is np.ndarray and a.dtype == np.uint8 and a.flags.writeable
    assert "train=(20, 28, 28)" in repr(ds)


def test_load_data_is_keras_shaped(tiny):
    (x_train, y_train), (x_test, y_test) = load_data(tiny[0])
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == (
        (20, 28, 28), (20,), (10, 28, 28), (10,))


def test_raw_files_count(tiny, tmp_path, make_folder):
    raw = tmp_path / "raw"
    make_folder(raw, tiny[1], gz=False)
    assert load_dataset(raw).verified


def test_unknown_dataset(tiny):
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset(tiny[0], dataset="mnist")


def test_altered_content_is_not_fashion_mnist(tiny):
    folder, arrays = tiny
    x = arrays["t10k-images-idx3-ubyte"].copy()
    x[0, 0, 0] ^= 1
    path = write_idx(folder / "t10k-images-idx3-ubyte.gz", x)
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    msg = one_line(err)
    assert str(path) in msg and "not the Fashion-MNIST file" in msg
    # In the words of whoever called: Python's arguments here, the options on the command line.
    assert "load_dataset(fetch=True) downloads" in msg and "with dataset='custom'" in msg
    assert "or leave out data_dir to use fmnist's own verified copy" in msg  # a fetch won't touch this folder
    assert "`fmnist data --fetch` downloads" in err.value.cli_message and "--dataset custom" in err.value.cli_message
    # The same folder is fine as custom data: structure only, no digests.
    ds = load_dataset(folder, dataset="custom")
    assert not ds.verified and ds.dataset == "custom"


def _break(folder, name, arr):
    return write_idx(folder / f"{name}.gz", arr)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "custom"])
@pytest.mark.parametrize("name, arr, words", [
    ("train-labels-idx1-ubyte", np.arange(19, dtype=np.uint8) % 10, "19 labels but"),
    # Other sizes and types say that fmnist loads 28×28 uint8 only, and which conversion fits them.
    ("t10k-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8),
     ": 32×32 uint8 images, but fmnist loads datasets of 28×28 uint8 images only; resize them to 28×28 "
     "(fmnist.data.write_idx writes the result), or in Python read them with fmnist.data.read_idx: "
     "NetClassifier fits other sizes"),
    ("t10k-images-idx3-ubyte", np.zeros((10, 28, 20), np.uint8), "28×20 uint8 images, but"),
    ("t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.float32),
     ": 28×28 float32 images, but fmnist loads datasets of 28×28 uint8 images only; convert them to uint8 "
     "pixels 0..255 (fmnist.data.write_idx writes the result)"),
    ("t10k-images-idx3-ubyte", np.zeros((10, 20, 20), np.int32),
     "; resize them to 28×28 and convert them to uint8 pixels 0..255 ("),
    ("train-labels-idx1-ubyte", np.zeros(20, np.int32),
     ": int32 labels, but fmnist loads uint8 labels only; convert them to uint8"),
    ("train-labels-idx1-ubyte", np.zeros((20, 1), np.uint8), "expected (N,) uint8 labels"),
    ("t10k-images-idx3-ubyte", np.zeros((10, 28, 28, 1), np.uint8), "expected (N, 28, 28) uint8 images"),
])
def test_structural_errors(tiny, dataset, name, arr, words):
    path = _break(tiny[0], name, arr)
    with pytest.raises(DataError) as err:
        load_dataset(tiny[0], dataset=dataset)
    msg = one_line(err)
    assert str(path) in msg and words in msg


@pytest.mark.parametrize("prefix, split", [("t10k", "test"), ("train", "train")])
def test_a_split_without_images_is_refused_at_load(tiny, prefix, split):
    folder, _ = tiny
    path = _break(folder, f"{prefix}-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    _break(folder, f"{prefix}-labels-idx1-ubyte", np.zeros(0, np.uint8))
    with pytest.raises(DataError) as err:
        load_dataset(folder, dataset="custom")
    assert one_line(err).startswith(f"{path}: holds no images; the {split} set")


def test_labels_out_of_range(tiny):
    folder, arrays = tiny
    y = arrays["train-labels-idx1-ubyte"].copy()
    y[7] = 12
    path = _break(folder, "train-labels-idx1-ubyte", y)
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    msg = one_line(err)
    assert str(path) in msg and "label 12 at index 7 is outside 0..9" in msg and "use dataset='custom'" in msg
    ds = load_dataset(folder, dataset="custom")  # other label sets are fine as custom data
    assert len(ds.class_names) == 13 and dataset_summary(ds)["train"]["classes"][-1] == 12


def test_fast_path_cache(tiny):
    first = load_dataset(tiny[0])
    second = load_dataset(tiny[0])
    assert not first.from_cache and second.from_cache and second.verified
    assert first.cache_dir == second.cache_dir and first.cache_dir.is_dir()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(first, name), getattr(second, name)
        np.testing.assert_array_equal(a, b)
        assert type(b) is np.ndarray and b.flags.writeable
    second.x_train[:] = 0  # users may scribble on what they get...
    third = load_dataset(tiny[0])
    np.testing.assert_array_equal(third.x_train, first.x_train)  # ...without touching the cache


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda d: (d / "x_train.npy").write_bytes((d / "x_train.npy").read_bytes()[:-100]),
    lambda d: _flip_last_byte(d / "x_test.npy"),
    lambda d: (d / "y_train.npy").unlink(),
    lambda d: (d / "manifest.json").write_text("{not json"),
    lambda d: (d / "manifest.json").unlink(),
    lambda d: (d / "y_test.npy").write_bytes(b"garbage"),
], ids=["truncated", "bit-flip", "missing-array", "bad-manifest", "no-manifest", "garbage"])
def test_corrupt_cache_falls_back_and_is_rewritten(tiny, damage):
    first = load_dataset(tiny[0])
    _npycache.wait()  # the entry is written in the background
    damage(first.cache_dir)
    again = load_dataset(tiny[0])
    assert not again.from_cache and again.verified
    np.testing.assert_array_equal(again.x_test, first.x_test)
    assert load_dataset(tiny[0]).from_cache  # rewritten


def test_a_killed_writers_folder_is_removed_and_a_live_ones_kept(tiny):
    """A cache write killed midway leaves a dataset-sized folder nothing reads: the next write removes it."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    npy = _npycache.entry_dir("0" * 20).parent
    killed = npy / f".{'a' * 20}.{ended.pid}.0123abcd"
    live = npy / f".{'b' * 20}.{os.getpid()}.0123abcd"
    for folder in (killed, live):
        folder.mkdir(parents=True)
        (folder / "x_train.npy").write_bytes(b"half")
    load_dataset(tiny[0])
    _npycache.wait()
    assert not killed.exists() and live.exists()
    assert load_dataset(tiny[0]).from_cache


def test_changed_source_invalidates_cache(tiny, make_arrays, make_folder):
    folder, arrays = tiny
    load_dataset(folder, dataset="custom")
    new = make_arrays(seed=5)
    make_folder(folder, new)
    ds = load_dataset(folder, dataset="custom")
    assert not ds.from_cache
    np.testing.assert_array_equal(ds.x_train, new["train-images-idx3-ubyte"])


def test_a_rewrite_that_keeps_size_and_mtime_invalidates_cache(tiny, make_arrays, make_folder):
    """cp -p, rsync -t and tar restore a file's mtime: the change time still moves."""
    folder, _ = tiny
    load_dataset(folder, dataset="custom")
    _npycache.wait()
    times = {p: p.stat() for p in folder.iterdir()}
    new = make_arrays(seed=5)
    make_folder(folder, new)
    for path, st in times.items():
        assert path.stat().st_size == st.st_size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    ds = load_dataset(folder, dataset="custom")
    assert not ds.from_cache
    np.testing.assert_array_equal(ds.x_train, new["train-images-idx3-ubyte"])


def test_custom_cache_entry_does_not_serve_fashion(tiny):
    folder, arrays = tiny
    x = arrays["train-images-idx3-ubyte"].copy()
    x[0, 0, 0] ^= 1
    write_idx(folder / "train-images-idx3-ubyte.gz", x)
    assert not load_dataset(folder, dataset="custom").verified
    assert load_dataset(folder, dataset="custom").from_cache
    with pytest.raises(DataError, match="not the Fashion-MNIST file"):
        load_dataset(folder)


def test_unwritable_cache_still_loads(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("FMNIST_CACHE", str(blocker))
    ds = load_dataset(tiny[0])
    assert ds.verified and ds.cache_dir is None


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_cache_entries_follow_the_umask(tiny, umask, mask):
    # A shared $FMNIST_CACHE must be as readable as any folder its owner makes.
    umask(mask)
    ds = load_dataset(tiny[0])
    _npycache.wait()
    assert ds.cache_dir.stat().st_mode & 0o777 == 0o777 & ~mask
    for f in ds.cache_dir.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f.name


def test_summary_is_json(tiny):
    ds = load_dataset(tiny[0])
    s = json.loads(json.dumps(dataset_summary(ds)))
    assert s["origin"] == "argument" and s["verified"] is True and s["from_cache"] is False
    assert s["train"]["images_shape"] == [20, 28, 28] and s["train"]["dtype"] == "uint8"
    assert s["train"]["classes"] == list(range(10)) and s["train"]["counts"] == [2] * 10
    assert s["first_train_labels"] == list(range(10))
    assert s["class_names"] == list(CLASS_NAMES) and s["source"] == str(tiny[0])


def test_gzip_and_raw_give_same_cache_content(tiny, tmp_path, make_folder):
    raw = tmp_path / "raw"
    make_folder(raw, tiny[1], gz=False)
    a, b = load_dataset(tiny[0]), load_dataset(raw)
    assert a.cache_dir != b.cache_dir  # keyed by source file, not content
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert gzip.decompress((tiny[0] / "train-images-idx3-ubyte.gz").read_bytes()) == \
        (raw / "train-images-idx3-ubyte").read_bytes()


def test_cache_key_depends_on_files(tiny):
    from fmnist.data._sources import find_files

    files = find_files(tiny[0])[0]
    assert _npycache.key(files, "custom") != _npycache.key(files, "fashion-mnist")


def test_cache_written_in_background_keeps_the_original_arrays(tiny):
    folder, arrays = tiny
    first = load_dataset(folder)
    first.x_train[:] = 0  # at once, while the cache may still be being written
    again = load_dataset(folder)
    assert again.from_cache
    np.testing.assert_array_equal(again.x_train, arrays["train-images-idx3-ubyte"])


def test_a_relative_data_dir_is_recorded_as_the_absolute_folder(tiny_dir, monkeypatch):
    from fmnist.data import load_dataset

    monkeypatch.chdir(tiny_dir.parent)
    data = load_dataset(tiny_dir.name, dataset="custom")
    assert Path(data.source) == tiny_dir and Path(data.source).is_absolute()
