"""A real ``fmnist serve`` on 127.0.0.1: hostile uploads over real sockets, hundreds of clients, Ctrl-C."""

import asyncio
import io
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist._threads import available_cpus
from fmnist.cli.main import main
from fmnist.inference.predict import predict_files
from tests.conftest import learnable_images
from tests.serve.conftest import Server
from tests.serve.test_app import _hostile, jpeg


def _raw(url: str, request: bytes, then: list[bytes] = ()) -> tuple[int, dict]:
    """Send raw bytes to the server, then ``then`` chunk by chunk while it listens; its status and JSON body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(request)
        for chunk in then:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server has answered and closed: what we want to see
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            got = sock.recv(65536)
            if not got:
                break
            data += got
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_health_page_and_a_photo(server, tiny_run, tmp_path):
    assert httpx.get(server.url + "api/health").json()["model"] == "mlp-100"
    assert "<canvas" in httpx.get(server.url).text
    (tmp_path / "p.jpg").write_bytes(jpeg(7))
    expected = predict_files(tiny_run, [tmp_path / "p.jpg"]).predictions[0].to_dict()
    got = httpx.post(server.url + "api/predict", files={"file": ("p.jpg", jpeg(7), "image/jpeg")}, timeout=120)
    assert got.json()["predictions"] == [{**expected, "file": "p.jpg", "upload": 0}]


def test_declared_huge_upload_is_413_without_sending_it(server):
    head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 ** 12}\r\n\r\n").encode()
    status, body = _raw(server.url, head)
    assert status == 413 and "limit" in body["error"]


def test_chunked_upload_over_the_limit_is_cut_off(server):
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    start = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
    chunks = [b"%x\r\n%s\r\n" % (len(start), start)] + [b"%x\r\n%s\r\n" % (65536, b"y" * 65536)] * 100
    status, body = _raw(server.url, head, chunks)  # 6.5 MB offered, the limit is 2 MB
    assert status == 413 and "2,000,000-byte limit" in body["error"]


def test_hostile_uploads_each_get_a_4xx_json_and_the_server_stays_healthy(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for case, (name, data, words) in _hostile().items():
            r = client.post("/api/predict", files={"file": (name, data, "image/png")})
            assert 400 <= r.status_code < 500 and words in r.json()["error"], (case, r.status_code, r.text)
            assert client.get("/api/health").json()["status"] == "ok", case
        r = client.post("/api/predict", content=b"\x00" * 1000, headers={"content-type": "multipart/form-data"})
        assert r.status_code == 400 and "error" in r.json()
        assert client.post("/api/predict", files={"file": ("ok.jpg", jpeg(3), "image/jpeg")}).status_code == 200


def test_hundreds_of_concurrent_requests_are_all_answered(server):
    images = learnable_images(np.arange(300) % 10, seed=7)
    bodies = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "PNG")
        bodies.append(buf.getvalue())

    async def go():
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=600, limits=limits) as client:
            return await asyncio.gather(*(client.post("/api/predict", files={"file": (f"{i}.png", b, "image/png")})
                                          for i, b in enumerate(bodies)))

    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 300
    labels = [r.json()["predictions"][0]["label"] for r in responses]
    assert np.mean(np.array(labels) == np.arange(300) % 10) > 0.9
    assert httpx.get(server.url + "api/health").status_code == 200


def test_ctrl_c_stops_cleanly(tiny_run):
    server = Server(tiny_run)
    assert httpx.get(server.url + "api/health").status_code == 200
    assert server.stop() == 0
    err = "".join(server.stderr)
    assert "Traceback" not in err and "server stopped" in err
    parts = urlsplit(server.url)
    with socket.socket() as s:  # the port is free again
        assert s.connect_ex((parts.hostname, parts.port)) != 0


two_cpus = pytest.mark.skipif(available_cpus() < 2, reason="--workers 2 needs two CPUs")


@pytest.mark.parametrize("workers, signals", [
    ("1", [signal.SIGINT, signal.SIGINT]),  # Ctrl-C twice: the application is never told to shut down
    ("1", [signal.SIGTERM]),
    pytest.param("2", [signal.SIGINT, signal.SIGINT], marks=two_cpus),  # a terminal's Ctrl-C reaches every worker
], ids=["ctrl-c-twice", "sigterm", "ctrl-c-twice-2-workers"])
def test_every_stop_is_the_one_closing_line(tiny_run, workers, signals):
    server = Server(tiny_run, "--workers", workers)
    try:
        assert httpx.get(server.url + "api/health", timeout=120).status_code == 200
        group = [server.proc.pid, *(_children(server.proc.pid) if workers != "1" else [])]
        for sig in signals:
            for pid in group:
                os.kill(pid, sig)
            time.sleep(0.05)  # within the 0.1 s uvicorn waits before it shuts the application down
        assert server.proc.wait(60) == 0
        deadline = time.monotonic() + 10  # the reader thread may still hold the last lines
        while "server stopped" not in "".join(server.stderr) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    err = "".join(server.stderr)
    assert "Traceback" not in err and err.endswith("fmnist: server stopped\n"), err
    deadline = time.monotonic() + 60  # a worker may still be ending when the server has returned
    while _running(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _running(group)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_only_the_tracebacks_of_a_stop_are_dropped():
    from fmnist.serve import _CancelledAtShutdown

    def kept(message, exc_info=None):
        return _CancelledAtShutdown().filter(logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                                                               message, None, exc_info))
    stop = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n{}\n"
    assert not kept(stop.format("KeyboardInterrupt"))
    assert not kept(stop.format("asyncio.exceptions.CancelledError") + "\n")
    assert not kept(stop.format("asyncio.exceptions.CancelledError: Task cancelled, timeout graceful shutdown"))
    assert not kept("Exception in ASGI application", (asyncio.CancelledError, asyncio.CancelledError(), None))
    assert kept(stop.format("RuntimeError: the model's file vanished"))
    assert kept("Exception in ASGI application", (ValueError, ValueError(), None))
    assert kept("Cancel 1 running task(s), timeout graceful shutdown exceeded")


@two_cpus
def test_two_workers_answer_and_stop_cleanly(tiny_run):
    server = Server(tiny_run, "--workers", "2")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert client.get("/api/health").json()["status"] == "ok"
            r = client.post("/api/predict", files={"file": ("p.jpg", jpeg(5), "image/jpeg")})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.stderr)


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie waiting for its reaper has ended)."""
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
        except (FileNotFoundError, ProcessLookupError):
            return False
    return [pid for pid in pids if running(pid)]


@two_cpus
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent's death is signalled on Linux")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_workers_end_with_the_server_however_it_ends(tiny_run, sig):
    server = Server(tiny_run, "--workers", "2")
    workers = []
    try:
        assert httpx.get(server.url + "api/health", timeout=120).json()["status"] == "ok"
        workers = _children(server.proc.pid)
        assert len(workers) >= 2
        server.proc.send_signal(sig)
        assert server.proc.wait(60) == (0 if sig == signal.SIGTERM else -sig)
        deadline = time.monotonic() + 60
        while _running(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(workers)
    finally:
        server.stop()
        for pid in _running(workers):
            os.kill(pid, signal.SIGKILL)


def test_bad_model_or_options_are_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.json" in err
    assert main(["serve", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    # Refused before the model is looked at (this folder holds none).
    assert main(["serve", str(tmp_path), "--workers", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--workers 100000: this process may use {available_cpus()} CPU" in err


@pytest.mark.parametrize("origin, meant", [
    ("https://example.org/", "https://example.org"), ("example.org", "https://example.org"),
    ("HTTPS://Example.org:443", "https://example.org"), ("http://localhost:8000/app", "http://localhost:8000"),
    ("https://", None),
])
def test_a_cors_origin_that_could_never_match_is_a_usage_error(tmp_path, capsys, origin, meant):
    """A browser sends its Origin as scheme://host[:port], compared as text: anything else never matches."""
    # Refused before the model is read: without the check, this folder's missing model is the error.
    assert main(["serve", str(tmp_path), "--cors-origin", "https://ok.example", "--cors-origin", origin]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--cors-origin {origin!r}: not an origin (scheme://host[:port])" in err, err
    assert (f"did you mean {meant}?" if meant else "e.g. https://example.org") in err, err


def test_a_taken_port_or_unknown_host_is_one_line(tiny_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tiny_run), "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "--port" in err, err
    assert main(["serve", str(tiny_run), "--host", "no-such-host.invalid"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-host.invalid" in err and "--host" in err, err


@pytest.mark.parametrize("host, local", [("0.0.0.0", "http://127.0.0.1:"), ("::", "http://[::1]:")])
def test_listening_on_every_address_prints_the_urls_a_phone_can_use(tiny_run, host, local):
    import ipaddress

    if host == "::" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = Server(tiny_run, "--host", host)
    try:
        assert server.url.startswith(local)  # this machine's loopback URL, not the unusable [::] or 0.0.0.0
        line = server.lines.get(timeout=60)
        prefix = "fmnist: from a phone or another machine on this network: "
        assert line.startswith(prefix), line
        urls = line.removeprefix(prefix).strip().split(", ")
        for url in urls:
            address = urlsplit(url).hostname
            try:
                assert not ipaddress.ip_address(address).is_loopback, line
            except ValueError:
                pass  # none found: the machine's name
            assert httpx.get(url + "api/health", timeout=30).json()["status"] == "ok", url
    finally:
        assert server.stop() == 0


def test_max_upload_sizes():
    from fmnist.cli.main import _byte_size

    assert [_byte_size(s) for s in ("10MB", "500kB", "2MiB", "1000", "1.5M")] == [
        10_000_000, 500_000, 2 * 1024 ** 2, 1000, 1_500_000]
    for bad in ("ten", "0", "5 parsecs"):
        try:
            _byte_size(bad)
        except Exception as exc:
            assert "invalid size" in str(exc)
        else:
            raise AssertionError(bad)
    assert _byte_size("1GiB") == _byte_size("1073741824") == 1024 ** 3  # the largest


@pytest.mark.parametrize("size", ["9" * 400, "99999999999999999999GB", "1073741825", "1.0000000001GiB",
                                  "9" * 5000 + "kB"])
def test_a_max_upload_past_1gib_is_a_usage_error(capsys, size):
    # Uploads are held in memory: a limit the machine cannot hold is no limit; digits past a
    # float's range must be refused too, not crash the parsing.
    code = main(["serve", "no-such-run", "--max-upload", size])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--max-upload" in err and "at most 1GiB" in err, err
    assert len(err) < 300, err  # a long argument is shown cut short


def test_no_color_reaches_uvicorns_log_lines(tiny_run, monkeypatch):
    import uvicorn

    import fmnist.serve

    configs = []

    class Stopped:
        def __init__(self, config):
            configs.append(config)

        def run(self, sockets=None):
            return None

    monkeypatch.setattr(uvicorn, "Server", Stopped)
    for env, colours in ((None, None), ("1", False)):
        if env is None:
            monkeypatch.delenv("NO_COLOR", raising=False)
        else:
            monkeypatch.setenv("NO_COLOR", env)
        fmnist.serve.serve(tiny_run, port=0, on_ready=lambda url: None)
        assert configs[-1].use_colors is colours


def test_serve_keeps_the_signals_own_handling(tiny_run, monkeypatch, capsys):
    # uvicorn stops on SIGTERM itself; a SIGHUP turned into KeyboardInterrupt inside its event
    # loop would be logged as a lifespan error: serve runs with the process's own handlers.
    import signal

    import fmnist.serve

    seen = {}
    monkeypatch.setattr(fmnist.serve, "serve", lambda *a, **k: seen.update(
        term=signal.getsignal(signal.SIGTERM), hup=signal.getsignal(signal.SIGHUP)))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert main(["serve", str(tiny_run)]) == 0
    assert (seen["term"], seen["hup"]) == before
