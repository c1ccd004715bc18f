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
        renames = _renames(folder, missing) if folder.is_dir() else []
        if renames:
            fix = "fmnist reads these names only: rename " + ", ".join(renames)
        else:
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


def _renames(folder: Path, missing: list[str]) -> list[str]:
    """``"A to B"`` for each file in ``folder`` that looks like a missing one under another name.

    EMNIST ships ``emnist-letters-train-images-idx3-ubyte.gz`` and ``...-test-...``, some
    mirrors ``train-images.idx3-ubyte``: the same format, so renaming is all they need. A
    file is taken for ``train-images-idx3-ubyte`` when its name holds ``train-images``
    (``test-`` standing for ``t10k-``), whatever the separators.
    """
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    out = []
    for name in missing:
        split, kind = name.split("-")[:2]
        roles = [f"{s}-{kind}" for s in (("t10k", "test") if split == "t10k" else (split,))]
        like = [f for f in files
                if any(r in f.lower().replace(".", "-").replace("_", "-") for r in roles)]
        if like:
            compressed = {f.endswith(".gz") for f in like}
            gz = "[.gz]" if len(compressed) > 1 else ".gz" if True in compressed else ""
            which = like[0] if len(like) == 1 else "one of " + ", ".join(like)
            out.append(f"{which} to {name}{gz}")
    return out
