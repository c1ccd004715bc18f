"""numba, the compiler of the hand-written CPU kernels: optional, and one switch for all of them.

``numba`` is the module, or None when it is not installed or ``FMNIST_NO_NUMBA=1`` is set (to
check the plain-torch paths, or to rule the kernels out when chasing a bug); every kernel's
caller then takes torch ops with the same arithmetic.
"""

from __future__ import annotations

import os

try:
    if os.environ.get("FMNIST_NO_NUMBA"):
        raise ImportError("disabled by FMNIST_NO_NUMBA")
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

AVAILABLE = numba is not None


def jit(fn):
    """Compile ``fn`` (cached on disk, GIL released), or None without numba.

    error_model="numpy": no ZeroDivisionError branch in the loops (it would block vectorising).
    """
    return numba.njit(cache=True, error_model="numpy", nogil=True)(fn) if AVAILABLE else None
