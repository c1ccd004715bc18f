"""The ``sgemm_`` torch itself links (MKL on x86), callable from numba kernels.

Compiled loops that multiply matrices call the very routine ``torch.mm`` uses, so their
products are bit-identical to torch's and run at MKL's speed: :func:`mm` is row-major
``c = op(a) @ op(b) + beta * c`` on numpy arrays inside a numba function.

``one_thread`` runs such a kernel with MKL on one thread in the calling thread only: a kernel
that splits a batch over threads of its own must not have each sgemm call start an OpenMP team
as well (two teams on two cores take turns). Where the MKL symbols are missing (another BLAS),
``AVAILABLE`` is False and callers take torch's ops.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import torch

from fmnist._numba import jit as _jit
from fmnist._numba import load as _load_numba


def _libtorch() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    except OSError:  # pragma: no cover - other platforms / builds
        return None


def _address(lib: ctypes.CDLL | None, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value if lib is not None else None
    except AttributeError:  # pragma: no cover - a torch without MKL
        return None


_LIB = _libtorch()
numba = _load_numba()
_SGEMM = _address(_LIB, "sgemm_") if numba is not None else None
AVAILABLE = _SGEMM is not None

# MKL's per-thread thread count (the Fortran-named entry points take a pointer; this one an int).
_set_local = getattr(_LIB, "MKL_Set_Num_Threads_Local", None) if AVAILABLE else None
if _set_local is not None:
    _set_local.argtypes = [ctypes.c_int]
    _set_local.restype = ctypes.c_int
ONE_THREAD = _set_local is not None


def mm_scratch(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mm``'s scratch (``ints``, ``chars``, ``flts``) for ``count`` threads, a row each: one per
    slice of a batch whose kernels call ``mm`` concurrently."""
    return (np.empty((count, 8), np.int32), np.empty((count, 4), np.uint8), np.empty((count, 4), np.float32))


def one_thread(kernel, *args):
    """``kernel(*args)`` with MKL confined to one thread in this thread, as it was afterwards."""
    before = _set_local(1)
    try:
        return kernel(*args)
    finally:
        _set_local(before)


if AVAILABLE:
    import llvmlite.binding as _llvm
    from numba import types as _t

    # Bound by name at link time, so the compiled code is cacheable (cache=True) across processes.
    _llvm.add_symbol("sgemm_", _SGEMM)
    _vp = _t.voidptr
    _sgemm = _t.ExternalFunction("sgemm_", _t.void(*[_vp] * 13))

    @_jit
    def mm(a, ta, b, tb, c, beta, ints, chars, flts):  # pragma: no cover - compiled
        """Row-major ``c = op(a) @ op(b) + beta * c`` through column-major sgemm (c^T = op(b)^T op(a)^T).

        Every matrix must be C-contiguous (a row's stride is its length). ``ints`` (6+ int32), ``chars`` (2+ uint8) and
        ``flts`` (2+ float32) are scratch for sgemm's by-reference arguments.
        """
        m, n = c.shape
        ints[0] = n
        ints[1] = m
        ints[2] = a.shape[0] if ta else a.shape[1]
        ints[3] = b.shape[1]
        ints[4] = a.shape[1]
        ints[5] = n
        chars[0] = 84 if tb else 78  # 'T' / 'N'
        chars[1] = 84 if ta else 78
        flts[0] = 1.0
        flts[1] = beta
        _sgemm(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
               flts[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, flts[1:].ctypes,
               c.ctypes, ints[5:].ctypes)
else:
    mm = None
