"""Keep freed memory in the process for reuse, instead of handing it back to the kernel each step.

Why: glibc's malloc serves large blocks (a conv layer's activations: megabytes) with mmap and
returns them on free, and trims the heap whenever enough is free at its top. A training step
allocates and frees the same large tensors every time, so every step faulted its pages in
afresh: measured on the 2-core machines (cnn-best, half an epoch): 1.4-1.7 million page
faults and ~4 s of kernel time, 15.4-17.1 s; with the thresholds raised, ~5,000 faults, no
kernel time, 12.8-14.3 s. The cost is that the process keeps its peak heap until it exits,
which is what a training process does anyway.

Process-wide and glibc-only; a no-op elsewhere, and with ``FMNIST_SYSTEM_MALLOC=1``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if they are raised."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and not os.environ.get("FMNIST_SYSTEM_MALLOC"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl and others: no mallopt, nothing to do
                return False
            # Some glibc versions cap the mmap threshold at 32 MiB: try larger first.
            mapped = any(mallopt(_M_MMAP_THRESHOLD, size) for size in (256 << 20, 32 << 20))
            _done = bool(mapped and mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _done
