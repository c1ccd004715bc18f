"""A real ``fmnist serve`` on loopback, for the HTTP and browser tests; it stops when they end."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


class Server:
    """``fmnist serve RUN --port 0`` in a subprocess: its URL once it listens, its output, its end."""

    def __init__(self, run: Path, *args: str, ready_s: float = 300) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "fmnist", "serve", str(run), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines = lines = queue.Queue()  # stdout, after the first line
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        try:
            line = lines.get(timeout=ready_s)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"fmnist serve printed no URL in {ready_s} s; stderr: {''.join(self.stderr)}")
        match = re.search(r"http://(127\.0\.0\.1|\[::1\]):(\d+)/", line)
        assert match, line
        self.url = match.group(0)

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user would; the exit status (killed after ``timeout`` s: then a failure)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"fmnist serve did not stop within {timeout} s of Ctrl-C")
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_run):
    s = Server(tiny_run, "--max-upload", "2MB")
    yield s
    s.stop()
