"""Read and write IDX files, the format of MNIST, Fashion-MNIST and their relatives.

An IDX file is a header followed by a C-ordered array, big-endian::

    0x00 0x00 <type code> <ndim>   then ndim big-endian uint32 sizes   then the data

Files ending in ``.gz`` are gzip-compressed; anything else is read as raw IDX. Nothing in
the header is trusted: the claimed shape is checked against the bytes actually present
before any array of that size is allocated, so a damaged or hostile header fails fast
with a :class:`~fmnist.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import math
import os
import struct
from pathlib import Path

import numpy as np

from fmnist._files import write_bytes
from fmnist.errors import DataError

try:  # zlib-ng inflates the same format about twice as fast as CPython's zlib
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - depends on the environment
    import zlib as _zlib

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

#: IDX type code -> numpy dtype as stored (big-endian for multi-byte types).
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

# Deflate cannot expand data by more than ~1032:1, so a header that claims more than this
# many bytes per compressed byte is lying; refusing it up front avoids inflating a bomb.
_MAX_GZIP_RATIO = 1100

# Where an intact copy comes from depends on where the file came from, which only the
# caller knows (the data loader says; see its ``fix``), so the reader's own advice stays general.
_FIX = "replace it with an intact copy"


def _fail(path: Path, problem: str, fix: str = _FIX) -> DataError:
    return DataError(f"{path}: {problem}; {fix}")


class _Gunzip:
    """Bounded reads from gzip data held in memory (possibly several concatenated members).

    ``read(n)`` never inflates more than ``n`` bytes, so the caller decides how much
    memory a file may cost, based on what its header claims.
    """

    def __init__(self, data: bytes, path: Path, fix: str = _FIX):
        if data[:2] != b"\x1f\x8b":
            raise _fail(path, "not gzip data although the name ends in .gz",
                        "decompress it or drop the .gz suffix if it is raw IDX, else " + fix)
        self._path, self._fix = path, fix
        self._pending = data
        self._inflater = _zlib.decompressobj(wbits=31)  # 31: expect a gzip header + CRC

    def read(self, n: int) -> bytes:
        parts = []
        while n > 0:
            if self._inflater.eof:
                # Tape and block-device tools pad files with NUL bytes; gzip and Python's gzip
                # module skip them after a member, so a padded file reads here too.
                rest = self._inflater.unused_data.lstrip(b"\0")
                if not rest:
                    break  # true end of the compressed data
                # gzip allows concatenated members: inflate the next one.
                self._pending = rest
                self._inflater = _zlib.decompressobj(wbits=31)
            try:
                chunk = self._inflater.decompress(self._pending, n)
            except _zlib.error as err:
                raise _fail(self._path, f"corrupt gzip data ({err})", self._fix) from None
            self._pending = self._inflater.unconsumed_tail
            if not chunk and not self._pending and not self._inflater.eof:
                raise _fail(self._path, "gzip data ends early (truncated file or download)", self._fix)
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)


def _parse_header(path: Path, head4: bytes, fix: str = _FIX) -> tuple[np.dtype, int]:
    """Check the 4-byte prefix; return (stored dtype, ndim)."""
    if len(head4) < 4:
        raise _fail(path, f"only {len(head4)} bytes, too short for an IDX header", fix)
    if head4[:2] != b"\x00\x00":
        hint = " (looks gzip-compressed: name it .gz)" if head4[:2] == b"\x1f\x8b" else ""
        raise _fail(path, f"not an IDX file: magic bytes {head4[:2].hex(' ')}, "
                          f"expected 00 00{hint}", fix)
    code, ndim = head4[2], head4[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise _fail(path, f"unknown IDX type code 0x{code:02X} (known: {known})", fix)
    if ndim == 0:
        raise _fail(path, "IDX header declares 0 dimensions", fix)
    return IDX_DTYPES[code], ndim


def _read_idx(path: str | os.PathLike, *, digest: bool = False, writable: bool = True, fix: str = _FIX):
    """Read an IDX file; return ``(array, sha256 hex of the decompressed bytes or None)``.

    ``writable=False`` may return a read-only view of the decompressed bytes (no copy) when
    they are already in native byte order, as single bytes always are. ``fix`` ends the
    message of a damaged file: what to do about it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # compressed files are small; raw ones are what they are
    except FileNotFoundError:
        raise _fail(path, "no such file", "check the path") from None
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})", "check its permissions") from None

    compressed = path.name.endswith(".gz")
    if compressed:
        stream = _Gunzip(data, path, fix)
        head = stream.read(4)
        dtype, ndim = _parse_header(path, head, fix)
        head += stream.read(4 * ndim)
    else:
        dtype, ndim = _parse_header(path, data[:4], fix)
        head = data[: 4 + 4 * ndim]
    if len(head) < 4 + 4 * ndim:
        raise _fail(path, f"header declares {ndim} dimensions but the file ends inside it", fix)
    dims = struct.unpack(f">{ndim}I", head[4:])
    count = math.prod(dims)
    expected = count * dtype.itemsize
    shape = "×".join(map(str, dims))

    if compressed:
        if expected > _MAX_GZIP_RATIO * len(data) + 1024:
            raise _fail(path, f"header claims {shape} {dtype.name} values ({expected} bytes), "
                              f"more than {len(data)} compressed bytes can hold", fix)
        payload = stream.read(expected + 1)  # +1 reveals trailing garbage
        actual = len(payload)
    else:
        payload = memoryview(data)[len(head):]
        actual = len(payload)
    if actual < expected:
        raise _fail(path, f"truncated: header claims {shape} {dtype.name} values "
                          f"({expected} bytes) but only {actual} bytes follow", fix)
    if actual > expected:
        extra = "at least 1 extra byte" if compressed else f"{actual - expected} extra bytes"
        raise _fail(path, f"{extra} after the {shape} {dtype.name} values the header declares", fix)

    sha = None
    if digest:
        h = hashlib.sha256(head)
        h.update(payload)
        sha = h.hexdigest()
    # frombuffer views immutable bytes; astype copies into a normal writable array in
    # native byte order, which is what callers expect from a loader.
    array = np.frombuffer(payload, dtype=dtype, count=count).reshape(dims)
    if not writable and array.dtype.isnative:
        return array, sha
    return array.astype(dtype.newbyteorder("="), copy=True), sha


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed if the name ends in ``.gz``).

    Returns a writable, C-contiguous array in native byte order whose dtype follows the
    file's type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64) and whose shape is the header's, e.g. ``(60000, 28, 28)`` uint8 for
    ``train-images-idx3-ubyte.gz``.

    Raises :class:`~fmnist.errors.DataError` naming the file when the magic bytes, type
    code, dimensions, size or compression are wrong.
    """
    return _read_idx(path)[0]


def write_idx(path: str | os.PathLike, array, *, gzip: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically; return the path.

    ``gzip=None`` compresses when the name ends in ``.gz``. The dtype must be one IDX can
    hold (uint8, int8, int16, int32, float32, float64); values are written big-endian.
    The file appears complete or not at all: data goes to a temporary file in the same
    folder which then replaces ``path``.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(f"{path}: IDX cannot store dtype {array.dtype}; "
                        "convert to uint8, int8, int16, int32, float32 or float64")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise DataError(f"{path}: IDX cannot store shape {array.shape}; "
                        "use 1 to 255 dimensions of size < 2**32")
    if gzip is None:
        gzip = path.name.endswith(".gz")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + body
    if gzip:
        # mtime=0 makes the output reproducible: same array, same bytes.
        blob = _gzip.compress(blob, compresslevel=6, mtime=0)
    try:
        write_bytes(path, blob)
    except OSError as err:
        raise DataError(f"{path}: cannot write ({err.strerror or err}); "
                        "check that the folder exists and is writable") from None
    return path
