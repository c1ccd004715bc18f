"""Start-up: how long the commands a user types take before they can do anything.

    python benchmarks/startup.py [--repeats 5] [--out FILE]

Each case runs in a fresh interpreter (as typing the command does), ``--repeats`` times; the
median wall time and the median CPU time (user + system of the child) are recorded. On a
shared machine the wall time includes waiting for a core, so the load average before and
after is recorded too; the CPU time is the steadier figure. ``predict`` uses freshly built
models saved in a temporary folder (an MLP and the book's CNN: predicting costs the same for
trained weights) and a generated 90x120 JPEG.

Writes a results JSON (default ``benchmarks/results/startup.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fmnist._files import write_json  # noqa: E402


def cases(folder: Path) -> dict[str, list[str]]:
    fmnist = [sys.executable, "-m", "fmnist"]
    photo = str(folder / "photo.jpg")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import fmnist": [sys.executable, "-c", "import fmnist"],
        "fmnist --help": [*fmnist, "--help"],
        "fmnist models": [*fmnist, "models"],
        "fmnist models cnn-best": [*fmnist, "models", "cnn-best"],
        "fmnist predict MLP photo": [*fmnist, "predict", str(folder / "mlp-200"), photo],
        "fmnist predict CNN photo": [*fmnist, "predict", str(folder / "cnn-book"), photo],
    }


def prepare(folder: Path) -> None:
    """Saved models and a photo, made in a child process (this one stays free of torch)."""
    code = f"""if True:
        import numpy as np, fmnist
        from PIL import Image
        for name in ("mlp-200", "cnn-book"):
            fmnist.save_model(fmnist.create_model(name), {str(folder)!r} + "/" + name, class_names=fmnist.CLASS_NAMES)
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((120, 90, 3)) * 255).astype("uint8")).save({str(folder)!r} + "/photo.jpg")
        import fmnist.models._fused as f, torch
        f.relu_max_pool2d(torch.rand(2, 4, 8, 8))  # compile the kernels now (cached), not in a timed run
    """
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=_env(), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default: 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json",
                        help="results JSON (default: benchmarks/results/startup.json)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        for name, command in cases(folder).items():
            time_once(command)  # warm the file cache
            load_before = os.getloadavg()[0]
            runs = [time_once(command) for _ in range(args.repeats)]
            row = {"command": name, "wall_s": statistics.median(w for w, _ in runs),
                   "cpu_s": statistics.median(c for _, c in runs), "runs": [[round(w, 3), round(c, 3)] for w, c in runs],
                   "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(f"{name:<28}{row['wall_s']:7.2f} s wall {row['cpu_s']:7.2f} s CPU  (load {row['load_before']} -> "
                  f"{row['load_after']})", flush=True)
    write_json(args.out, {
        "benchmark": "startup", "command": "python benchmarks/startup.py", "repeats": args.repeats, "rows": rows,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
