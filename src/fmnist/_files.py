"""Writing files: atomically, with the user's usual permissions, never over finished work.

Every file fmnist writes goes through :func:`atomic_write`. Commands that write a user's
output check it first with :func:`check_free` (refused unless ``overwrite``), and pick
default output names with :func:`next_free`, so two runs never land in one place.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fmnist._text import shell
from fmnist.errors import FmnistError, OutputExistsError, option, spelled


def default_mode() -> int:
    """The mode a new file gets from ``open()``: 0o666 less the process's umask (0o644 usually)."""
    # The umask can only be read by setting it; setting it back at once keeps it as it was.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)`` to a temporary file beside it, then rename.

    A crash or Ctrl-C leaves the old file (or none), never a half-written one. The temporary
    name is unique and hidden, in the same folder (``os.replace`` is atomic only within one
    file system). Writers that make their own private temporary file (safetensors does,
    mode 0600) would leave the result unreadable to colleagues sharing the folder, so the
    file gets the user's usual permissions (:func:`default_mode`) before it takes its name.
    Missing parent folders are created.
    """
    return atomic_write_all([(path, write)])[0]


def atomic_write_all(writes: Sequence[tuple[str | os.PathLike, Callable[[Path], object]]]) -> list[Path]:
    """Like :func:`atomic_write` for files that belong together: every one is written to its
    temporary name first, in order (a writer may use what an earlier one learnt, such as its
    file's digest), and only then are they renamed, one after the other. A failure in any writer leaves every
    old file as it was; only a crash between the renames, a few microseconds, could mix them.
    """
    tmps: list[tuple[Path, Path]] = []
    try:
        for path, write in writes:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # A killed earlier write of this file left its temporary (commands that claim no
            # folder, such as report or predict --plot, would otherwise collect them).
            for stale in filter(_stale_temporary, path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
                stale.unlink(missing_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            tmps.append((tmp, path))
            try:
                write(tmp)
            except OSError as exc:
                if exc.filename is not None and exc.filename != str(tmp):
                    raise
                # Named as the file being written (a full disk under matplotlib's savefig names no
                # file at all; the temporary name is nothing the user knows).
                raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
            os.chmod(tmp, default_mode())
        for tmp, path in tmps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            # On a read-only file system unlink fails even for a file that was never made: the
            # error being raised, naming the file to write, is the one to see.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise
    return [path for _, path in tmps]


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, json_writer(data))


def json_writer(data: Any) -> Callable[[Path], object]:
    """What writes ``data`` as fmnist's JSON files are written, for :func:`atomic_write_all`."""
    return text_writer(json.dumps(data, indent=2) + "\n")


def text_writer(text: str) -> Callable[[Path], object]:
    """What writes ``text`` (a Markdown table's dashes, a Delta) as UTF-8, whatever the locale."""
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def holds_work(path: Path) -> bool:
    """A file, or a folder with anything in it: an empty folder holds no one's work (nor does a
    claim's lock file left by a command that ended)."""
    if path.is_dir():
        return any(p.name != CLAIM and not _stale_temporary(p) for p in path.iterdir())
    return path.exists() or path.is_symlink()


# The classical benchmark's results.json, as :data:`WORK_MARKERS` names it.
BENCHMARK_RESULTS = "results.json (classical benchmark)"

# The temporary name atomic_write_all gives a file until it is complete: .NAME.PID.HEX.tmp
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def _stale_temporary(path: Path) -> bool:
    """A temporary file of a write that never finished: its process was killed (a live one's,
    or a process reusing its number, is left alone). It is nobody's work."""
    found = _TEMPORARY.fullmatch(path.name)
    return bool(found) and path.is_file() and process_ended(int(found[1]))


def process_ended(pid: int) -> bool:
    """Whether no process ``pid`` runs (one of another user's, or a number reused, counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


# Where `train --overwrite` keeps the run it replaces, inside the run's folder, until the new run
# has finished: .replaced.PID (fmnist.runs puts it back, or removes it).
REPLACED = re.compile(r"\.replaced\.(\d+)")


def replaced_by_killed(folder: str | os.PathLike) -> list[Path]:
    """The runs set aside in ``folder`` by a ``train --overwrite`` whose process was killed (a
    live one's are its own business)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir())
            if (found := REPLACED.fullmatch(p.name)) and p.is_dir() and process_ended(int(found[1]))]


def replaced_note(folder: str | os.PathLike) -> str:
    """For a message about ``folder``: where the run a killed ``train --overwrite`` was replacing
    is kept, and how to finish the replacement or get that run back ("" where there is none)."""
    folder = Path(folder)
    killed = replaced_by_killed(folder)
    if not killed:
        return ""
    resume = spelled(f"resume_run({str(folder)!r}, data)", f"fmnist train --resume {shell(folder)}")
    if (folder / "checkpoint.safetensors").is_file():
        return (f"; the interrupted run here (a train --overwrite, killed) was replacing the run kept in "
                f"{killed[0]}: {resume} finishes "
                f"the replacement and removes that run; to get that run back instead, delete "
                f"{folder / 'checkpoint.safetensors'} and run {resume}")
    return (f"; a train --overwrite replacing the run here was killed before its first epoch ended: that run "
            f"is kept in {killed[0]}, and {resume} puts it back")


# Where :func:`staged` writes a command's files before they join its folder: .staged.PID
_STAGED = re.compile(r"\.staged\.(\d+)")


@contextlib.contextmanager
def staged(folder: str | os.PathLike, last: str) -> Iterator[Path]:
    """A hidden folder in ``folder`` to write a command's files into (flat, no subfolders); when the
    block ends they move into ``folder`` together, ``last`` (the file that marks the output as
    finished) after the others. An exception, an interruption included, leaves ``folder`` as it
    was: an earlier output whole, never new files beside old ones. The staging folder of a
    killed process goes at the next staged write into ``folder`` (hold its :func:`claim`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        found = _STAGED.fullmatch(old.name)
        if found and old.is_dir() and process_ended(int(found[1])):
            shutil.rmtree(old, ignore_errors=True)
    stage = folder / f".staged.{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        for path in sorted(stage.iterdir(), key=lambda p: p.name == last):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# The lock file of a folder a command is writing (:func:`claim`): hidden, and only ever locked,
# never trusted by its mere presence, so one left by a killed process claims nothing.
CLAIM = ".fmnist-busy"
_claimed: set[Path] = set()  # the folders this process holds


@contextlib.contextmanager
def claim(folder: str | os.PathLike, out: str = "--out", *, advice: str | None = None) -> Iterator[None]:
    """Hold ``folder`` for one command: another that claims it meanwhile is refused in one line.

    Two commands given the same output folder would otherwise both find it free and write over
    each other's files. The claim is an advisory lock (``flock``) on a file in the folder, which
    the system releases when the process ends, however it ends. Callers check the folder's
    contents after claiming it, so the check and the writing cannot be split by another command.
    ``advice``: what to do where the folder cannot be written (default: choose another ``out``).
    """
    import fcntl

    folder = Path(folder)
    _check_writable(folder / CLAIM, out, set(), advice, shown=folder)  # under a file, or read-only: one line
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, default_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputExistsError(_busy(folder, path, out)) from None
        try:  # the file locked must still be the one at the path (its holder may have removed it)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    _claimed.add(folder.resolve())
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for stale in filter(_stale_temporary, folder.iterdir()):  # left by a command killed mid-write
            stale.unlink(missing_ok=True)
        yield
    finally:
        _claimed.discard(folder.resolve())
        path.unlink(missing_ok=True)
        os.close(fd)
        if created:  # a command refused, or failing, before it wrote anything leaves no folder
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_not_busy(folder: str | os.PathLike, out: str = "--out") -> None:
    """Refuse (:class:`OutputExistsError`) a folder another command holds (:func:`claim`) now."""
    import fcntl

    if Path(folder).resolve() in _claimed:  # this process's own claim (a lock is per open file, not process)
        return
    path = Path(folder) / CLAIM
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputExistsError(_busy(Path(folder), path, out)) from None
    finally:
        os.close(fd)


def _busy(folder: Path, path: Path, out: str) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    who = f" (process {pid})" if pid.isdigit() else ""
    return (f"{folder}: another fmnist command is writing there now{who}; let it finish, or choose another "
            f"{option('out_dir', cli=out)}")


def check_free(paths: Iterable[str | os.PathLike], *, overwrite: bool = False, what: str = "earlier output",
               out: str = "--out") -> None:
    """Refuse to write over ``paths`` when any of them holds something, unless ``overwrite``,
    and refuse places that cannot be written at all (under a file, in a read-only folder).

    Called before any work starts, so a refusal leaves everything as it was and no training is
    lost to a folder that turns out to be unwritable. ``what`` says what is there (``"a
    finished run"``); ``out`` is the command-line option that chose the place, named in the
    advice. Raises :class:`~fmnist.errors.OutputExistsError`, or :class:`~fmnist.errors.FmnistError`
    for a place that cannot be written.
    """
    paths = [Path(p) for p in paths]
    checked: set[Path] = set()
    for path in paths:
        _check_writable(path, out, checked)
        if path.is_dir():  # not even with overwrite: that command's files are being written
            check_not_busy(path, out)
    if overwrite:
        return
    taken = [p for p in paths if holds_work(p)]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise OutputExistsError(f"{taken[0]}{more}: already holds {what}; pass {option('overwrite', True)} to "
                                f"replace it, or choose another {option('out_dir', cli=out)}")


# The file that marks a folder as one command's output. Another command's files mixed into it
# would leave a folder that each reader takes for something else (evaluate for the run, report
# for the comparison), so it is refused, even with --overwrite, which replaces a command's own.
# The study and the classical benchmark both write results.json: it is told apart by its content.
WORK_MARKERS = {"run.json": "a run (fmnist train)", "compare.json": "a comparison (fmnist compare)",
                "sweep.json": "a sweep (fmnist sweep)", "audit.json": "an audit (fmnist audit)",
                "report.html": "a report (fmnist report)", "class_grid.png": "an exploration (fmnist explore)",
                "results.json": "a study (fmnist reproduce)",
                BENCHMARK_RESULTS: "the classical benchmark (fmnist benchmark classical)"}


def _marker(out: Path, name: str) -> str | None:
    """The :data:`WORK_MARKERS` key that ``out/name`` stands for, None where there is no such file."""
    path = out / name
    if not path.is_file():
        return None
    if name == "results.json":
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            return None  # damaged: no one's mark, and each command's own reading of it says so
        if not isinstance(results, dict):
            return None
        return BENCHMARK_RESULTS if str(results.get("benchmark", "")).startswith("classical") else name
    return name


def work_in(folder: str | os.PathLike, mine: str | None = None) -> tuple[str, str] | None:
    """``(what, file)``: the command's work ``folder`` holds, by its :data:`WORK_MARKERS` file
    other than ``mine`` ("a report (fmnist report)", "report.html"); None when it holds none."""
    folder = Path(folder)
    for name in dict.fromkeys(n if n != BENCHMARK_RESULTS else "results.json" for n in WORK_MARKERS):
        marker = _marker(folder, name)
        if marker is not None and marker != mine:
            return WORK_MARKERS[marker], name
    return None


def check_other_work(out: str | os.PathLike, mine: str | None = None, *, option_name: str = "--out") -> None:
    """Refuse (:class:`~fmnist.errors.OutputExistsError`) an output folder that holds another
    command's work: a :data:`WORK_MARKERS` file other than ``mine``."""
    found = work_in(out, mine)
    if found:
        raise OutputExistsError(f"{out}: holds {found[0]} ({found[1]}), which this command's files would "
                                f"be mixed into; choose another {option('out_dir', cli=option_name)}")


def _check_writable(path: Path, out: str, checked: set[Path], advice: str | None = None,
                    shown: Path | None = None) -> None:
    """FmnistError unless files can be created at ``path`` (its missing folders included), named
    ``shown`` in the message (the folder a user gave, not a file fmnist keeps in it)."""
    advice = advice or f"choose another {option('out_dir', cli=out)}"
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if folder in checked:
        return
    shown = shown or path
    where = f"{shown}: cannot be written"
    if not folder.is_dir():
        if folder == shown:
            raise FmnistError(f"{shown}: a file, not a folder; {advice}")
        raise FmnistError(f"{where}: {folder} is a file, not a folder; {advice}")
    # Ask the file system itself: permissions, read-only mounts and immutable folders all show
    # here, and os.access answers yes to root for all of them.
    try:
        fd, probe = tempfile.mkstemp(prefix=".fmnist-probe-", dir=folder)
    except OSError as exc:
        raise FmnistError(f"{where}: {folder}: {exc.strerror or exc}; {advice}") from None
    os.close(fd)
    os.unlink(probe)
    checked.add(folder)


def next_free(path: str | os.PathLike, *, folder: bool = True) -> Path:
    """``path`` if nothing is there yet, else the first free ``NAME-2``, ``NAME-3``... beside it.

    For a default output name, so a second run of a command never meets the first one's files.
    A folder is created here (an atomic claim: two commands started together get two
    folders); for a file (``folder=False``) the number goes before the suffix (``model-2.onnx``).
    """
    path = Path(path)
    stem, suffix = (path.name, "") if folder else (path.stem, path.suffix)
    for n in range(1, 100_000):
        candidate = path if n == 1 else path.with_name(f"{stem}-{n}{suffix}")
        if folder:
            try:
                candidate.mkdir(parents=True)
            except FileExistsError:
                continue
            return candidate
        if not (candidate.exists() or candidate.is_symlink()):
            return candidate
    raise OutputExistsError(f"{path}: no free name beside it; choose {option('out_dir', cli='--out')}")
