"""Download logic against a loopback HTTP server: no test touches the real network."""

import gzip
import os
import stat
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fmnist.data import _sources, fetch, load_dataset
from fmnist.errors import DataError


class Mirrors:
    """A loopback server whose first path segment picks how it misbehaves."""

    def __init__(self, good: dict[str, bytes], wrong: dict[str, bytes]):
        self.good, self.wrong, self.hits = good, wrong, Counter()
        mirrors = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                _, kind, name = self.path.split("/", 2)
                mirrors.hits[kind, name] += 1
                body = (mirrors.wrong if kind == "wrong" else mirrors.good).get(name)
                if kind == "404" or body is None:
                    return self.send_error(404)
                if kind == "flaky" and mirrors.hits[kind, name] == 1:
                    return self.send_error(503)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # "cut" drops the connection halfway through, as a dying mirror would.
                self.wfile.write(body[: len(body) // 2] if kind == "cut" else body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{kind}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirrors(tiny, make_arrays, make_folder, tmp_path):
    folder, _ = tiny
    other = make_folder(tmp_path / "other", make_arrays(seed=9)) and tmp_path / "other"
    good = {p.name: p.read_bytes() for p in folder.iterdir()}
    wrong = {p.name: p.read_bytes() for p in other.iterdir()}
    m = Mirrors(good, wrong)
    yield m
    m.close()


def refused_url():
    # A port nothing listens on: connection refused, immediately.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_skips_bad_mirrors(mirrors, tmp_path, tiny):
    dest = tmp_path / "dl"
    urls = [refused_url(), mirrors.url("404"), mirrors.url("wrong"), mirrors.url("cut"),
            mirrors.url("flaky")]
    assert fetch(dest, mirrors=urls, progress=False) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in tiny[0].iterdir())
    for p in dest.iterdir():
        assert p.read_bytes() == (tiny[0] / p.name).read_bytes()
    name = "train-images-idx3-ubyte.gz"
    # 404 and wrong content are not asked twice; the flaky mirror succeeds on its 2nd try,
    # and the broken connection is retried on the second pass.
    assert mirrors.hits["404", name] == 1 and mirrors.hits["wrong", name] == 1
    assert mirrors.hits["flaky", name] == 2 and mirrors.hits["cut", name] == 2


def test_fetch_keeps_intact_files_and_replaces_corrupt_ones(mirrors, tmp_path, tiny):
    dest = tmp_path / "dl"
    fetch(dest, mirrors=[mirrors.url("good")], progress=False)
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bjunk")
    fetch(dest, mirrors=[mirrors.url("good")], progress=False)
    assert mirrors.hits["good", "train-images-idx3-ubyte.gz"] == 1
    assert mirrors.hits["good", "t10k-labels-idx1-ubyte.gz"] == 2
    assert load_dataset(dest).verified


@pytest.mark.parametrize("kind", ["wrong", "cut", "404"])
def test_failed_download_leaves_nothing(mirrors, tmp_path, kind):
    dest = tmp_path / "dl"
    with pytest.raises(DataError) as err:
        fetch(dest, mirrors=[mirrors.url(kind)], progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg and "download failed" in msg
    assert list(dest.iterdir()) == []  # no partial or temporary file


def test_progress_bar_goes_to_stderr(mirrors, tmp_path, capsys):
    fetch(tmp_path / "dl", mirrors=[mirrors.url("good")], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "train-images-idx3-ubyte.gz" in err


def test_load_fetches_into_cache_when_asked(mirrors, monkeypatch, tmp_path):
    monkeypatch.setattr(_sources, "MIRRORS", (mirrors.url("good"),))
    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    with pytest.raises(DataError, match="not found"):
        load_dataset()
    ds = load_dataset(fetch=True)
    assert (ds.origin, ds.source, ds.verified) == ("download", tmp_path / "cache", True)
    again = load_dataset()
    assert (again.origin, again.from_cache) == ("cache", True)


def test_corrupt_cached_file_is_fetched_again(mirrors, monkeypatch, tmp_path):
    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    cache = tmp_path / "cache"
    fetch(cache, progress=False)
    labels = cache / "train-labels-idx1-ubyte.gz"
    y = np.frombuffer(gzip.decompress(labels.read_bytes()), np.uint8).copy()
    y[-1] = (y[-1] + 1) % 10
    labels.write_bytes(gzip.compress(y.tobytes()))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: not the Fashion-MNIST file"):
        load_dataset()
    ds = load_dataset(fetch=True)
    assert ds.origin == "cache" and ds.verified and not ds.from_cache
    assert mirrors.hits["good", "train-labels-idx1-ubyte.gz"] == 2


def test_explicit_folder_is_fetched_into(mirrors, monkeypatch, tmp_path):
    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    ds = load_dataset(tmp_path / "mine", fetch=True)
    assert (ds.origin, ds.source) == ("download", tmp_path / "mine")


@pytest.mark.parametrize("how", ["argument", "FMNIST_DATA"])
def test_a_damaged_file_in_a_users_folder_points_to_fmnists_own_copy(mirrors, monkeypatch, tmp_path, how):
    # A fetch never rewrites a user's folder, so the advice cannot be to fetch again: it is to
    # stop pointing at that folder, and following it works.
    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    mine = tmp_path / "mine"
    fetch(mine, progress=False)
    damaged = mine / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    if how == "FMNIST_DATA":
        monkeypatch.setenv("FMNIST_DATA", str(mine))
    with pytest.raises(DataError) as err:
        load_dataset(mine if how == "argument" else None, fetch=True)
    step = "leave out --data-dir" if how == "argument" else "unset FMNIST_DATA"
    assert err.value.cli_message == (
        f"{damaged}: gzip data ends early (truncated file or download); replace it with an intact copy, "
        f"or {step} to use fmnist's own verified copy (`fmnist data --fetch` downloads it)")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    ds = load_dataset(fetch=True)
    assert (ds.origin, ds.source, ds.verified) == ("download", tmp_path / "cache", True)


def test_a_damaged_file_in_the_cache_is_fetched_again_as_its_message_says(mirrors, monkeypatch, tmp_path):
    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    cache = fetch(tmp_path / "cache", progress=False)
    damaged = cache / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    with pytest.raises(DataError) as err:
        load_dataset()
    assert err.value.cli_message.endswith(
        " replace it with an intact copy (`fmnist data --fetch` downloads one again)")
    assert str(err.value).endswith("(load_dataset(fetch=True) downloads one again)")
    assert load_dataset(fetch=True).verified


def test_a_damaged_file_in_debians_folder_points_to_its_package(tiny, monkeypatch):
    folder, _ = tiny
    monkeypatch.setattr(_sources, "DEBIAN_DIR", folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bjunk")
    with pytest.raises(DataError) as err:
        load_dataset(fetch=True)
    assert err.value.cli_message.endswith(
        "replace it with an intact copy (`sudo apt-get install --reinstall dataset-fashion-mnist` restores one)")


def test_a_damaged_custom_file_only_asks_for_an_intact_copy(tiny):
    folder, _ = tiny
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bjunk")
    with pytest.raises(DataError) as err:
        load_dataset(folder, dataset="custom")
    assert err.value.cli_message.endswith("; replace it with an intact copy")


def test_custom_never_downloads(tmp_path):
    with pytest.raises(DataError, match="MNIST-format data not found"):
        load_dataset(fetch=True, dataset="custom")


def test_cli_fetch_into_a_folder_downloads_each_file_once(mirrors, monkeypatch, tmp_path, capsys, umask_022):
    from fmnist.cli.main import main

    monkeypatch.setattr("fmnist.data._download.MIRRORS", (mirrors.url("good"),))
    assert main(["data", "--fetch", "--data-dir", str(tmp_path / "mine"), "--dataset", "fashion-mnist"]) == 0
    assert "download" in capsys.readouterr().out
    assert {name: n for (kind, name), n in mirrors.hits.items()} == {p.name: 1 for p in tiny_files(tmp_path)}
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*.gz"))  # nothing elsewhere
    # Downloaded data is readable by colleagues sharing the folder (not mkstemp's 0600).
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "mine").iterdir()} == {0o644}


def tiny_files(tmp_path):
    return sorted((tmp_path / "tiny").iterdir())


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)
