"""``fmnist serve``: a prediction page and JSON API for a trained model, on uvicorn.

    >>> from fmnist.serve import create_app, Settings
    >>> app = create_app("runs/cnn-book", Settings(max_upload=5_000_000))   # an ASGI app
    >>> serve("runs/cnn-book", port=8000)                                    # runs until Ctrl-C

FastAPI, Starlette and uvicorn are imported here, not by ``import fmnist``: the rest of the
command line does not pay for them.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["Settings", "ServedModel", "create_app", "load_served", "serve"]

# A worker process (--workers N) rebuilds the app from these: uvicorn starts workers by import.
# The parent's id: a worker started after its parent died ends at once (_end_with_parent).
_ENV_MODEL, _ENV_SETTINGS, _ENV_PARENT = "FMNIST_SERVE_MODEL", "FMNIST_SERVE_SETTINGS", "FMNIST_SERVE_PARENT"


def __getattr__(name: str):
    if name in ("Settings", "ServedModel", "create_app", "load_served"):
        from fmnist.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'fmnist.serve' has no attribute {name!r}")


def _require() -> None:
    from fmnist.errors import FmnistError

    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise FmnistError(f"fmnist serve needs {exc.name}, which is not installed: "
                          "pip install 'fmnist[serve]' (or make install)") from None


def _print_network(urls: list[str]) -> None:
    print("from another machine on this network (a phone):", ", ".join(urls))


def serve(model_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          settings=None, on_ready: Callable[[str], None] = print,
          on_network: Callable[[list[str]], None] = _print_network) -> None:
    """Serve ``model_path`` (a run or model folder) until Ctrl-C or SIGTERM (with one worker: KeyboardInterrupt
    after a clean stop).

    ``on_ready(url)`` is called once the server listens (``port=0``: a free port, in the
    URL; for every address, ``0.0.0.0`` or ``::``, this machine's own loopback URL). Then, for
    every address only, ``on_network(urls)``: the URLs another machine may use, this machine's
    network addresses (or its name when none is found). The model is loaded and checked before
    anything listens, so a bad folder is one error line, not a crashed worker. ``workers > 1``:
    that many processes, each with its own copy of the model, sharing the port; at most the
    CPUs this process may use. The workers end with the server, however it ends.
    """
    import uvicorn

    from fmnist._text import plural
    from fmnist._threads import available_cpus
    from fmnist.errors import UsageError, option
    from fmnist.serve.app import Settings, create_app, load_served

    _require()
    _quiet_cancellations()
    if workers < 1:
        raise UsageError(f"{option('workers')} must be at least 1, got {workers}")
    # A worker computes on a CPU at a time and holds torch and the model in memory: more
    # workers than CPUs answer no faster, and hundreds fill the memory while they start (the
    # supervisor, starting them one by one, heeds Ctrl-C and SIGTERM only once all have started).
    cpus = available_cpus()
    if workers > cpus:
        raise UsageError(f"{option('workers', workers)}: this process may use {plural(cpus, 'CPU')}, "
                         f"and more workers than CPUs answer no faster, each holding its own model in memory; "
                         f"ask for at most {cpus}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {port}")
    settings = settings or Settings()
    served = load_served(model_path)
    # uvicorn's own bound on open connections: those the app can queue, plus room for /api/health.
    # NO_COLOR (no-color.org): uvicorn's log lines without their ANSI colours on a terminal too.
    common = dict(host=host, port=port, log_level="warning", timeout_graceful_shutdown=5, server_header=False,
                  limit_concurrency=settings.concurrency + settings.queue_size + 16,
                  use_colors=False if os.environ.get("NO_COLOR") else None)
    if workers > 1:
        # Workers start by import and rebuild the app from these.
        os.environ[_ENV_MODEL] = str(Path(model_path).resolve())
        os.environ[_ENV_SETTINGS] = json.dumps(_settings_dict(settings))
        os.environ[_ENV_PARENT] = str(os.getpid())
        config = uvicorn.Config("fmnist.serve:_app_from_environment", factory=True, workers=workers, **common)
    else:
        config = uvicorn.Config(create_app(served, settings), **common)
    # The socket is ours, bound and listening before the URL is shown: a taken port or an unknown
    # host is one error line (uvicorn logs it and exits 3), and a client that connects while the
    # workers start waits in the backlog instead of being refused.
    sock = _listen(host, port, config.backlog)
    try:
        bound = sock.getsockname()[1]
        on_ready(_url(host, bound))
        if _every_address(host):
            on_network(_network_urls(sock, bound))
        if workers == 1:
            with _sigterm_as_ctrl_c():
                uvicorn.Server(config).run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        # uvicorn 0.51 dropped Multiprocess's ``target`` (each worker builds its own Server);
        # before it, the argument was required.
        takes_target = "target" in inspect.signature(Multiprocess).parameters
        extra = {"target": uvicorn.Server(config).run} if takes_target else {}
        Multiprocess(config, sockets=[sock], **extra).run()
    finally:
        sock.close()


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM stops one server process as Ctrl-C does, ending in KeyboardInterrupt, not death.

    uvicorn stops cleanly on SIGTERM, then raises it again with the handler it found: Python's
    default one kills the process (exit 143, no closing line), where ``--workers N``'s supervisor
    returns. A handler of the process's own is left in place.
    """
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _CancelledAtShutdown(logging.Filter):
    """Drops the tracebacks of a stop, which say nothing the stop itself does not.

    uvicorn cancels a request still running when its grace period after Ctrl-C ends, then logs
    the cancellation as an application error with its whole traceback (58 lines, after its own
    one-line "Cancel 1 running task(s)"). A second Ctrl-C stops the server without shutting
    the application down: the event loop's end cancels it, Starlette sends the formatted
    traceback (KeyboardInterrupt, then CancelledError, ~40 lines) as the text of its
    "shutdown failed" message, and uvicorn logs that text as the message itself, without
    ``exc_info``. Either record is dropped; a traceback ending in any other exception (an
    application's shutdown code that fails) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        import asyncio

        if record.exc_info:
            return not isinstance(record.exc_info[1], asyncio.CancelledError)
        message = record.getMessage()
        if not message.startswith("Traceback (most recent call last):"):
            return True
        raised = message.rstrip().rsplit("\n", 1)[-1].split(":", 1)[0]
        cancelled = f"{asyncio.CancelledError.__module__}.{asyncio.CancelledError.__qualname__}"
        return raised not in ("KeyboardInterrupt", cancelled)


def _quiet_cancellations() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CancelledAtShutdown) for f in logger.filters):
        logger.addFilter(_CancelledAtShutdown())


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    from fmnist.errors import FmnistError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # the port taken, the host unknown or not this machine's
        sock.close()
        raise FmnistError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port "
                          "(0 picks a free one) or --host") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _every_address(host: str) -> bool:
    import ipaddress

    try:
        return host == "" or ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name
        return False


def _url(host: str, port: int) -> str:
    """The URL a browser on this machine opens; listening on every address, the loopback one's."""
    if _every_address(host):
        host = "::1" if ":" in host else "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _network_urls(sock: socket.socket, port: int) -> list[str]:
    """The URLs of this machine's network addresses that ``sock`` (bound to every address) answers on.

    Found without sending anything: connecting a UDP socket sends no packet, it only picks the
    address of the interface a packet to a documentation address (TEST-NET, 2001:db8::) would
    leave by, the default route's; failing that, the addresses this machine's name resolves to. Loopback and
    IPv6 link-local addresses are left out (a phone cannot use them); an IPv6 socket that also
    takes IPv4 gets both kinds. None found: the machine's name, which a local DNS or mDNS may know.
    """
    import ipaddress

    families = [sock.family]
    if sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
        families.append(socket.AF_INET)
    found: list[str] = []
    for family in families:
        probe = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect(probe)
                found.append(udp.getsockname()[0])
        except OSError:  # no route for that family: no such address to offer
            pass
    if not found:
        try:
            found = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                     if info[0] in families]
        except OSError:
            pass
    urls = []
    for address in found:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback or ip.is_unspecified or ip.is_link_local:
            continue
        url = _url(str(ip), port)
        if url not in urls:
            urls.append(url)
    return urls or [f"http://{socket.gethostname()}:{port}/"]


def _settings_dict(settings) -> dict:
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}


def _app_from_environment():
    """The app of one worker process of ``serve(..., workers=N)``."""
    from fmnist.serve.app import Settings, create_app

    _end_with_parent()
    _quiet_cancellations()  # a worker logs its own stop: Ctrl-C in a terminal reaches every worker too
    raw = json.loads(os.environ[_ENV_SETTINGS])
    raw["cors_origins"] = tuple(raw.get("cors_origins", ()))
    return create_app(os.environ[_ENV_MODEL], Settings(**raw))


def _end_with_parent() -> None:
    """Have this worker receive SIGTERM (uvicorn's cue to stop) when the server's process ends.

    uvicorn's supervisor stops its workers when it is asked to; one killed outright (SIGKILL,
    the out-of-memory killer) leaves them running, each holding a model, with nothing to stop
    them. Linux signals a process whose parent has died where it asked to be (PR_SET_PDEATHSIG);
    elsewhere this does nothing.
    """
    import signal

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # a libc without prctl: the supervisor's own stop still holds
        return
    # A parent that died before the request was made is not signalled for: this worker has a new parent by now.
    if str(os.getppid()) != os.environ.get(_ENV_PARENT, str(os.getppid())):
        os.kill(os.getpid(), signal.SIGTERM)
