"""Ray, started once per command: a local instance by default, an existing cluster when asked.

Ray is an optional dependency (the ``sweep`` extra): ``import fmnist`` and the command line's
start-up never import it, and a command that needs it without it says what to install.

Ray is loud by default (start-up banners, every worker's output forwarded to the terminal, a
dashboard); the commands built on it print their own one line per trial, so Ray is started
quiet and the log folder it writes to instead is reported (:attr:`ClusterInfo.log_dir`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fmnist.errors import FmnistError, UsageError

INSTALL_HINT = "pip install 'fmnist[sweep]' (or `make install` in a clone of fmnist)"


def require_ray():
    """Import Ray and Ray Tune, or raise a one-line :class:`FmnistError` saying what to install."""
    try:
        import ray
        import ray.tune  # noqa: F401  (the commands need Tune, not only Ray core)
    except ImportError as exc:
        missing = exc.name or "ray"
        raise FmnistError(f"this command needs Ray Tune, and {missing!r} cannot be imported: "
                          f"{INSTALL_HINT}") from None
    return ray


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ClusterInfo:
    """The Ray a command runs on.

    ``address`` is the cluster's GCS address (``host:port``), ``nodes`` the live nodes, ``cpus``
    their CPUs together, ``gpus`` their GPUs, ``log_dir`` where Ray writes its own and the workers' output, and
    ``owned`` whether :func:`start_ray` connected this process (so :func:`stop_ray` disconnects it)
    rather than finding Ray already connected (a notebook's own ``ray.init()``), ``local`` whether
    it started a new instance for this command rather than joining a cluster.
    """

    address: str
    nodes: int
    cpus: int
    log_dir: str
    owned: bool = True
    local: bool = False
    gpus: float = 0

    def to_json(self) -> dict[str, Any]:
        """What a results file records about the cluster (its GPUs where it has any)."""
        return {"address": self.address, "nodes": self.nodes, "cpus": self.cpus,
                **({"gpus": self.gpus} if self.gpus else {})}


def start_ray(address: str | None = None, num_cpus: int | None = None) -> ClusterInfo:
    """Connect this process to Ray, quietly; return what it runs on.

    ``address=None`` and no ``RAY_ADDRESS``: a new local instance with ``num_cpus`` CPUs (default:
    the cores this process may use). Ray's own default would join the last cluster started on this
    machine instead, so a stray ``ray start`` would silently take the work: ``"local"`` is asked for.
    ``address="auto"`` or ``"host:port"`` (or ``RAY_ADDRESS``): join that existing cluster; its
    CPUs are its own, so ``num_cpus`` is refused there. If this process is already connected
    (``ray.init()`` in a notebook, or a test session's instance), that Ray is used as it is.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and num_cpus is not None:
        raise UsageError(f"--address {address}: a cluster's CPUs are set when it is started "
                         "(`ray start --num-cpus N`); leave out the CPU count, or the address")
    ray = require_ray()
    if ray.is_initialized():
        return _describe(ray, owned=False, local=False)
    if address is None:
        num_cpus = num_cpus or usable_cpus()
    check_address(address)
    # No telemetry from a command-line tool unless the user opted in; this also saves its
    # start-up message.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray announces its token authentication on every start or join (a warning, whatever the
    # logging level): only that logger is silenced. A cluster's operator hears about its
    # authentication from `ray start`.
    try:
        with _quieted("ray._private.authentication"):
            if address is not None and address != "auto" and _on_this_machine(address):
                _use_this_machines_token()
            with _own_sigterm():
                ray.init(address=address or "local", num_cpus=num_cpus, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise FmnistError(f"--address {address}: no Ray cluster reachable there, or it wants Ray's token "
                          f"authentication ({_first_line(exc)}); start one with `ray start --head`, set "
                          "RAY_AUTH_MODE=token with the cluster's token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) "
                          "for a cluster elsewhere, or leave out --address and RAY_ADDRESS for a local "
                          "instance") from None
    return _describe(ray, owned=True, local=address is None)


def check_address(address: str | None) -> None:
    """Refuse, in one line, a cluster address (``host:port``, or ``$RAY_ADDRESS``) that is no
    ``host:port``, or where nothing listens.

    Ray itself would retry for minutes, printing a warning for each try. Commands call this
    before they write anything, so a mistyped address leaves nothing behind to resume.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "auto" or "://" in address:  # Ray finds, or connects to, these itself
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected HOST:PORT, as `ray start --head` prints it (e.g. "
                         "127.0.0.1:6379), or auto")
    if not _listening(host, int(port)):
        raise FmnistError(f"--address {address}: nothing answers there; start a cluster with `ray start --head` "
                          "(it prints the address to give), or leave out --address and RAY_ADDRESS for a local "
                          "instance")


def _listening(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether something accepts TCP connections at ``host``:``port``."""
    import socket

    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def _on_this_machine(address: str) -> bool:
    """Whether ``host:port`` names this machine (a cluster `ray start --head` started here)."""
    import socket

    if "://" in address:  # a Ray Client address (ray://): Ray handles its own connection
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        from ray.util import get_node_ip_address

        here = {get_node_ip_address(), socket.gethostname(), socket.getfqdn()}
        return host in here or socket.gethostbyname(host) in here
    except OSError:
        return False


def _use_this_machines_token() -> None:
    """Turn on Ray's token authentication if this machine holds a token (and RAY_AUTH_MODE is unset).

    Ray's first local instance writes a token (~/.ray/auth_token), and every `ray start --head`
    after it requires that token; but Ray itself sends it only to a cluster it finds by itself
    (``address="auto"``), never to an address it is given, lest a token go to another machine's
    cluster. A cluster at this machine's own address is this machine's: the same token is its
    own, and without it joining fails after twenty seconds of retries.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def stop_ray(info: ClusterInfo) -> None:
    """Disconnect what :func:`start_ray` connected: a local instance stops, a cluster stays up."""
    if info.owned:
        require_ray().shutdown()


@contextlib.contextmanager
def as_finished(refs: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """``with as_finished(refs) as done: for ref in done:``: each task's ref as it finishes.

    Waits in short steps, so Ctrl-C gets through while tasks run. However the block is left
    (a task's error, an interruption), the tasks still queued or running are cancelled, also
    on a cluster that stays up.
    """
    import ray

    pending = list(refs)

    def finishing() -> Iterator[Any]:
        nonlocal pending
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            yield from ready

    try:
        yield finishing()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[ClusterInfo]:
    """``with ray_session(...) as cluster:``: :func:`start_ray`, then :func:`stop_ray` however it ends."""
    info = start_ray(address, num_cpus)
    try:
        yield info
    finally:
        stop_ray(info)


def _describe(ray, owned: bool, local: bool) -> ClusterInfo:
    from ray._private import worker  # the session folder has no public accessor in Ray 2.x

    node = worker.global_worker.node
    return ClusterInfo(
        address=node.gcs_address,
        nodes=sum(1 for n in ray.nodes() if n["Alive"]),
        cpus=int(ray.cluster_resources().get("CPU", 0)),
        log_dir=node.get_logs_dir_path(),
        owned=owned,
        local=local,
        gpus=ray.cluster_resources().get("GPU", 0),
    )


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler across ``ray.init``, which sets its own (``sys.exit``
    with no word): the command line stops on SIGTERM as on Ctrl-C, saying what is kept."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _quieted(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
