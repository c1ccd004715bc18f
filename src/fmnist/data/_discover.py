"""Finding the data: the documented search order, and a download when one is asked for."""

from __future__ import annotations

import os
from pathlib import Path

from fmnist.data import _sources
from fmnist.data._download import fetch as download
from fmnist.errors import DataError, option


def discover(data_dir, *, fetch: bool, dataset: str):
    """Find a folder holding the four files, in the documented order.

    Returns ``(folder, origin, files, searched)``. An explicit ``data_dir`` or
    ``$FMNIST_DATA`` that does not hold the files is an error, never silently skipped:
    the user asked for that place.
    """
    searched: list[str] = []
    if data_dir is not None:
        explicit = ("argument", Path(data_dir).expanduser(), option("data_dir"))
    elif os.environ.get("FMNIST_DATA"):
        explicit = ("FMNIST_DATA", Path(os.environ["FMNIST_DATA"]).expanduser(), "FMNIST_DATA")
    else:
        explicit = None
    if explicit is not None:
        origin, folder, label = explicit
        searched.append(str(folder))
        files, missing = _sources.find_files(folder)
        if not missing:
            return folder, origin, files, searched
        if fetch and dataset == "fashion-mnist":
            download(folder)
            return folder, "download", _sources.find_files(folder)[0], searched
        problem = ("a file, not a folder" if folder.is_file() else "no such folder" if not folder.is_dir()
                   else "missing " + ", ".join(f"{m}[.gz]" for m in missing))
        fix = f"point {label} at a folder holding the four MNIST-format files"
        if dataset == "fashion-mnist":
            fix += f", or download them there with {option('fetch', True)}"
        raise DataError(f"{folder} ({label}): {problem}; {fix}")

    for origin, folder in (("cache", _sources.cache_root()), ("debian", _sources.DEBIAN_DIR)):
        searched.append(str(folder))
        files, missing = _sources.find_files(folder)
        if not missing:
            return folder, origin, files, searched

    if fetch and dataset == "fashion-mnist":
        folder = download(_sources.cache_root())
        return folder, "download", _sources.find_files(folder)[0], searched
    what = "Fashion-MNIST" if dataset == "fashion-mnist" else "MNIST-format data"
    how = (_sources.HOW_TO_GET if dataset == "fashion-mnist"
           else f"pass {option('data_dir')} or set FMNIST_DATA")
    raise DataError(f"{what} not found (searched {', '.join(searched)}); {how}")
