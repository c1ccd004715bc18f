from pathlib import Path

import numpy as np
import pytest

from fmnist.data import _load, _npycache, _sources, cache_root, load_dataset
from fmnist.data.idx import write_idx
from fmnist.errors import DataError


@pytest.fixture
def places(tmp_path, monkeypatch, make_arrays, make_folder):
    """Four complete folders, told apart by their training-set size."""
    dirs = {
        "argument": tmp_path / "arg",
        "FMNIST_DATA": tmp_path / "env",
        "cache": tmp_path / "cache",  # FMNIST_CACHE, set by the autouse fixture
        "debian": tmp_path / "debian",
    }
    for i, folder in enumerate(dirs.values()):
        make_folder(folder, make_arrays(n_train=11 + i), gz=i % 2 == 0)
    monkeypatch.setenv("FMNIST_DATA", str(dirs["FMNIST_DATA"]))
    monkeypatch.setattr(_sources, "DEBIAN_DIR", dirs["debian"])
    return dirs


def test_discovery_order(places, monkeypatch):
    def found(**kw):
        ds = load_dataset(dataset="custom", **kw)
        assert ds.source == places[ds.origin]
        assert len(ds.x_train) == 11 + list(places).index(ds.origin)
        return ds.origin

    assert found(data_dir=places["argument"]) == "argument"
    assert found() == "FMNIST_DATA"
    monkeypatch.delenv("FMNIST_DATA")
    assert found() == "cache"
    for f in places["cache"].glob("train-images*"):
        f.unlink()  # an incomplete cache folder is passed over
    ds = load_dataset(dataset="custom")
    assert ds.origin == "debian"
    assert ds.searched == (str(places["cache"]), str(places["debian"]))


@pytest.mark.parametrize("bad", ["missing", "incomplete"])
def test_bad_explicit_folder_is_an_error(places, bad):
    folder = places["argument"]
    if bad == "missing":
        folder = folder.parent / "nope"
    else:
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        # FMNIST_DATA, cache and debian folders are fine, but the caller asked for this one.
        load_dataset(folder, dataset="custom")
    msg = str(err.value)
    assert "\n" not in msg and str(folder) in msg and "data_dir" in msg
    assert "--data-dir" in err.value.cli_message and "data_dir" not in err.value.cli_message
    assert ("no such folder" if bad == "missing" else "missing t10k-labels-idx1-ubyte[.gz]") in msg


def test_files_under_other_names_are_named_with_the_renames_that_fix_them(tmp_path, make_arrays):
    folder = tmp_path / "emnist"
    folder.mkdir()
    arrays = make_arrays()
    names = {"train-images-idx3-ubyte": "emnist-letters-train-images-idx3-ubyte.gz",
             "train-labels-idx1-ubyte": "emnist-letters-train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte": "emnist-letters-test-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte": "t10k_labels_idx1_ubyte"}
    for name, other in names.items():
        write_idx(folder / other, arrays[name])
    (folder / "README.txt").write_text("not data")
    with pytest.raises(DataError) as err:
        load_dataset(folder, dataset="custom")
    assert err.value.cli_message == (
        f"{folder} (--data-dir): missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]; fmnist reads these names only: rename "
        "emnist-letters-train-images-idx3-ubyte.gz to train-images-idx3-ubyte.gz, "
        "emnist-letters-train-labels-idx1-ubyte.gz to train-labels-idx1-ubyte.gz, "
        "emnist-letters-test-images-idx3-ubyte.gz to t10k-images-idx3-ubyte.gz, "
        "t10k_labels_idx1_ubyte to t10k-labels-idx1-ubyte")
    for name, other in names.items():  # and doing what it says works
        (folder / other).rename(folder / (name + ".gz" if other.endswith(".gz") else name))
    assert load_dataset(folder, dataset="custom").x_train.shape == (20, 28, 28)


def test_bad_fmnist_data_is_an_error(places, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"empty \(FMNIST_DATA\): no such folder; point FMNIST_"):
        load_dataset(dataset="custom")


def test_nothing_found(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("Fashion-MNIST not found (searched ")
    assert str(tmp_path / "cache") in msg and str(tmp_path / "no-debian") in msg
    assert "fetch=True" in msg and "sudo apt-get install dataset-fashion-mnist" in msg  # Python's words...
    assert "`fmnist data --fetch`" in err.value.cli_message and "fetch=True" not in err.value.cli_message  # the CLI's


def test_cache_root(monkeypatch, tmp_path):
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("FMNIST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "fmnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "fmnist"


def test_gz_and_identical_raw_load(tmp_path, make_arrays, make_folder):
    folder = tmp_path / "both"
    arrays = make_folder(folder, make_arrays(seed=1))
    make_folder(folder, arrays, gz=False)
    files, missing = _sources.find_files(folder)
    assert not missing and all(p.suffix == ".gz" for p in files.values())
    ds = load_dataset(folder, dataset="custom")
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])


@pytest.mark.parametrize("dataset", ["custom", "fashion-mnist"])
def test_gz_and_edited_raw_are_refused_naming_both(tiny, dataset):
    # A user decompressed the labels and fixed some: reading the .gz would drop the fix unseen.
    folder, arrays = tiny
    labels = arrays["train-labels-idx1-ubyte"].copy()
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    load_dataset(folder, dataset=dataset)  # identical twins are fine, and fill the cache
    _npycache.wait()
    labels[3] = 7
    write_idx(folder / "train-labels-idx1-ubyte", labels)  # same size, other content
    with pytest.raises(DataError) as err:
        load_dataset(folder, dataset=dataset)
    msg = str(err.value)
    assert "\n" not in msg and "hold different content" in msg
    assert str(folder / "train-labels-idx1-ubyte.gz") in msg and str(folder / "train-labels-idx1-ubyte ") in msg


def test_twin_of_another_size_is_refused_without_hashing(tiny, monkeypatch):
    folder, arrays = tiny
    write_idx(folder / "t10k-images-idx3-ubyte", arrays["t10k-images-idx3-ubyte"][:5])
    hashed = []
    monkeypatch.setattr(_load, "_sha256", lambda path: hashed.append(path))
    with pytest.raises(DataError, match="hold different content"):
        load_dataset(folder, dataset="custom")
    assert hashed == []


def test_debian_dir_constant_is_the_package_path():
    from fmnist.data import DEBIAN_DIR

    assert DEBIAN_DIR == Path("/usr/share/datasets/fashion-mnist")
