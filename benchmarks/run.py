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

For the convolutional preset cnn-book (skip with ``--no-conv``): its real epoch (Adam, batch
32) against its conv/linear-only floor (``conv_floor``) and against Keras's 38.6 s per epoch,
measured in this run when TensorFlow is importable, else issue 3's reference, labelled so.

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
from fmnist.models import create_model, get_preset  # noqa: E402
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


# issue 3: the book's CNN (chapter 8-2) in Keras 3 / TensorFlow 2.21, one epoch of 48,000 images
# at batch 32 on a 2-core machine like this one. Printed as a reference when TF is not importable.
KERAS_CNN_REFERENCE_S = 38.6
CONV_PRESETS = ("cnn-book",)


def conv_layers(model: nn.Module, sample: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor]]:
    """(conv or linear module, its input for one image) in forward order, from one traced pass."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach())))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(sample)
    model.train()
    for h in hooks:
        h.remove()
    return seen


def conv_floor(model: nn.Module, sample: torch.Tensor, steps: int, repeats: int) -> tuple[float, float]:
    """(seconds, GFLOP) of every conv/linear layer's forward and backward products, alone.

    At batch 32 over ``steps`` steps: ``conv2d`` forward and ``convolution_backward`` (input
    gradient skipped for the first layer, as autograd does), the three matmuls of each linear
    layer; inputs in the memory format the model sees them (channels-last for convolutions).
    Nothing else of a step (activations, pooling, optimizer) is included.
    """
    work, flop = [], 0.0
    for k, (m, x1) in enumerate(conv_layers(model, sample)):
        x = x1.expand(BATCH, *x1.shape[1:]).clone(memory_format=torch.preserve_format).uniform_()
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach()
            y = torch.nn.functional.conv2d(x, w, m.bias, m.stride, m.padding)
            g = torch.rand_like(y)
            mask = [k > 0, True, True]
            flop += 2 * y.numel() * w[0].numel() * (2 + (k > 0))

            def run_conv(x=x, w=w, g=g, m=m, mask=mask):
                torch.nn.functional.conv2d(x, w, m.bias, m.stride, m.padding)
                torch.ops.aten.convolution_backward(g, x, w, [w.shape[0]], list(m.stride), list(m.padding),
                                                    [1, 1], False, [0, 0], 1, mask)
            work.append(run_conv)
        else:
            x = x.reshape(BATCH, -1).contiguous()
            w, g = m.weight.detach(), torch.rand(BATCH, m.out_features)
            flop += 2 * BATCH * m.in_features * m.out_features * (2 + (k > 0))

            def run_linear(x=x, w=w, g=g, first=k == 0):
                torch.mm(x, w.t())
                torch.mm(g.t(), x)
                if not first:
                    torch.mm(g, w)
            work.append(run_linear)
    for fn in work:  # warm up (oneDNN primitive creation)
        fn()
    # A tenth of the epoch's steps, scaled: the floor of a 1,500-step epoch is itself ~10 s.
    part = max(1, steps // 10)
    seconds = median_time(lambda: [fn() for _ in range(part) for fn in work], repeats)[0] * steps / part
    return seconds, flop * steps / 1e9


def keras_cnn_epoch(x: np.ndarray, y: np.ndarray, repeats: int) -> float | None:
    """The book's CNN (chapter 8-2) in Keras, one epoch at batch 32; None without TensorFlow."""
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return None
    from keras import layers

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(100, activation="relu"), layers.Dropout(0.4),
        layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs = (x.astype("float32") / 255.0)[..., None]
    model.fit(xs[:BATCH * 10], y[:BATCH * 10], batch_size=BATCH, epochs=1, verbose=0)  # build + trace
    return median_time(lambda: model.fit(xs, y, batch_size=BATCH, epochs=1, verbose=0), repeats)[0]


def conv_presets(x_tr, y_tr, xs, ys, steps: int, repeats: int, keras_repeats: int) -> dict:
    """Epoch time of each convolutional preset at its own optimizer, against its conv floor."""
    out = {}
    for name in CONV_PRESETS:
        torch.manual_seed(0)
        model = create_model(name)
        trainer = Trainer(model, TrainConfig(epochs=1, device="cpu", optimizer=get_preset(name).train["optimizer"]))
        threads = torch.get_num_threads()
        train_threads = trainer.train_threads(xs[:1])
        torch.set_num_threads(train_threads)
        floor, gflop = conv_floor(model, xs[:1], steps, repeats)
        torch.set_num_threads(threads)
        trainer.run_epoch(xs[:BATCH * 10], ys[:BATCH * 10])  # warm up
        epoch, epoch_all = median_time(lambda t=trainer: t.run_epoch(xs, ys), repeats)
        keras = keras_cnn_epoch(x_tr, y_tr, keras_repeats) if name == "cnn-book" else None
        out[name] = {"train_threads": train_threads, "conv_floor_s": floor, "floor_gflop": gflop,
                     "floor_gflop_per_s": gflop / floor, "epoch_s": epoch, "epoch_runs_s": epoch_all,
                     "epoch_vs_floor": epoch / floor, "keras_epoch_s": keras,
                     "keras_reference_s": KERAS_CNN_REFERENCE_S,
                     "keras_vs_ours": (keras or KERAS_CNN_REFERENCE_S) / epoch,
                     "keras_measured": keras is not None}
    return out


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
        for _ in range(max(3, repeats // 2)):  # each first load is one sample: take a median of 3+
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
    parser.add_argument("--no-conv", action="store_true", help="skip the convolutional presets (~2 minutes)")
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
    if not args.no_conv:
        results["conv"] = conv_presets(x_tr, y_tr, xs, ys, steps, 3, 1 if args.quick else 3)
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
    if results.get("conv"):
        print(f"{'conv preset':<13}{'threads':>8}{'floor':>9}{'GFLOP/s':>9}{'epoch':>9}{'x floor':>9}{'keras':>9}"
              f"{'keras/ours':>12}")
    for name, r in results.get("conv", {}).items():
        keras = f"{r['keras_epoch_s']:.1f}s" if r["keras_measured"] else f"({r['keras_reference_s']:.1f}s)"
        print(f"{name:<13}{r['train_threads']:>8}{r['conv_floor_s']:>8.2f}s{r['floor_gflop_per_s']:>9.1f}"
              f"{r['epoch_s']:>8.2f}s{r['epoch_vs_floor']:>8.2f}x{keras:>9}{r['keras_vs_ours']:>11.2f}x")
        if not r["keras_measured"]:
            print(f"  (TensorFlow not importable: keras/ours is against issue 3's reference {r['keras_reference_s']}s"
                  " per epoch, measured on a 2-core machine like this one, not in this run)")
    d = results["data_load"]
    print(f"data load: first (verified, empty cache) {d['first_s']:.3f}s, later {d['later_s']:.4f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
