"""Measure what the README reports about ``fmnist audit``, into src/fmnist/measured/audit.json.

    python benchmarks/audit.py audit  --keep DIR                 # `fmnist audit` on Fashion-MNIST: time, findings
    python benchmarks/audit.py effect --audit DIR/audit.json [MODEL...]   # test accuracy without the flagged images
    python benchmarks/audit.py planted --seed 1                  # faults planted at random: what the audit finds
    make readme                                                  # then the README's audit section from audit.json

Each command runs ``fmnist`` as a user would (a fresh ``python -m fmnist`` process of this
checkout) and records, beside its results, when and where it ran: the date, the load average
before and after (the machine may be shared: a busy one stretches every time), the CPU count,
wall and CPU seconds. Each replaces only its own entry of audit.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fmnist._files import write_json  # noqa: E402

RESULTS = ROOT / "src" / "fmnist" / "measured" / "audit.json"


def _fmnist(*args: str, capture: bool = False) -> dict:
    """Run ``fmnist ARGS`` in a child process; return when/where it ran, wall and CPU seconds (and stdout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before, date = os.getloadavg(), datetime.datetime.now(datetime.UTC)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fmnist", *args], check=True, env=env,
                          stdout=subprocess.PIPE if capture else None, text=True)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {"command": "fmnist " + " ".join(args), "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "loadavg_before": [round(v, 2) for v in load_before],
              "loadavg_after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
              "wall_s": round(wall, 1),
              "cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1)}
    if capture:
        record["stdout"] = done.stdout
    return record


def _update(key: str, value) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    write_json(RESULTS, results)
    print(f"recorded {key} in {RESULTS.relative_to(ROOT)}")


def cmd_audit(args) -> None:
    out = Path(args.keep)
    record = _fmnist("audit", "--out", str(out))
    result = json.loads((out / "audit.json").read_text())
    s = result["summary"]
    _update("audit", {**record, "model": s["model"], "folds": s["folds"], "epochs": s["training"]["epochs"],
                      "times_s": s["times_s"],
                      "thresholds": {k: v for k, v in s["thresholds"].items() if k != "why"},
                      "counts": {k: s[k] for k in ("exact_duplicates", "near_duplicates", "label_issues", "outliers")},
                      "accuracy": s["accuracy"]})


def cmd_effect(args) -> None:
    entries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            entry = {}
            for name, extra in (("full", []), ("cleaned", ["--exclude", args.audit])):
                run = Path(tmp) / f"{model}-{name}"
                trained = _fmnist("train", model, "--seed", str(args.seed), "--quiet", "--out", str(run), *extra)
                scored = _fmnist("evaluate", str(run), "--split", "test", "--exclude", args.audit, "--json",
                                 capture=True)
                score = json.loads(scored.pop("stdout"))
                metrics = json.loads((run / "metrics.json").read_text())
                entry[name] = {"train": trained, "val_accuracy": metrics["val"]["accuracy"],
                               "train_images": json.loads((run / "run.json").read_text())["data"].get(
                                   "exclude", {}).get("count", 0),
                               "test_accuracy": score["accuracy"], "test_n": score["n"],
                               "cleaned_test_accuracy": score["cleaned"]["accuracy"],
                               "cleaned_test_n": score["cleaned"]["n"]}
            entries[model] = entry
            print(model, json.dumps({k: {m: v[m] for m in ("test_accuracy", "cleaned_test_accuracy")}
                                     for k, v in entry.items()}))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    _update("effect", {**results.get("effect", {}), **entries, "seed": args.seed, "audit": args.audit})


def cmd_planted(args) -> None:
    import numpy as np

    import fmnist
    from fmnist.auditing.planted import plant_faults, score_audit
    from fmnist.data import write_idx

    ds = fmnist.load_dataset()
    counts = {"flips": args.flips, "test_flips": args.test_flips, "exact_leaks": args.leaks,
              "near_leaks": args.near_leaks, "hard_leaks": args.hard_leaks, "duplicates": args.duplicates,
              "near_duplicates": args.near_duplicates, "outliers": args.outliers}
    planted = plant_faults(ds.x_train, ds.y_train, ds.x_test, ds.y_test, seed=args.seed, **counts)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for name, arr in (("train-images-idx3-ubyte", planted.x_train), ("train-labels-idx1-ubyte", planted.y_train),
                          ("t10k-images-idx3-ubyte", planted.x_test), ("t10k-labels-idx1-ubyte", planted.y_test)):
            write_idx(data / name, np.asarray(arr, dtype=np.uint8))
        record = _fmnist("audit", "--data-dir", str(data), "--dataset", "custom", "--out", str(Path(tmp) / "audit"))
        result = json.loads((Path(tmp) / "audit" / "audit.json").read_text())
    record["command"] = f"python benchmarks/audit.py planted --seed {args.seed} (then {record['command']})"
    score = score_audit(result, planted)
    print(json.dumps(score, indent=2))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    s = result["summary"]
    _update("planted", {**results.get("planted", {}), str(args.seed): {
        **record, "planted": counts, "found": score, "model": s["model"], "epochs": s["training"]["epochs"],
        "folds": s["folds"], "times_s": s["times_s"]}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("audit", help="fmnist audit on Fashion-MNIST with the default model")
    p.add_argument("--keep", required=True, help="folder for the audit (its audit.json serves 'effect')")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("effect", help="train each model with and without the flagged images; score both test sets")
    p.add_argument("models", nargs="*", default=["mlp-200"], help="presets (default: mlp-200)")
    p.add_argument("--audit", required=True, help="the audit.json (from 'audit --keep DIR')")
    p.add_argument("--seed", type=int, default=42, help="training seed for both runs (default: 42)")
    p.set_defaults(func=cmd_effect)
    p = sub.add_parser("planted", help="plant faults at random in a copy of Fashion-MNIST; audit it; score")
    p.add_argument("--seed", type=int, default=1, help="where the faults go (default: 1)")
    p.add_argument("--flips", type=int, default=600, help="training labels flipped (default: 600, 1%%)")
    p.add_argument("--test-flips", type=int, default=100, help="test labels flipped (default: 100, 1%%)")
    p.add_argument("--leaks", type=int, default=50, help="exact train/test copies (default: 50)")
    p.add_argument("--near-leaks", type=int, default=120,
                   help="changed train/test copies, the kinds of planted.NEAR_KINDS in turn (default: 120)")
    p.add_argument("--hard-leaks", type=int, default=20, help="rotated or rescaled train/test copies (default: 20)")
    p.add_argument("--duplicates", type=int, default=50, help="training images copied over others (default: 50)")
    p.add_argument("--near-duplicates", type=int, default=60,
                   help="changed training copies over others, the kinds of planted.NEAR_KINDS in turn (default: 60)")
    p.add_argument("--outliers", type=int, default=50,
                   help="images that are no garment, the kinds of planted.OUTLIER_KINDS in turn (default: 50)")
    p.set_defaults(func=cmd_planted)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
