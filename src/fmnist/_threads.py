"""How many CPU threads this process should compute with, and OpenMP waiting politely.

Why: torch's CPU kernels run on an OpenMP team (GNU libgomp in the PyPI wheels). By default
a member that finishes its share spins for a while before it sleeps, waiting for the next
op. On cores shared with another busy job that spinning takes the CPU from the member the
others wait for: every op stalls until the scheduler comes round. ``wait_politely`` asks
libgomp to sleep at once instead; it only takes effect if it runs before libgomp is loaded
(before ``import torch``), which is why ``import fmnist`` calls it.

The thread count follows what the process may use: its CPU affinity (``taskset``, a
container's cpuset, a Ray trial's allotment), or ``OMP_NUM_THREADS`` when that is set, or an
explicit request (``TrainConfig.threads``, ``fmnist train --threads``), held to those CPUs.
Torch-free: the CLI imports this at start-up.
"""

from __future__ import annotations

import contextlib
import os

from fmnist._text import plural
from fmnist.errors import UsageError, option


def wait_politely() -> None:
    """Make OpenMP threads sleep, not spin, between ops, unless the user chose a policy.

    ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` are read once, when libgomp loads; a user's own
    setting of either wins. ``FMNIST_OMP_SPIN=1`` keeps libgomp's default spinning (a machine
    with cores to spare may gain a little from it).
    """
    if os.environ.get("FMNIST_OMP_SPIN") or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(requested: int | None = None) -> int:
    """Threads to compute with: ``requested``, else ``OMP_NUM_THREADS``, else :func:`available_cpus`.

    A malformed ``OMP_NUM_THREADS`` (``"4,2"`` is valid OpenMP for nested teams: its first
    number counts) falls back to the affinity; ``requested`` below 1 is a usage error.
    ``requested`` or ``OMP_NUM_THREADS`` above the CPUs this process may use is held to them:
    more threads only take turns on the same cores, and OpenMP cannot start tens of thousands
    (the process dies in its first parallel op). Held, not refused: this runs where the
    training does, so a run resumed on a smaller machine, a trial on a smaller node, or a
    shell whose ``OMP_NUM_THREADS`` was set for another machine keeps going on what is there
    (:func:`check_threads` refuses an explicit request before a command starts).
    """
    if requested is not None:
        _check_whole(requested)
        return min(requested, available_cpus())
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        return min(int(env), available_cpus())
    return available_cpus()


def check_threads(requested: int) -> None:
    """Refuse a thread count this process could not use: below 1, or above :func:`available_cpus`."""
    _check_whole(requested)
    cpus = available_cpus()
    if requested > cpus:
        raise UsageError(f"{option('threads', requested)}: this process may use {plural(cpus, 'CPU')}; "
                         f"ask for at most {cpus}, or leave {option('threads')} out to use them all")


def _check_whole(requested: object) -> None:
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise UsageError(f"{option('threads')} must be a whole number of at least 1, got {requested!r}")


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads, then restore the process's setting."""
    import torch

    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
