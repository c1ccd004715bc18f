"""Load Fashion-MNIST (or any MNIST-format folder), verified, with an ``.npy`` fast path."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist.data import _npycache
from fmnist.data._download import fetch as _fetch
from fmnist.data._discover import discover
from fmnist.data._sources import CLASS_NAMES, FILES, SHA256, find_files, twin
from fmnist.data.idx import _read_idx
from fmnist.errors import DataError, option, spelled

DATASETS = ("fashion-mnist", "custom")
# IDX file name -> Dataset attribute, in FILES order.
_ATTR = dict(zip((name for name, _ in FILES), _npycache.ARRAYS, strict=True))


@dataclass(frozen=True, eq=False)
class Dataset:
    """The four arrays of an MNIST-format dataset and where they came from.

    ``x_train`` (N, 28, 28) uint8 and ``y_train`` (N,) uint8; ``x_test``/``y_test`` likewise
    (Fashion-MNIST: N = 60000 and 10000). All four are ordinary writable in-memory arrays.
    ``source`` is the folder holding the IDX files; ``origin`` says how it was found
    ("argument", "FMNIST_DATA", "cache", "debian", "download"); ``verified`` is True when
    the files' SHA-256 digests were checked against the Fashion-MNIST release;
    ``from_cache`` is True when the arrays came from the ``.npy`` fast-path cache
    (``cache_dir``, None when the cache could not be written; a first load writes it in
    the background); ``searched`` lists the
    folders looked at, in order. ``class_names[i]`` names label ``i``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path
    origin: str
    verified: bool
    dataset: str
    from_cache: bool
    searched: tuple[str, ...] = ()
    class_names: tuple[str, ...] = CLASS_NAMES
    cache_dir: Path | None = field(default=None)

    def __repr__(self) -> str:  # the default would print four large arrays
        return (f"Dataset({self.dataset!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
                f"source={str(self.source)!r}, origin={self.origin!r}, verified={self.verified}, "
                f"from_cache={self.from_cache})")


def load_dataset(data_dir=None, *, fetch: bool = False, dataset: str = "fashion-mnist") -> Dataset:
    """Find, verify and load a dataset; see :class:`Dataset` for what is returned.

    Places searched, in order: ``data_dir``; ``$FMNIST_DATA``; the user cache
    (``$FMNIST_CACHE``, ``$XDG_CACHE_HOME/fmnist`` or ``~/.cache/fmnist``);
    ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist); then, only
    with ``fetch=True``, a download into the user cache. A folder counts when it holds
    the four files, gzip-compressed (``.gz``) or not; a file there in both forms must
    decompress to the same content.

    ``dataset="fashion-mnist"`` checks every file's SHA-256 against the official release;
    ``dataset="custom"`` accepts any MNIST-format folder (28×28 uint8 images, uint8
    labels, matching counts) and checks structure only.

    The first load decompresses and verifies the files (~0.4 s) and saves the arrays as
    ``.npy`` in the cache; later loads read those (tens of ms). Raises
    :class:`~fmnist.errors.DataError` with a one-line explanation when data is missing,
    corrupt, or not Fashion-MNIST.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; use 'fashion-mnist' (verified) or "
                        "'custom' (any MNIST-format folder)")
    folder, origin, files, searched = discover(data_dir, fetch=fetch, dataset=dataset)
    # Recorded in run.json and printed in hints: absolute, so that they hold from any folder.
    folder = Path(folder).absolute()
    fashion = dataset == "fashion-mnist"

    k = _npycache.key(files, dataset)
    hit = _npycache.load(k)
    if hit is not None:
        arrays, manifest = hit
        from_cache, verified = True, bool(manifest.get("verified"))
        cache_dir = _npycache.entry_dir(k)
    else:
        try:
            arrays = _read_folder(files, dataset, origin)
        except DataError:
            # Files we downloaded ourselves may be fetched again; a user's own folder is
            # theirs to fix, so the error goes to them.
            if not (fetch and fashion and origin in ("cache", "download")):
                raise
            _fetch(folder)  # replaces whatever is not intact
            files = find_files(folder)[0]
            arrays = _read_folder(files, dataset, origin)
        from_cache, verified = False, fashion
        cache_dir = _npycache.store(_npycache.key(files, dataset), arrays, background=True,
                                    verified=verified, dataset=dataset, source=str(folder))
        arrays = {name: np.array(arr) for name, arr in arrays.items()}  # writable, the caller's own

    if fashion:
        class_names = CLASS_NAMES
    else:
        n = int(max(arrays["y_train"].max(initial=0), arrays["y_test"].max(initial=0))) + 1
        class_names = tuple(str(i) for i in range(n))
    return Dataset(**arrays, source=folder, origin=origin, verified=verified, dataset=dataset,
                   from_cache=from_cache, searched=tuple(searched), class_names=class_names,
                   cache_dir=cache_dir)


def load_data(data_dir=None, *, fetch: bool = False, dataset: str = "fashion-mnist"):
    """Load Fashion-MNIST like ``keras.datasets.fashion_mnist.load_data()``, but verified.

    Returns ``((x_train, y_train), (x_test, y_test))``: uint8 arrays of shapes
    ``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)``, ``(10000,)``; labels are
    0..9, named by :data:`CLASS_NAMES`. Arguments as for :func:`load_dataset`.

    Example::

        >>> (x_train, y_train), (x_test, y_test) = load_data()
        >>> x_train.shape, y_train[:3]
        ((60000, 28, 28), array([9, 0, 0], dtype=uint8))
    """
    ds = load_dataset(data_dir, fetch=fetch, dataset=dataset)
    return (ds.x_train, ds.y_train), (ds.x_test, ds.y_test)


# How to load data that is not Fashion-MNIST, in the caller's words.
_CUSTOM = spelled("dataset='custom'", "--dataset custom")


def _read_folder(files: dict[str, Path], dataset: str, origin: str) -> dict[str, np.ndarray]:
    """Read and check the four IDX files found at ``origin``; return them keyed by Dataset attribute."""
    fashion = dataset == "fashion-mnist"
    fix = "replace it with an intact copy" + (_release_copy(origin) if fashion else "")
    arrays, digests = {}, {}
    for name, _ in FILES:
        # Read-only views of the decompressed bytes: load_dataset copies once for the caller
        # and hands these, unchanged, to the background cache writer.
        raw = twin(files[name])
        arr, digests[name] = _read_idx(files[name], digest=fashion or raw is not None, writable=False, fix=fix)
        if raw is not None:
            _check_twin(files[name], raw, arr, digests[name])
        _check_array(files[name], name, arr, fashion)
        arrays[_ATTR[name]] = arr
    # Structure before digests: "19 labels but 20 images" says more than "checksum mismatch".
    for prefix, split in (("train", "train"), ("t10k", "test")):
        xs, ys = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(xs) == 0:
            # Refused here, not after a training run that then cannot be scored or saved.
            use = "trains every model" if split == "train" else "scores every model (reported apart)"
            raise DataError(f"{files[f'{prefix}-images-idx3-ubyte']}: holds no images; the {split} set {use}, so "
                            "it needs at least one")
        if len(xs) != len(ys):
            images = files[f"{prefix}-images-idx3-ubyte"]
            raise DataError(f"{files[f'{prefix}-labels-idx1-ubyte']}: {len(ys)} labels but "
                            f"{images.name} has {len(xs)} images; use the label file that "
                            "belongs with those images")
    for name, _ in FILES:
        if fashion and digests[name] != SHA256[name]:
            raise DataError(
                f"{files[name]}: not the Fashion-MNIST file {name} (sha256 of its content "
                f"{digests[name][:12]}… expected {SHA256[name][:12]}…); replace it with the "
                f"release file{_release_copy(origin)}, or load other MNIST-format data with "
                f"{_CUSTOM}")
    return arrays


def _release_copy(origin: str) -> str:
    """Where a verified Fashion-MNIST file comes from, for a folder found at ``origin``: the end
    of "replace it with an intact copy".

    A fetch replaces damaged files only in fmnist's own cache: a user's folder (``data_dir``,
    ``$FMNIST_DATA``) is theirs to fix, and Debian's belongs to its package. So for those the
    way to a verified copy is another place, not a refetch.
    """
    get = spelled("load_dataset(fetch=True)", "`fmnist data --fetch`")
    if origin in ("cache", "download"):
        return f" ({get} downloads one again)"
    if origin == "debian":
        return " (`sudo apt-get install --reinstall dataset-fashion-mnist` restores one)"
    steps = [f"leave out {option('data_dir')}"] if origin == "argument" else []
    if os.environ.get("FMNIST_DATA"):  # else leaving out data_dir would only lead there
        steps.append("unset FMNIST_DATA")
    return f", or {' and '.join(steps)} to use fmnist's own verified copy ({get} downloads it)"


def _check_twin(gz: Path, raw: Path, arr: np.ndarray, sha: str) -> None:
    """Refuse ``gz`` when the uncompressed ``raw`` beside it holds other content.

    ``arr`` and ``sha`` are what ``gz`` decompressed to. The sizes settle most differences
    for free; only equal sizes cost reading and hashing ``raw``.
    """
    size = 4 + 4 * arr.ndim + arr.nbytes  # the IDX header, then the values
    try:
        same = raw.stat().st_size == size and _sha256(raw) == sha
    except OSError as err:
        raise DataError(f"{raw}: cannot read ({err.strerror or err}), so cannot check it holds what "
                        f"{gz.name} does; check its permissions, or remove whichever of the two "
                        "you do not mean to use") from None
    if not same:
        raise DataError(f"{gz} and {raw} are two forms of one file but hold different content; "
                        "remove or rename the one you do not mean to use")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_array(path: Path, name: str, arr: np.ndarray, fashion: bool) -> None:
    fix = "use the matching MNIST-format file"
    if "images" in name:
        if arr.ndim != 3:
            raise DataError(f"{path}: expected (N, 28, 28) uint8 images, found "
                            f"{arr.shape} {arr.dtype}; {fix}")
        # Other sizes and types are valid IDX, just not what the loader, the presets and the
        # commands are built for: say so, and what conversion makes the data fit.
        resize, convert = arr.shape[1:] != (28, 28), arr.dtype != np.uint8
        if resize or convert:
            todo = " and ".join(step for step, needed in (("resize them to 28×28", resize),
                                                          ("convert them to uint8 pixels 0..255", convert))
                                if needed)
            python = (", or in Python read them with fmnist.data.read_idx: NetClassifier fits other sizes"
                      if resize else "")
            raise DataError(f"{path}: {arr.shape[1]}×{arr.shape[2]} {arr.dtype} images, but fmnist loads "
                            f"datasets of 28×28 uint8 images only; {todo} (fmnist.data.write_idx writes "
                            f"the result){python}")
        return
    if arr.ndim != 1:
        raise DataError(f"{path}: expected (N,) uint8 labels, found {arr.shape} {arr.dtype}; {fix}")
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: {arr.dtype} labels, but fmnist loads uint8 labels only; convert them "
                        "to uint8 (fmnist.data.write_idx writes the result)")
    if fashion and arr.size and arr.max() > 9:
        bad = int(np.argmax(arr > 9))
        raise DataError(f"{path}: label {int(arr[bad])} at index {bad} is outside 0..9; not "
                        f"Fashion-MNIST labels (use {_CUSTOM} for other "
                        "label sets)")


def dataset_summary(ds: Dataset) -> dict:
    """Describe ``ds`` as a JSON-serialisable dict (plain ints, strs, lists, bools).

    Keys: dataset, source, origin, verified, from_cache, cache_dir, searched, class_names,
    first_train_labels (ten ints), and per split ("train", "test"): images_shape,
    labels_shape, dtype, classes and counts (as ``np.unique(y, return_counts=True)``).
    """
    out = {
        "dataset": ds.dataset,
        "source": str(ds.source),
        "origin": ds.origin,
        "verified": bool(ds.verified),
        "from_cache": bool(ds.from_cache),
        "cache_dir": str(ds.cache_dir) if ds.cache_dir else None,
        "searched": list(ds.searched),
        "class_names": list(ds.class_names),
        "first_train_labels": [int(v) for v in ds.y_train[:10]],
    }
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        classes, counts = np.unique(y, return_counts=True)
        out[split] = {"images_shape": list(x.shape), "labels_shape": list(y.shape),
                      "dtype": str(x.dtype), "classes": [int(c) for c in classes],
                      "counts": [int(c) for c in counts]}
    return out
