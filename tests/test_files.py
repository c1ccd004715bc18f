"""Writing files: atomic, with the user's usual permissions, never over finished work."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

import fmnist
from fmnist._files import atomic_write, check_free, default_mode, next_free
from fmnist.errors import FmnistError, OutputExistsError


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def private_writer(tmp):
    """Writes as safetensors and mkstemp do: a file created mode 0600."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"weights")
    os.close(fd)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_users_usual_permissions(tmp_path, umask, mask, expected):
    umask(mask)
    assert default_mode() == expected
    path = atomic_write(tmp_path / "w.bin", private_writer)
    assert mode(path) == expected and path.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]  # no temporary file left


def test_saved_weights_are_readable_by_colleagues(tmp_path, umask):
    umask(0o022)
    fmnist.save_model(fmnist.create_model("softmax"), tmp_path / "m")
    assert {p.name: mode(p) for p in (tmp_path / "m").iterdir()} == {"model.json": 0o644,
                                                                    "weights.safetensors": 0o644}


def test_check_free_refuses_what_holds_work_and_names_the_way_out(tmp_path):
    (tmp_path / "empty").mkdir()
    check_free([tmp_path / "missing", tmp_path / "empty"])  # nothing there: no one's work
    (tmp_path / "result.md").write_text("mine")
    with pytest.raises(OutputExistsError) as exc:
        check_free([tmp_path / "missing", tmp_path / "result.md"], what="a result")
    assert str(exc.value) == (f"{tmp_path / 'result.md'}: already holds a result; pass overwrite=True to replace "
                              "it, or choose another out_dir")
    assert exc.value.cli_message.endswith("pass --overwrite to replace it, or choose another --out")
    check_free([tmp_path / "result.md"], overwrite=True)
    (tmp_path / "empty" / "x").write_text("")
    with pytest.raises(OutputExistsError, match="empty .and 1 more.: already holds"):
        check_free([tmp_path / "empty", tmp_path / "result.md"])


def test_check_free_refuses_a_place_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(FmnistError) as exc:
        check_free([tmp_path / "ok.md", tmp_path / "notes" / "run" / "model.json"], overwrite=True, out="--plot")
    assert exc.value.cli_message == (f"{tmp_path / 'notes' / 'run' / 'model.json'}: cannot be written: "
                                     f"{tmp_path / 'notes'} is a file, not a folder; choose another --plot")
    assert (tmp_path / "notes").read_text() == "mine"

    def refused(*args, **kwargs):  # a read-only folder, as root sees one (os.access says yes)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(FmnistError, match=f"{tmp_path}: Operation not permitted; choose another out_dir"):
        check_free([tmp_path / "new" / "report.html"])
    assert not (tmp_path / "new").exists()


def test_next_free_never_returns_a_taken_name(tmp_path):
    first = next_free(tmp_path / "runs" / "mlp")
    assert first == tmp_path / "runs" / "mlp" and first.is_dir()  # claimed at once
    assert next_free(tmp_path / "runs" / "mlp") == tmp_path / "runs" / "mlp-2"
    assert next_free(tmp_path / "runs" / "mlp") == tmp_path / "runs" / "mlp-3"
    (tmp_path / "model.onnx").write_text("")
    assert next_free(tmp_path / "model.onnx", folder=False) == tmp_path / "model-2.onnx"
    assert next_free(tmp_path / "other.onnx", folder=False) == tmp_path / "other.onnx"


@pytest.fixture
def held(tmp_path):
    """A folder another process holds (fmnist._files.claim) until the test ends."""
    import subprocess
    import sys

    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom fmnist._files import claim\n"
                               f"with claim({str(folder)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    yield folder, holder.pid
    holder.communicate("")


def test_a_folder_another_command_is_writing_is_refused_even_with_overwrite(held, tiny_data):
    from fmnist.runs import train_run

    folder, pid = held
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=rf"out: another fmnist command is writing there now \(process "
                                                    rf"{pid}\); let it finish, or choose another"):
            train_run("softmax", tiny_data, out_dir=folder, overwrite=overwrite)
    assert [p.name for p in folder.iterdir()] == [".fmnist-busy"]  # nothing written beside the holder's


def test_a_claim_is_this_processs_own_and_leaves_no_trace(tmp_path, tiny_data):
    from fmnist._files import claim
    from fmnist.runs import train_run

    with claim(tmp_path / "a"):
        check_free([tmp_path / "a"])  # its own claim is not another command's
    assert not (tmp_path / "a").exists()  # created by the claim, left empty: removed
    train_run("softmax", tiny_data, out_dir=tmp_path / "run")
    assert ".fmnist-busy" not in os.listdir(tmp_path / "run")
    # A lock file left by a killed command holds nothing.
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / ".fmnist-busy").write_text("12345\n")
    check_free([tmp_path / "stale"])
    train_run("softmax", tiny_data, out_dir=tmp_path / "stale")


@pytest.mark.parametrize("command", ["sweep", "resume_sweep", "benchmark", "audit"])
def test_sweep_benchmark_and_audit_refuse_a_folder_another_command_is_writing(held, tiny_data, command):
    from fmnist.benchmark.classical import benchmark_classical
    from fmnist.tuning.sweep import resume_sweep

    folder, pid = held
    if command == "resume_sweep":  # as if the sweep writing there were interrupted, not running
        (folder / "sweep.json").write_text("{}")
    run = {"sweep": lambda: fmnist.sweep("softmax", ["lr=0.1"], tiny_data, epochs=1, out_dir=folder),
           "resume_sweep": lambda: resume_sweep(folder, tiny_data),
           "benchmark": lambda: benchmark_classical(tiny_data, folder, quick=True, families=["GaussianNB"]),
           "audit": lambda: fmnist.audit(tiny_data, model="softmax", folds=2, epochs=1, out_dir=folder,
                                         progress=False)}[command]
    with pytest.raises(OutputExistsError, match=rf"another fmnist command is writing there now \(process {pid}\)"):
        run()
    assert sorted(p.name for p in folder.iterdir()) == sorted([".fmnist-busy"] + (
        ["sweep.json"] if command == "resume_sweep" else []))


@pytest.mark.parametrize("command", [
    ["compare", "softmax", "--epochs", "1"], ["reproduce"], ["explore"],
    ["audit", "--model", "softmax", "--folds", "2", "--epochs", "1"],
])
def test_a_command_never_mixes_its_files_into_another_commands_folder(capsys, tiny_dir, tmp_path, command):
    from fmnist.cli.main import main

    data = ["--dataset", "custom", "--data-dir", str(tiny_dir)]
    run = tmp_path / "run"
    assert main(["train", "softmax", "--epochs", "1", "--quiet", "--out", str(run), *data]) == 0
    before = sorted(p.name for p in run.iterdir())
    for overwrite in ([], ["--overwrite"]):
        assert main([*command, "--out", str(run), *overwrite, *data]) == 1
        err = capsys.readouterr().err
        assert f"{run}: holds a run (fmnist train) (run.json)" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_temporary_file_of_a_killed_write_is_nobodys_work(tmp_path):
    import subprocess
    import sys

    from fmnist._files import claim, holds_work

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "run"
    folder.mkdir()
    stale = folder / f".checkpoint.safetensors.{int(dead.stdout)}.a4dd5099.tmp"  # as a kill -9 mid-write leaves it
    stale.write_bytes(b"half a checkpoint")
    assert not holds_work(folder)
    live = folder / f".weights.safetensors.{os.getpid()}.0123abcd.tmp"  # a write under way
    live.write_bytes(b"being written")
    assert holds_work(folder)
    with claim(folder):
        assert not stale.exists() and live.exists()


def test_a_failed_write_names_the_file_being_written(tmp_path):
    import errno

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")  # as matplotlib's savefig raises it: no file named

    with pytest.raises(OSError) as failed:
        atomic_write(tmp_path / "figure.png", full)
    assert failed.value.filename == str(tmp_path / "figure.png") and failed.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_a_resume_into_a_folder_that_cannot_be_written_says_what_to_do(tiny_data, tmp_path, monkeypatch):
    import errno

    from fmnist.runs import resolve_config, resume_run, train_run
    from fmnist.models import get_preset

    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()  # as if interrupted after its last checkpoint

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(FmnistError) as refused:
        resume_run(tmp_path / "run", tiny_data)
    assert "Read-only file system; a resume writes into the run's own folder: make it writable" in str(refused.value)
    assert "--out" not in refused.value.cli_message  # a resume takes no --out


def test_writing_a_file_removes_the_temporary_a_killed_write_of_it_left(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".report.html.{int(dead.stdout)}.a4dd5099.tmp"  # report killed mid-write, in no claimed folder
    stale.write_text("half a report")
    other = tmp_path / f".figure.png.{int(dead.stdout)}.0123abcd.tmp"  # another file's: its own write removes it
    other.write_text("half a figure")
    live = tmp_path / f".report.html.{os.getpid()}.0123abcd.tmp"  # a write under way
    live.write_text("being written")
    atomic_write(tmp_path / "report.html", lambda tmp: tmp.write_text("<html>"))
    assert not stale.exists() and other.exists() and live.exists()
    assert (tmp_path / "report.html").read_text() == "<html>"


@pytest.mark.parametrize(("first", "what", "then"), [
    (["explore"], "an exploration (fmnist explore)", ["train", "softmax", "--epochs", "1", "--quiet"]),
    (["explore"], "an exploration (fmnist explore)", ["audit", "--model", "softmax", "--folds", "2", "--epochs", "1"]),
    (["audit", "--model", "softmax", "--folds", "2", "--epochs", "1"], "an audit (fmnist audit)",
     ["train", "softmax", "--epochs", "1", "--quiet"]),
])
def test_no_command_writes_into_an_exploration_or_trains_into_another_commands_folder(capsys, tiny_dir, tmp_path,
                                                                                    first, what, then):
    from fmnist.cli.main import main

    data = ["--dataset", "custom", "--data-dir", str(tiny_dir)]
    out = tmp_path / "out"
    assert main([*first, "--out", str(out), *data]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for overwrite in ([], ["--overwrite"]):
        assert main([*then, "--out", str(out), *overwrite, *data]) == 1
        err = capsys.readouterr().err
        assert f"{out}: holds {what}" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(("marker", "what", "command"), [
    ({"results.json": {"rows": []}}, "a study (fmnist reproduce)", "benchmark"),
    ({"sweep.json": {}}, "a sweep (fmnist sweep)", "benchmark"),
    ({"run.json": {}}, "a run (fmnist train)", "benchmark"),
    ({"results.json": {"benchmark": "classical (Xiao, Rasul & Vollgraf 2017, Table 3)"}},
     "the classical benchmark (fmnist benchmark classical)", "reproduce"),
    ({"results.json": {"benchmark": "classical (Xiao, Rasul & Vollgraf 2017, Table 3)"}},
     "the classical benchmark (fmnist benchmark classical)", "compare"),
])
def test_the_study_and_the_classical_benchmark_keep_to_their_own_results(capsys, tiny_dir, tmp_path, marker, what,
                                                                         command):
    """Both write results.json: each refuses the other's, and every other command's folder, even with --overwrite."""
    from fmnist.cli.main import main

    out = tmp_path / "out"
    out.mkdir()
    for name, content in marker.items():
        (out / name).write_text(json.dumps(content))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = {"benchmark": ["benchmark", "classical", "--quick", "--families", "GaussianNB"], "reproduce": ["reproduce"],
            "compare": ["compare", "softmax", "--epochs", "1"]}[command]
    for overwrite in ([], ["--overwrite"]):
        assert main([*argv, "--out", str(out), *overwrite, "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 1
        err = capsys.readouterr().err
        assert f"{out}: holds {what} (" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("command", [["train", "softmax", "--epochs", "1", "--quiet"],
                                     ["compare", "softmax", "--epochs", "1"]])
def test_an_output_folder_that_is_a_file_is_named_as_one(capsys, tiny_dir, tmp_path, command):
    from fmnist.cli.main import main

    afile = tmp_path / "notes"
    afile.write_text("the user's")
    for overwrite in ([], ["--overwrite"]):
        assert main([*command, "--out", str(afile), *overwrite, "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 1
        err = capsys.readouterr().err
        assert f"{afile}: a file, not a folder" in err and ".fmnist-busy" not in err and err.count("\n") == 1, err
    assert afile.read_text() == "the user's"


def test_staged_files_join_the_folder_together_the_marker_last_or_not_at_all(tmp_path, monkeypatch):
    from fmnist._files import staged
    from tests.test_runs import _dead_pid

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "mark").write_text("old mark")
    with pytest.raises(KeyboardInterrupt):
        with staged(out, last="mark") as stage:
            (stage / "a.txt").write_text("new a")
            raise KeyboardInterrupt
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": "old a", "mark": "old mark"}
    moved, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (moved.append(Path(dst).name), replace(src, dst)))
    with staged(out, last="mark") as stage:
        for name in ("mark", "a.txt", "b.txt"):
            (stage / name).write_text(f"new {name}")
    assert moved[-1] == "mark" and sorted(moved) == ["a.txt", "b.txt", "mark"]
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: f"new {n}" for n in ("a.txt", "b.txt", "mark")}
    killed = out / f".staged.{_dead_pid()}"  # a staging folder whose process was killed goes at the next one
    killed.mkdir()
    (killed / "a.txt").write_text("half")
    with staged(out, last="mark"):
        assert not killed.exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "mark"]


def test_a_cleanup_the_file_system_refuses_does_not_hide_the_error_that_matters(tmp_path, monkeypatch):
    import errno

    def read_only(tmp):
        raise OSError(errno.EROFS, "Read-only file system")

    unlink = Path.unlink

    def refused(self, missing_ok=False):  # a read-only file system refuses even a missing file's unlink
        if self.name.endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    with pytest.raises(OSError) as failed:
        atomic_write(tmp_path / "model.onnx", read_only)
    assert failed.value.filename == str(tmp_path / "model.onnx")


def test_predict_charts_and_an_export_elsewhere_refuse_a_folder_another_command_is_writing(held, tiny_run, tmp_path):
    import numpy as np

    from fmnist.export import export_run
    from fmnist.inference.predict import predict_files, save_plots

    folder, pid = held
    busy = rf"another fmnist command is writing there now \(process {pid}\)"
    np.save(tmp_path / "two.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    result = predict_files(tiny_run, [tmp_path / "two.npy"])
    with pytest.raises(OutputExistsError, match=busy):
        save_plots(result.predictions, folder, result.class_names)
    with pytest.raises(OutputExistsError, match=busy):
        export_run(tiny_run, folder / "model.onnx")
    assert [p.name for p in folder.iterdir()] == [".fmnist-busy"]
