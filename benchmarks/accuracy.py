"""Measure what the README reports about accuracy, and record it in the committed results files.

    python benchmarks/accuracy.py reproduce              # `fmnist reproduce`      -> src/fmnist/measured/reproduce.json
    python benchmarks/accuracy.py presets [PRESET...]    # `fmnist train PRESET`   -> src/fmnist/measured/presets.json
    python benchmarks/accuracy.py presets --no-holdout cnn-best   # its final fit on all 60,000, recorded beside
    make readme                                          # then regenerate the README tables from them

Each command runs exactly as a user would type it (a fresh ``python -m fmnist`` process of this
checkout, output in a temporary folder) and records its scores beside when and where it ran:
the date, the load average before and after (the machine may be shared, and a busy machine
stretches every time), the CPU count and the package versions. ``presets`` replaces only the
entries of the presets it ran, so the expensive ones can be measured on their own.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fmnist._files import write_json  # noqa: E402
from fmnist.measured import ACCURACY_PRESETS, MEASURED_DIR, processor  # noqa: E402


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "processor": processor(),
            "platform": platform.platform()}


def _fmnist(*args: str) -> dict:
    """Run ``fmnist ARGS`` in a child process; return when/where it ran, its wall and CPU seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before, date = os.getloadavg(), datetime.datetime.now(datetime.UTC)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmnist", *args], check=True, env=env)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"command": "fmnist " + " ".join(args), "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()], "machine": _machine(),
            "process_wall_s": round(wall, 2),
            "process_cpu_s": round(cpu_after.ru_utime - cpu_before.ru_utime
                                   + cpu_after.ru_stime - cpu_before.ru_stime, 2)}


def _read(path: Path):
    return json.loads(path.read_text())


def record_reproduce(dest: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reproduce"
        measured = _fmnist("reproduce", "--out", str(out))
        result = _read(out / "results.json")
    for row in result["rows"]:
        row.pop("run_dir", None)  # a temporary folder, gone
    result["data"].pop("source", None)
    record = {"format": "fmnist-measured-reproduce", "format_version": 1,
              "command": "fmnist reproduce --out DIR", "measured": {**measured, "command": "fmnist reproduce"},
              "result": result}
    write_json(dest, record)
    return record


def record_presets(names: list[str], dest: Path, holdout: bool = True) -> dict:
    """Train each preset as ``fmnist train NAME`` (``--no-holdout``: on all the training images, recorded
    under ``"NAME --no-holdout"`` beside the split's run) and record its scores in ``dest``."""
    record = _read(dest) if dest.exists() else {"format": "fmnist-measured-presets", "format_version": 1,
                                                 "presets": {}}
    extra = [] if holdout else ["--no-holdout"]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / name
            measured = _fmnist("train", name, *extra, "--out", str(run), "--quiet")
            info, metrics, history = (_read(run / f) for f in ("run.json", "metrics.json", "history.json"))
        preset = info["preset"]
        val = metrics.get("val") or {}
        key = " ".join([name, *extra])
        record["presets"][key] = {
            **measured, "command": f"fmnist train {key}",
            "spec": preset["spec"], "train": preset["train"], "config": info["config"],
            "val_accuracy": val.get("accuracy"), "val_loss": val.get("loss"),
            "test_accuracy": metrics["test"]["accuracy"], "test_loss": metrics["test"]["loss"],
            "epochs_run": len(history), "weights_epoch": metrics.get("weights_epoch"),
            "stopped": metrics.get("stopped"), "train_time_s": metrics["train_time_s"],
            "versions": info["versions"]}
        # Written after every preset: an interrupted series keeps what it measured.
        write_json(dest, record)
        scores = f"val {val['accuracy']:.4f}, " if val else ""
        print(f"{key}: {scores}test {metrics['test']['accuracy']:.4f}, {metrics['train_time_s']:.0f} s -> {dest}",
              flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("reproduce", help="run `fmnist reproduce` and record its results")
    p = sub.add_parser("presets", help="train presets with `fmnist train` and record their scores")
    p.add_argument("names", nargs="*", default=list(ACCURACY_PRESETS),
                   help=f"presets (default: {' '.join(ACCURACY_PRESETS)})")
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="train each on all the training images (`fmnist train NAME --no-holdout`): the final fit")
    p.add_argument("--out", type=Path, default=MEASURED_DIR / "presets.json", help="results file to update")
    parser.add_argument("--reproduce-out", type=Path, default=MEASURED_DIR / "reproduce.json",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.what == "reproduce":
        record_reproduce(args.reproduce_out)
    else:
        record_presets(args.names, args.out, args.holdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
