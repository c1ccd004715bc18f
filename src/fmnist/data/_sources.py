"""Where Fashion-MNIST comes from: the files table, the mirrors, and the places to look for it.

Tables only; the search itself (which may download) is in ``_discover``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmnist.errors import spelled

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: (name, SHA-256 of the *decompressed* file). Digests are of the IDX content, not of the
#: .gz, because redistributors (Debian) recompress the files and change the .gz bytes.
FILES = (
    ("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
)
SHA256 = dict(FILES)

#: Tried in order; each serves ``<name>.gz`` for every name in FILES.
MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: Where the Debian package dataset-fashion-mnist installs the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

HOW_TO_GET = (f"download it with {spelled('fetch=True', '`fmnist data --fetch`')} "
              "or `sudo apt-get install dataset-fashion-mnist`")


def cache_root() -> Path:
    """The user cache folder: ``$FMNIST_CACHE``, else ``$XDG_CACHE_HOME/fmnist``, else
    ``~/.cache/fmnist``. Downloads land here; the ``npy/`` fast-path cache lives below it."""
    if os.environ.get("FMNIST_CACHE"):
        return Path(os.environ["FMNIST_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fmnist"


def find_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each file name in FILES to its path in ``folder``; also return the missing names.

    ``name.gz`` is preferred over an uncompressed ``name``: it is the form that is
    distributed and that ``fetch`` writes, so a refetch always replaces the file read.
    When both are there, the load checks that they hold the same content (see :func:`twin`).
    """
    found, missing = {}, []
    for name, _ in FILES:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def twin(path: Path) -> Path | None:
    """The uncompressed file beside ``path`` when ``path`` is ``name.gz`` and both exist.

    Someone who decompressed a file and edited it (fixed some labels) expects the edit to be
    read; only ``name.gz`` is, so the two must hold the same content to be loaded.
    """
    if not path.name.endswith(".gz"):
        return None
    raw = path.with_name(path.name[:-3])
    return raw if raw.is_file() else None
