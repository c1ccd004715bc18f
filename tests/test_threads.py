import os

import pytest

from fmnist import _threads
from fmnist.errors import UsageError


def test_thread_count_follows_request_then_omp_num_threads_then_affinity(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with monkeypatch.context() as m:
        m.setattr(_threads, "available_cpus", lambda: 8)
        assert _threads.resolve_threads(5) == 5
        assert _threads.resolve_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # nested teams: the outer one counts
        assert _threads.resolve_threads() == 4
    for unusable in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert _threads.resolve_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7})  # a Ray trial's or taskset's share
    assert _threads.resolve_threads() == _threads.available_cpus() == 3
    with pytest.raises(UsageError, match="threads"):
        _threads.resolve_threads(0)


def test_a_request_past_the_cpus_is_held_to_them_and_refused_up_front(monkeypatch):
    monkeypatch.setattr(_threads, "available_cpus", lambda: 3)
    # Where training runs (a resume on a smaller machine too): held to the CPUs there.
    assert _threads.resolve_threads(100000) == 3
    _threads.check_threads(3)
    with pytest.raises(UsageError) as exc:
        _threads.check_threads(4)
    assert exc.value.cli_message == ("--threads 4: this process may use 3 CPUs; ask for at most 3, or leave "
                                     "--threads out to use them all")
    with pytest.raises(UsageError, match="at least 1"):
        _threads.check_threads(0)


def test_omp_num_threads_past_the_cpus_is_held_to_them(monkeypatch):
    # A shell's OMP_NUM_THREADS set for a bigger machine, or a typo: 100 threads on 3 CPUs only
    # take turns, and 100000 kill the process in its first parallel op.
    monkeypatch.setattr(_threads, "available_cpus", lambda: 3)
    for many in ("4", "100", "100000", "100000,2"):
        monkeypatch.setenv("OMP_NUM_THREADS", many)
        assert _threads.resolve_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads.resolve_threads() == 2


def test_openmp_is_asked_to_sleep_unless_the_user_chose(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FMNIST_OMP_SPIN"):
        monkeypatch.delenv(name, raising=False)
    _threads.wait_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _threads.wait_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("FMNIST_OMP_SPIN", "1")
    _threads.wait_politely()
    assert "OMP_WAIT_POLICY" not in os.environ


def test_torch_threads_restores_the_setting():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with _threads.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
