"""Download the Fashion-MNIST files: mirror by mirror, to a temporary file, verified, then renamed.

Modelled on torchvision's and scikit-learn's fetchers. A file is only ever visible under
its final name once its decompressed SHA-256 matches the table, so an interrupted or
corrupted download can never be mistaken for data.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from pathlib import Path

from fmnist._files import default_mode
from fmnist.data._sources import FILES, MIRRORS, SHA256, cache_root
from fmnist.data.idx import _read_idx
from fmnist.errors import DataError

ROUNDS = 3          # passes over the mirrors before giving up
BACKOFF_S = 2.0     # pause before the second pass; doubles each pass (tests set it to 0)
TIMEOUT_S = 30.0    # per connection / per read
# The largest file is ~26 MB compressed; anything far bigger is not what we asked for.
MAX_BYTES = 64 << 20
_CHUNK = 1 << 16


def is_intact(path: Path, sha256: str) -> bool:
    """True when ``path`` decompresses to a valid IDX file with the expected digest."""
    try:
        return _read_idx(path, digest=True)[1] == sha256
    except DataError:
        return False


def fetch(dest=None, *, mirrors=None, progress: bool | None = None) -> Path:
    """Download the four Fashion-MNIST ``.gz`` files into ``dest`` (default: the user cache).

    Files already there and intact are kept; missing or corrupt ones are downloaded again.
    ``mirrors`` defaults to :data:`MIRRORS` (base URLs, tried in order); ``progress=None``
    shows a tqdm bar only when stderr is a terminal. Returns ``dest``. Raises
    :class:`~fmnist.errors.DataError` when a file cannot be obtained from any mirror.
    """
    dest = Path(dest).expanduser() if dest is not None else cache_root()
    mirrors = tuple(mirrors) if mirrors is not None else MIRRORS
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{dest}: cannot create the download folder ({err.strerror or err}); "
                        "choose a writable folder or set FMNIST_CACHE") from None
    for name, _ in FILES:
        target = dest / f"{name}.gz"
        if target.is_file() and is_intact(target, SHA256[name]):
            continue
        _download_one(target, SHA256[name], mirrors, progress)
    return dest


def _download_one(target: Path, sha: str, mirrors, progress: bool) -> None:
    live = list(mirrors)
    last = "no mirrors given"
    for attempt in range(ROUNDS):
        if attempt and live:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        for base in list(live):
            url = base + target.name
            try:
                tmp = _download_to_temp(url, target, progress)
            except urllib.error.HTTPError as err:
                last = f"{url}: HTTP {err.code}"
                if 400 <= err.code < 500:
                    live.remove(base)  # the mirror does not have it; asking again won't help
                continue
            except (OSError, http.client.HTTPException, ValueError) as err:
                last = f"{url}: {getattr(err, 'reason', None) or err}"
                continue  # network trouble: worth another pass
            ok = False
            try:
                ok = is_intact(tmp, sha)
                if ok:
                    os.chmod(tmp, default_mode())  # mkstemp's 0600 would hide the data from colleagues
                    os.replace(tmp, target)
            finally:
                if not ok:
                    tmp.unlink(missing_ok=True)
            if ok:
                return
            last = f"{url}: content is not the Fashion-MNIST file (checksum mismatch)"
            live.remove(base)  # a mirror serving wrong bytes will serve them again
    last = " ".join(str(last).split())  # the error must stay one line
    raise DataError(f"{target}: download failed from all {len(mirrors)} mirrors (last: {last}); "
                    "check the network connection, or `sudo apt-get install dataset-fashion-mnist`")


def _download_to_temp(url: str, target: Path, progress: bool) -> Path:
    """Stream ``url`` into a temporary ``.part`` file next to ``target``; return its path."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part.gz")
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with _bar(progress, total, target.name) as bar:
                size = 0
                while chunk := resp.read(_CHUNK):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise ValueError(f"more than {MAX_BYTES} bytes, not a Fashion-MNIST file")
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            if total is not None and size != total:
                raise ValueError(f"connection closed after {size} of {total} bytes")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _bar(progress: bool, total, desc: str):
    if not progress:
        return nullcontext()
    from tqdm import tqdm  # imported here: only downloads need it

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, leave=False)
