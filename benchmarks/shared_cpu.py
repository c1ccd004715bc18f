"""Training on shared cores: part of an epoch alone, then beside another 2-thread job.

    python benchmarks/shared_cpu.py [--model cnn-book] [--images 24000] [--out FILE]

For each OpenMP waiting policy, ``spin`` (libgomp's default: a thread that finishes its share
spins before it sleeps; ``FMNIST_OMP_SPIN=1``) and ``sleep`` (fmnist's default,
``OMP_WAIT_POLICY=PASSIVE``), it trains ``--images`` images (default: half of the 48,000 of an
epoch) of ``--model`` with the preset's recipe and the default thread count, in a fresh
process: alone, then while another process runs 2-thread convolutions (plain torch, libgomp's
defaults: a job fmnist does not control). A fair share of 2 cores is a slow-down of 2x.

Writes a results JSON (default ``benchmarks/results/shared_cpu.json``) with the times, the
thread counts and the load average around each measurement: the machine may be shared with
other work, which the "alone" figure includes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fmnist._files import write_json  # noqa: E402

POLICIES = {"spin": {"FMNIST_OMP_SPIN": "1"}, "sleep": {}}

# One timed part-epoch in a fresh process (the waiting policy is read when libgomp loads).
_TRAIN = """
import json, sys, time
import fmnist
import torch
from fmnist.data import load_dataset, train_val_split
from fmnist.evaluation.metrics import images_to_tensor
from fmnist.models import create_model, get_preset
from fmnist.runs import resolve_config
from fmnist.training import Trainer

model_name, n = sys.argv[1], int(sys.argv[2])
data = load_dataset()
x, _, y, _ = train_val_split(data.x_train, data.y_train, test_size=0.2, random_state=42)
torch.manual_seed(42)
trainer = Trainer(create_model(model_name), resolve_config(get_preset(model_name), device="cpu"))
xs, ys = images_to_tensor(x[:n], trainer.device), torch.as_tensor(y[:n], dtype=torch.long)
trainer.run_epoch(xs[:256], ys[:256])  # warm up: compiled kernels load, memory pools fill
torch.set_num_threads(trainer.threads)
start = time.perf_counter()
trainer.run_epoch(xs, ys)
print(json.dumps({"seconds": time.perf_counter() - start, "threads": trainer.threads,
                  "step_threads": trainer.step_threads}))
"""

# The other job: 2-thread convolutions forward and backward, until it is stopped.
_OTHER = """
import torch
torch.set_num_threads(2)
x = torch.randn(32, 32, 14, 14)
w = torch.randn(64, 32, 3, 3, requires_grad=True)
while True:
    torch.nn.functional.conv2d(x, w, padding=1).sum().backward()
"""


def _env(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FMNIST_OMP_SPIN", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    return {**env, **POLICIES[policy]}


def train_once(model: str, images: int, policy: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _TRAIN, model, str(images)], env=_env(policy),
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the timed training failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model: str, images: int, policy: str, shared: bool) -> dict:
    other = None
    if shared:
        # The other job keeps libgomp's defaults whatever our policy: we do not control it.
        other = subprocess.Popen([sys.executable, "-c", _OTHER], env=_env("spin"))
        time.sleep(2.0)  # let it start computing
    load_before = os.getloadavg()[0]
    try:
        result = train_once(model, images, policy)
    finally:
        if other is not None:
            other.terminate()
            other.wait()
    return {"policy": policy, "shared": shared, **result,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn-book", help="preset to train (default: cnn-book)")
    parser.add_argument("--images", type=int, default=24_000, help="training images to time (default: 24000, "
                                                                     "half an epoch of the 48,000)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shared_cpu.json",
                        help="results JSON (default: benchmarks/results/shared_cpu.json)")
    args = parser.parse_args(argv)
    rows = []
    for policy in POLICIES:
        for shared in (False, True):
            row = measure(args.model, args.images, policy, shared)
            print(f"{policy:<6} {'with another 2-thread job' if shared else 'alone':<26} {row['seconds']:7.1f} s "
                  f"({row['step_threads']} threads; load {row['load_before']} -> {row['load_after']})", flush=True)
            rows.append(row)
    by = {(r["policy"], r["shared"]): r["seconds"] for r in rows}
    slowdown = {p: by[(p, True)] / by[(p, False)] for p in POLICIES}
    for p, s in slowdown.items():
        print(f"{p}: {s:.2f}x slower beside the other job (fair share: 2x)")
    import torch

    write_json(args.out, {
        "benchmark": "shared_cpu", "command": "python benchmarks/shared_cpu.py", "model": args.model,
        "images": args.images, "rows": rows, "slowdown": slowdown,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
