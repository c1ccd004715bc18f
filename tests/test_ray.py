"""fmnist._ray: Ray started once, quietly, and only what was started is stopped."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from fmnist import _ray
from fmnist.errors import FmnistError, UsageError


@pytest.mark.parametrize("hidden", ["ray", "ray.tune"])
def test_missing_ray_says_what_to_install(monkeypatch, hidden):
    monkeypatch.setitem(sys.modules, hidden, None)  # makes `import <hidden>` fail
    with pytest.raises(FmnistError) as err:
        _ray.require_ray()
    message = str(err.value)
    assert "\n" not in message
    assert "pip install 'fmnist[sweep]'" in message and repr(hidden) in message


def test_usable_cpus_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(_ray.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert _ray.usable_cpus() == 1


@pytest.mark.parametrize("env", [None, "127.0.0.1:6379"])
def test_cluster_with_a_cpu_count_is_a_usage_error(monkeypatch, env):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if env:
        monkeypatch.setenv("RAY_ADDRESS", env)
    with pytest.raises(UsageError, match=r"^--address 127\.0\.0\.1:6379: .*ray start --num-cpus"):
        _ray.start_ray(address=None if env else "127.0.0.1:6379", num_cpus=2)


def test_an_address_where_nothing_listens_is_one_line_at_once(monkeypatch):
    import socket

    import ray

    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def init(**kwargs):  # Ray's own try retries for minutes
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(FmnistError, match=rf"^--address 127\.0\.0\.1:{port}: nothing answers there; .*ray start"):
        _ray.start_ray(address=f"127.0.0.1:{port}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert _ray._listening("127.0.0.1", s.getsockname()[1])


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:", ":6379", "host:port"])
def test_an_address_that_is_no_host_and_port_is_a_usage_error(monkeypatch, address):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(UsageError, match=rf"^--address {address}: expected HOST:PORT"):
        _ray.check_address(address)


def test_local_instance_is_described(ray_cluster):
    assert ray_cluster.owned
    assert ray_cluster.nodes == 1 and ray_cluster.cpus == 2
    assert re.fullmatch(r"[\w.\-]+:\d+", ray_cluster.address)
    assert Path(ray_cluster.log_dir).is_dir()
    assert ray_cluster.to_json() == {"address": ray_cluster.address, "nodes": 1, "cpus": 2}


def test_a_connected_ray_is_reused_and_left_running(ray_cluster):
    import ray

    with _ray.ray_session() as info:
        assert not info.owned
        assert info.address == ray_cluster.address
    assert ray.is_initialized()


def test_as_finished_yields_tasks_as_they_end_and_cancels_the_rest_when_left(ray_cluster):
    import time

    import ray

    @ray.remote(num_cpus=1, max_retries=0)
    def sleep(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    # Both workers started first: on a busy machine starting the second one took longer than the
    # slow task, which then finished first.
    ray.get([sleep.remote(0.0), sleep.remote(0.0)])
    slow, fast = sleep.remote(2.0), sleep.remote(0.0)
    with _ray.as_finished([slow, fast]) as done:
        assert [ray.get(ref) for ref in done] == [0.0, 2.0]  # in the order they finish, not as given

    # Leaving the block early (here an error after the first task) cancels what is still running.
    stuck, quick = sleep.remote(600), sleep.remote(0.0)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="the first task's result was bad"):
        with _ray.as_finished([stuck, quick]) as done:
            for ref in done:
                raise RuntimeError("the first task's result was bad")
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(stuck, timeout=60)
    assert time.monotonic() - start < 60


def test_ray_init_leaves_the_commands_sigterm_handler_in_place(monkeypatch):
    # ray.init sets its own SIGTERM handler (sys.exit, no word); a command's own (stop as Ctrl-C
    # does, saying what is kept) must survive it.
    import signal

    import ray

    def ours(signum, frame):
        raise KeyboardInterrupt

    def init(**kwargs):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(_ray, "_describe", lambda ray, owned, local: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = signal.signal(signal.SIGTERM, ours)
    try:
        _ray.start_ray(num_cpus=1)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, before)
