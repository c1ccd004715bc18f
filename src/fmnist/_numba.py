"""numba, the compiler of the hand-written CPU kernels: optional, and one switch for all of them.

``AVAILABLE`` is False when numba is not installed or ``FMNIST_NO_NUMBA=1`` is set (to check
the plain-torch paths, or to rule the kernels out when chasing a bug); every kernel's caller
then takes torch ops with the same arithmetic. Asking costs nothing: numba itself (with
llvmlite and the scipy parts it pulls in, about half a second of CPU) is imported only by
:func:`load` and :func:`jit`, i.e. by the modules that define kernels, when they are imported.
"""

from __future__ import annotations

import importlib.util
import os

AVAILABLE = not os.environ.get("FMNIST_NO_NUMBA") and importlib.util.find_spec("numba") is not None


def load():
    """The numba module, or None when it is not available."""
    if not AVAILABLE:
        return None
    import numba

    return numba


def jit(fn):
    """Compile ``fn`` (cached on disk, GIL released), or None without numba.

    error_model="numpy": no ZeroDivisionError branch in the loops (it would block vectorising).
    """
    return load().njit(cache=True, error_model="numpy", nogil=True)(fn) if AVAILABLE else None
