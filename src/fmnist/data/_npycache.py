"""Fast-path cache: the four arrays of a verified load, saved as ``.npy`` under the user cache.

Layout: ``<cache_root>/npy/<key>/{x_train,y_train,x_test,y_test}.npy`` plus
``manifest.json``. The key hashes the source files' resolved paths, sizes and mtimes and
the dataset mode, so replacing or editing a source file starts a new entry. The manifest
records each array's shape, dtype and CRC-32 and is written last: an entry without a
readable manifest, or whose arrays disagree with it, is ignored and rebuilt from the
source files. The CRC costs ~15 ms for the train images, cheap next to decompression,
and keeps the cache from serving silently damaged data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
import zlib
from pathlib import Path

import numpy as np

from fmnist._files import process_ended
from fmnist.data._sources import cache_root, twin

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_FORMAT = "1"  # bump when the layout changes so old entries are simply not found


def key(files: dict[str, Path], dataset: str) -> str:
    h = hashlib.sha256(f"fmnist-npy-{_FORMAT}\0{dataset}\n".encode())
    for name in sorted(files):
        # An uncompressed twin beside a .gz must match it (checked on the slow path); keying
        # on it too means an edit to it is checked again instead of served from the cache.
        for path in filter(None, (files[name], twin(files[name]))):
            path = path.resolve()
            st = path.stat()
            # The change time and inode too: cp -p, rsync -t and tar keep a file's size and mtime,
            # and MNIST's files are the size of Fashion-MNIST's; a rewrite always moves ctime.
            h.update(f"{name}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n"
                     .encode())
    return h.hexdigest()[:20]


def entry_dir(k: str) -> Path:
    return cache_root() / "npy" / k


def load(k: str):
    """Return ``(arrays dict, manifest dict)`` for entry ``k``, or None if absent or damaged."""
    wait()  # an entry this process is still writing is about to exist: don't redo the slow path
    folder = entry_dir(k)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        arrays = {}
        for name in ARRAYS:
            meta = manifest["arrays"][name]
            arr = np.load(folder / f"{name}.npy", allow_pickle=False)
            if (list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]
                    or zlib.crc32(arr) != meta["crc32"]):
                return None
            arrays[name] = arr
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        # Missing, truncated or hand-edited entry: the caller takes the verified slow path
        # and rewrites it. json.JSONDecodeError is a ValueError.
        return None
    return arrays, manifest


def store(k: str, arrays: dict[str, np.ndarray], *, background: bool = False, **info) -> Path | None:
    """Write entry ``k`` atomically; return its folder, or None if the cache is not writable.

    The entry is assembled in a temporary folder and renamed into place, so readers see
    a complete entry or none. With ``background=True`` the writing (~0.2 s for the 55 MB of
    Fashion-MNIST, as long as decompressing it) happens in a thread, from the arrays as they
    are when read-only, else from a private copy, so the caller may change its own at once; the thread is not a daemon, so
    the interpreter finishes it before exiting, and :func:`wait` joins it.
    """
    folder = entry_dir(k)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkdtemp: its folders are 0700 whatever the umask, and the entry keeps
        # this folder's mode, so a cache shared with colleagues would be unreadable to them.
        # A plain mkdir follows the umask like any folder the user makes.
        tmp = _unfinished(folder)
        tmp.mkdir()
    except OSError:
        return None  # a read-only cache only costs speed, never correctness
    _remove_abandoned(folder.parent)
    if not background:
        return _fill(folder, tmp, arrays, info)
    # Read-only arrays cannot change under the writer; anything else is copied first.
    snapshot = {name: arrays[name] if not arrays[name].flags.writeable else np.array(arrays[name], copy=True)
                for name in ARRAYS}
    thread = threading.Thread(target=_fill, args=(folder, tmp, snapshot, info), name="fmnist-npy-cache")
    thread.start()
    _writers.append(thread)
    return folder


_writers: list[threading.Thread] = []

# The folders store() assembles an entry in, and _fill() moves a damaged entry into before
# removing it: .KEY.PID.HEX, so that one left by a killed process can be told from a live one's.
_UNFINISHED = re.compile(r"\.[0-9a-f]{20}\.(\d+)\.[0-9a-f]{8}")


def _unfinished(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _remove_abandoned(npy: Path) -> None:
    """Remove the folders of entry writes whose process was killed: each holds up to a whole
    dataset (55 MB for Fashion-MNIST) that nothing would ever read. A live writer's are left alone."""
    try:
        names = os.listdir(npy)
    except OSError:
        return
    for name in names:
        found = _UNFINISHED.fullmatch(name)
        if found and process_ended(int(found[1])):
            shutil.rmtree(npy / name, ignore_errors=True)


def wait() -> None:
    """Join the background cache writes this process started."""
    while _writers:
        _writers.pop().join()


def _fill(folder: Path, tmp: Path, arrays: dict[str, np.ndarray], info: dict) -> Path | None:
    try:
        meta = {}
        for name in ARRAYS:
            arr = np.ascontiguousarray(arrays[name])
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            meta[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str,
                          "crc32": zlib.crc32(arr)}
        (tmp / "manifest.json").write_text(json.dumps({"arrays": meta, **info}, indent=1))
        if folder.exists():  # a damaged entry under the same key: move it aside first
            stale = _unfinished(folder)
            stale.mkdir()
            os.replace(folder, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return folder
