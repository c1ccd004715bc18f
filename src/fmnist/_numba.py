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


def ready() -> None:
    """Finish numba's own start-up now, not inside the first training's time.

    The first call of any compiled kernel in a process makes numba load its CPU target's
    registries (about 0.2 s of imports on 2 Zen 4 cores, 0.4 s with the kernel's cache load):
    the first model a process trained (a comparison's first run) was charged that, and
    compare's time column put it behind models that are not faster. A trainer calls this when
    it is built; later calls cost nothing.
    """
    if not AVAILABLE:
        return
    try:
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except (ImportError, AttributeError):  # another numba's internals: the first call does it then
        pass


def jit(fn):
    """Compile ``fn`` (cached on disk, GIL released), or None without numba.

    error_model="numpy": no ZeroDivisionError branch in the loops (it would block vectorising).
    """
    return load().njit(cache=True, error_model="numpy", nogil=True)(fn) if AVAILABLE else None
