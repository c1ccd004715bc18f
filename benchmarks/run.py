"""fmnist's speed, measured against this machine's arithmetic limit, in one run.

    python benchmarks/run.py [--json] [--quick] [--threads N]

For each preset (softmax, mlp-200, mlp-200-100) it times:

- the GEMM-only floor: the three matrix products of every dense layer's forward and backward
  pass (``x @ W.T``, ``g.T @ x``, ``g @ W``) at batch 32, alone, over one epoch's worth of steps
  (1,500 for 48,000 images);
- the real training epoch (``Trainer.run_epoch``: 48,000 images, batch 32, Keras RMSprop);
- evaluating the 12,000 validation images (``log_proba_tensors``) against the forward pass's
  matmul floor on the same 12,000, and prediction throughput (``predict_proba`` on uint8
  images, images/s);
- with TensorFlow importable, the same model in Keras (``model.fit``, one epoch), else "skipped".

Plus the data load (first verified load into an empty ``FMNIST_CACHE``, then a later load).
Every time is the median of repeats: the machine may be shared, so also the load average
is printed. Ratios compare numbers taken in this same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from fmnist.data import load_dataset, train_val_split  # noqa: E402
from fmnist.evaluation.metrics import images_to_tensor, log_proba_tensors, predict_proba  # noqa: E402
from fmnist.models import create_model  # noqa: E402
from fmnist.training import TrainConfig, Trainer  # noqa: E402

PRESETS = ("softmax", "mlp-200", "mlp-200-100")
BATCH = 32


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def dense_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def gemm_floor(shapes, steps: int, repeats: int) -> float:
    """Seconds for ``steps`` repetitions of every layer's three batch-32 matmuls (forward, dW, dx)."""
    mats = [(torch.rand(BATCH, i), torch.rand(o, i), torch.rand(BATCH, o), torch.empty(BATCH, o),
             torch.empty(o, i), torch.empty(BATCH, i)) for i, o in shapes]

    def run():
        for _ in range(steps):
            for x, w, g, out, gw, gx in mats:
                torch.mm(x, w.t(), out=out)
                torch.mm(g.t(), x, out=gw)
                torch.mm(g, w, out=gx)

    run_short = lambda: [torch.mm(x, w.t(), out=out) for x, w, g, out, gw, gx in mats]  # noqa: E731
    run_short()  # warm up MKL
    return median_time(run, repeats)[0]


def forward_floor(shapes, n: int, repeats: int) -> float:
    """Seconds for the forward matmuls of ``n`` images (one product per layer)."""
    mats = [(torch.rand(n, i), torch.rand(o, i), torch.empty(n, o)) for i, o in shapes]
    return median_time(lambda: [torch.mm(x, w.t(), out=out) for x, w, out in mats], repeats)[0]


def keras_epoch(name: str, x: np.ndarray, y: np.ndarray, repeats: int) -> float | None:
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return None
    from keras import layers

    hidden = {"softmax": [], "mlp-200": [200], "mlp-200-100": [200, 100]}[name]
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                              *(layers.Dense(u, activation="relu") for u in hidden),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs = x.astype("float32") / 255.0
    model.fit(xs[:BATCH * 10], y[:BATCH * 10], batch_size=BATCH, epochs=1, verbose=0)  # build + trace
    return median_time(lambda: model.fit(xs, y, batch_size=BATCH, epochs=1, verbose=0), repeats)[0]


def data_load(repeats: int) -> dict[str, float]:
    """First (verified, from the .gz files) and later loads with a fresh, empty FMNIST_CACHE."""
    old = os.environ.get("FMNIST_CACHE")
    firsts, laters = [], []
    try:
        for _ in range(max(1, repeats // 2)):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["FMNIST_CACHE"] = cache
                firsts.append(median_time(load_dataset, 1)[0])
                laters.append(median_time(load_dataset, repeats)[0])
    finally:
        if old is None:
            os.environ.pop("FMNIST_CACHE", None)
        else:
            os.environ["FMNIST_CACHE"] = old
    return {"first_s": statistics.median(firsts), "later_s": statistics.median(laters)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 5; 1 Keras epoch)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 5
    load_before = os.getloadavg()

    data = load_dataset()
    x_tr, x_val, y_tr, y_val = train_val_split(data.x_train, data.y_train)
    xs, ys = images_to_tensor(x_tr), torch.as_tensor(y_tr, dtype=torch.long)
    xv = images_to_tensor(x_val)
    steps = -(-len(x_tr) // BATCH)

    results: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                 "cpus": os.cpu_count(), "torch": torch.__version__,
                                 "torch_threads": torch.get_num_threads(),
                                 "train_threads": Trainer.cpu_train_threads or torch.get_num_threads()},
                     "repeats": repeats, "presets": {}}
    for name in PRESETS:
        torch.manual_seed(0)
        model = create_model(name)
        shapes = dense_shapes(model)
        # The floor runs with the thread count the training steps use (Trainer.cpu_train_threads).
        threads = torch.get_num_threads()
        torch.set_num_threads(Trainer.cpu_train_threads or threads)
        floor = gemm_floor(shapes, steps, repeats)
        torch.set_num_threads(threads)
        trainer = Trainer(model, TrainConfig(epochs=1, device="cpu"))
        epoch, epoch_all = median_time(lambda: trainer.run_epoch(xs, ys), repeats)
        log_proba_tensors(model, xv)  # warm up
        ev, _ = median_time(lambda: log_proba_tensors(model, xv), repeats * 3)
        ev_floor = forward_floor(shapes, len(xv), repeats * 3)
        pred, _ = median_time(lambda: predict_proba(model, x_val), repeats * 3)
        keras = keras_epoch(name, x_tr, y_tr, 1 if args.quick else 3)
        results["presets"][name] = {
            "gemm_floor_s": floor, "epoch_s": epoch, "epoch_runs_s": epoch_all, "epoch_vs_floor": epoch / floor,
            "eval_s": ev, "eval_floor_s": ev_floor, "eval_vs_floor": ev / ev_floor,
            "predict_images_per_s": len(x_val) / pred,
            "keras_epoch_s": keras, "keras_vs_ours": (keras / epoch) if keras else None,
        }
    results["data_load"] = data_load(repeats)
    results["loadavg_before"], results["loadavg_after"] = load_before, os.getloadavg()

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    m = results["machine"]
    print(f"{m['processor'] or m['platform']}: {m['cpus']} CPUs, torch {m['torch']} "
          f"({m['train_threads']} thread(s) training, {m['torch_threads']} evaluating); medians of {repeats}; load average "
          f"{results['loadavg_before'][0]:.1f} -> {results['loadavg_after'][0]:.1f}")
    print(f"{'preset':<13}{'floor':>8}{'epoch':>8}{'x floor':>9}{'eval':>9}{'ev floor':>10}{'x floor':>9}"
          f"{'predict/s':>12}{'keras':>9}")
    for name, r in results["presets"].items():
        keras = f"{r['keras_epoch_s']:.2f}s" if r["keras_epoch_s"] else "skipped"
        print(f"{name:<13}{r['gemm_floor_s']:>7.3f}s{r['epoch_s']:>7.3f}s{r['epoch_vs_floor']:>8.2f}x"
              f"{r['eval_s']:>8.4f}s{r['eval_floor_s']:>9.4f}s{r['eval_vs_floor']:>8.2f}x"
              f"{r['predict_images_per_s']:>12,.0f}{keras:>9}")
    d = results["data_load"]
    print(f"data load: first (verified, empty cache) {d['first_s']:.3f}s, later {d['later_s']:.4f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
