"""Start-up: how long the commands a user types take before they can do anything.

    python benchmarks/startup.py [--repeats 5] [--out FILE]

Each command runs in a fresh interpreter (as typing it does): once to warm the file cache,
then ``--repeats`` times; the median wall time and the median CPU time (user + system of the
child) are recorded. On a shared machine the wall time includes waiting for a core, so the
load average before and after each command is recorded too; the CPU time is the steadier
figure. ``predict`` uses models saved in a temporary folder (an MLP and the book's CNN, as
fresh from ``create_model``: predicting costs the same for trained weights) and a generated
1200x1600 JPEG of a dark garment on a light background, which goes through the whole photo
pipeline (segmentation included).

Writes a results JSON (default ``src/fmnist/measured/startup.json``, which ``make readme``
renders into the README).
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
    """Name (as the README shows it) -> argv."""
    fmnist = [sys.executable, "-m", "fmnist"]
    photo = str(folder / "photo.jpg")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "fmnist --help": [*fmnist, "--help"],
        "fmnist models": [*fmnist, "models"],
        "fmnist models cnn-book": [*fmnist, "models", "cnn-book"],
        "fmnist predict MLP photo.jpg": [*fmnist, "predict", str(folder / "mlp-200"), photo],
        "fmnist predict CNN photo.jpg": [*fmnist, "predict", str(folder / "cnn-book"), photo],
    }


def prepare(folder: Path) -> None:
    """Saved models and a photo, made in a child process (this one stays free of torch)."""
    code = f"""if True:
        import numpy as np, fmnist
        from PIL import Image, ImageDraw
        for name in ("mlp-200", "cnn-book"):
            fmnist.save_model(fmnist.create_model(name), {str(folder)!r} + "/" + name, class_names=fmnist.CLASS_NAMES)
        photo = Image.new("RGB", (1200, 1600), (236, 233, 228))
        draw = ImageDraw.Draw(photo)  # a T-shirt: body and sleeves, dark on a light background
        draw.rectangle((380, 300, 820, 1300), fill=(40, 60, 110))
        draw.polygon([(380, 300), (180, 620), (300, 700), (380, 520)], fill=(40, 60, 110))
        draw.polygon([(820, 300), (1020, 620), (900, 700), (820, 520)], fill=(40, 60, 110))
        noise = np.random.default_rng(0).normal(0, 4, (1600, 1200, 3))
        photo = Image.fromarray(np.clip(np.asarray(photo) + noise, 0, 255).astype("uint8"))
        photo.save({str(folder)!r} + "/photo.jpg", quality=90)
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


def versions() -> dict[str, str]:
    """The libraries whose import dominates start-up (read from metadata, not imported)."""
    from importlib.metadata import version

    import fmnist

    return {"python": platform.python_version(), "fmnist": fmnist.__version__,
            **{name: version(name) for name in ("torch", "numpy", "scipy", "scikit-image")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each command (default: 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "fmnist" / "measured" / "startup.json",
                        help="results JSON (default: src/fmnist/measured/startup.json)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        for name, command in cases(folder).items():
            time_once(command)  # warm the file cache
            load_before = os.getloadavg()
            runs = [time_once(command) for _ in range(args.repeats)]
            row = {"command": name, "wall_s": statistics.median(w for w, _ in runs),
                   "cpu_s": statistics.median(c for _, c in runs), "runs": [[round(w, 3), round(c, 3)] for w, c in runs],
                   "loadavg_before": [round(x, 2) for x in load_before],
                   "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
            rows.append(row)
            print(f"{name:<30}{row['wall_s']:7.2f} s wall {row['cpu_s']:7.2f} s CPU  (load "
                  f"{row['loadavg_before'][0]} -> {row['loadavg_after'][0]})", flush=True)
    write_json(args.out, {
        "benchmark": "startup", "command": "python benchmarks/startup.py", "repeats": args.repeats, "rows": rows,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
