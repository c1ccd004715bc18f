"""The CNNs on a CUDA device: epochs with the data resident there, beside plain PyTorch, and whole runs.

    python benchmarks/gpu.py --out src/fmnist/measured/gpu.json      # on a machine with CUDA; then make readme
    python benchmarks/gpu.py --device cpu --quick                     # this script's own check, anywhere

fmnist needs no GPU; where one is present the same loop trains on it (``--device auto``). This measures:

- epochs: cnn-book (batch 32, Adam, float32) and cnn-best (batch 256, AdamW, its ``auto`` precision:
  bfloat16 where the device has it), 48,000 images resident on the device, timed as
  ``benchmarks/run.py`` times them on the CPU: fmnist's ``Trainer.run_epoch`` and the same network
  written plainly in PyTorch eager (``run.eager_network``, under ``torch.autocast`` for bfloat16),
  taking turns, an epoch each a round, each epoch ended by a device synchronisation; no augmentation;
- runs: ``fmnist train cnn-book`` and ``fmnist train cnn-best`` as a user runs them (the preset's
  epochs, augmentation and early stopping), their wall time, training time and accuracies;
- every torch preset trained for one epoch by ``fmnist train`` on the device: the one loop works
  there for each of them (a failure is recorded with its last line, and the script goes on).

Each part is written to ``--out`` as soon as it is measured, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from fmnist._files import write_json  # noqa: E402
from fmnist.data import load_dataset, train_val_split  # noqa: E402
from fmnist.evaluation.metrics import images_to_tensor  # noqa: E402
from fmnist.models import create_model, get_preset, list_models  # noqa: E402
from fmnist.training import TrainConfig, Trainer  # noqa: E402
from fmnist.training.loop import resolve_precision  # noqa: E402
from run import eager_network, parameters, say  # noqa: E402  (benchmarks/run.py)

EPOCH_PRESETS = ("cnn-book", "cnn-best")
SRC = Path(__file__).resolve().parents[1] / "src"


def synced(device: torch.device, fn) -> float:
    """Seconds for ``fn()``, the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def epochs(preset: str, xs: torch.Tensor, ys: torch.Tensor, device: torch.device, rounds: int) -> dict:
    """fmnist's and plain PyTorch's epochs of ``preset``'s network, taking turns for ``rounds`` rounds."""
    train = get_preset(preset).train
    batch = train.get("batch_size", 32)
    precision = resolve_precision(train.get("precision", "float32"), device)
    torch.manual_seed(0)
    trainer = Trainer(create_model(preset), TrainConfig(
        epochs=1, device=str(device), optimizer=train["optimizer"], lr=train.get("lr"), batch_size=batch,
        precision=precision))
    torch.manual_seed(0)
    net, opt = eager_network(preset)
    if parameters(net) != parameters(trainer.model):
        raise SystemExit(f"run.eager_network({preset!r}) is not {preset}'s network (parameter counts differ)")
    net = net.to(device)
    opt = type(opt)(net.parameters(), **{k: v for k, v in opt.defaults.items() if k in ("lr", "weight_decay", "eps")})
    images = xs.unsqueeze(1).contiguous(memory_format=torch.channels_last)
    bf16 = precision == "bfloat16"

    def eager_epoch(n=len(images)):
        net.train()
        for idx in torch.randperm(n, device=device).split(batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(images[idx])
            loss = F.cross_entropy(logits.float(), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def ours_epoch(n=len(xs)):
        trainer.run_epoch(xs[:n], ys[:n])

    # Warm up: kernels chosen, memory pooled; fmnist for a whole epoch, in which it captures its
    # CUDA graph (after batch norm's first 100 steps, where the network has batch norm).
    synced(device, ours_epoch)
    synced(device, lambda: eager_epoch(min(batch * 10, len(xs))))
    ours, eager = [], []
    for i in range(rounds):
        say(f"{preset}: round {i + 1} of {rounds}")
        ours.append(synced(device, ours_epoch))
        eager.append(synced(device, eager_epoch))
    ratios = [e / o for e, o in zip(eager, ours)]
    return {"batch": batch, "precision": precision, "images": len(xs), "epoch_s": statistics.median(ours),
            "epoch_runs_s": ours, "eager_epoch_s": statistics.median(eager), "eager_runs_s": eager,
            "eager_vs_ours": statistics.median(ratios), "eager_vs_ours_rounds": ratios}


def cli_train(preset: str, device: str, out: Path, extra: list[str]) -> dict:
    """``fmnist train PRESET`` in a process of its own; its wall time and what its run folder records."""
    cmd = [sys.executable, "-m", "fmnist", "train", preset, "--device", device, "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    record = {"command": " ".join(["fmnist", *cmd[3:5], "--device", device, *extra]), "wall_s": wall,
              "exit": done.returncode}
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        record["error"] = lines[-1] if lines else f"exit {done.returncode}"
        return record
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    history = history.get("history", history) if isinstance(history, dict) else history
    run = json.loads((out / "run.json").read_text())
    record.update(train_time_s=metrics["train_time_s"], epochs=len(history),
                  epoch_s=statistics.median(h["time"] for h in history),
                  precision=run["config"].get("precision"), device=run["config"].get("device"),
                  val_accuracy=metrics.get("val", {}).get("accuracy"), test_accuracy=metrics["test"]["accuracy"])
    return record


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from fmnist.measured import processor

    return processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (to check this script)")
    parser.add_argument("--rounds", type=int, default=3, help="epochs of each stack, taking turns (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="2,048 images, one round, one-epoch runs: checks the script, measures nothing")
    parser.add_argument("--out", type=Path, help="write the results here as JSON (each part as it is measured)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu.py: --device {args.device}: no CUDA device here; measure on a machine with one", file=sys.stderr)
        return 1
    data = load_dataset()
    x_tr, _, y_tr, _ = train_val_split(data.x_train, data.y_train)
    images = 2048 if args.quick else len(x_tr)
    xs = images_to_tensor(x_tr[:images], device)
    ys = torch.as_tensor(y_tr[:images], dtype=torch.long, device=device)
    results = {
        "format": "fmnist-measured-gpu", "format_version": 1,
        "command": "python benchmarks/gpu.py" + (f" --device {args.device}" if args.device != "cuda" else "")
                   + (" --quick" if args.quick else "") + (f" --rounds {args.rounds}" if args.rounds != 3 else ""),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"device": device_name(device), "platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()},
        "epochs": {}, "runs": {}, "presets": {}}

    def save():
        if args.out:
            write_json(args.out, results)

    for preset in EPOCH_PRESETS:
        results["epochs"][preset] = epochs(preset, xs, ys, device, 1 if args.quick else args.rounds)
        save()
    with tempfile.TemporaryDirectory() as tmp:
        quick = ["--epochs", "1"] if args.quick else []
        for preset in EPOCH_PRESETS:
            say(f"fmnist train {preset}")
            results["runs"][preset] = cli_train(preset, args.device, Path(tmp, "run", preset), quick)
            save()
        for preset in list_models():
            if get_preset(preset).family != "torch" or preset in EPOCH_PRESETS:
                continue
            say(f"fmnist train {preset} --epochs 1")
            results["presets"][preset] = cli_train(preset, args.device, Path(tmp, "one", preset), ["--epochs", "1"])
            save()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
