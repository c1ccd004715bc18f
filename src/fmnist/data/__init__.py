"""Fashion-MNIST, verified: find it, check it, load it fast.

    >>> from fmnist.data import load_data, CLASS_NAMES
    >>> (x_train, y_train), (x_test, y_test) = load_data()   # uint8, (60000, 28, 28) ...

Loading checks every file's structure and, for Fashion-MNIST, its SHA-256; problems raise
:class:`fmnist.errors.DataError` with one line naming the file and what to do.
"""

from fmnist.data._download import fetch
from fmnist.data._load import Dataset, dataset_summary, load_data, load_dataset
from fmnist.data._prep import SPLIT_SEED, VAL_SIZE, scale, split_indices, train_val_split
from fmnist.data._sources import CLASS_NAMES, DEBIAN_DIR, FILES, MIRRORS, cache_root
from fmnist.data.idx import read_idx, write_idx

__all__ = [
    "CLASS_NAMES", "DEBIAN_DIR", "FILES", "MIRRORS", "SPLIT_SEED", "VAL_SIZE", "Dataset", "cache_root", "dataset_summary",
    "fetch", "load_data", "load_dataset", "read_idx", "scale", "split_indices",
    "train_val_split", "write_idx",
]
