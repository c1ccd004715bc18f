"""fmnist's speed, measured against this machine's arithmetic limit and other stacks, in one run.

    python benchmarks/run.py [--quick] [--threads N] [--out FILE] [--json]     # or: make bench

For each dense preset (softmax, mlp-200, mlp-200-100) it times:

- the GEMM floor: the matrix products one training step needs at batch 32 (``x @ W.T`` forward,
  ``g.T @ x`` weight gradient, ``g @ W`` input gradient for every layer but the first, whose input
  gradient training never computes), alone, over one epoch's steps (1,500 for 48,000 images);
- the real training epoch (``Trainer.run_epoch``: 48,000 images, batch 32, Keras RMSprop);
- evaluating the 12,000 validation images (``log_proba_tensors``) against the forward pass's
  matmul floor on the same 12,000, and prediction throughput (``predict_proba`` on uint8 images);
- with TensorFlow importable, the same model in Keras (``model.fit``, one epoch), else "not measured";
  every Keras epoch is timed in a process of its own (``keras_epoch.py``), never beside torch.

For the book's CNN, cnn-book (skip with ``--no-conv``): fmnist's epoch (Adam, batch 32), the same
network written plainly in PyTorch eager (channels-last, ``torch.optim.Adam``, ``--eager-threads``
threads) and Keras's epoch when TensorFlow is importable, taking turns in rounds (``--conv-repeats``:
one epoch of each stack a round, each in a process of its own; see ``conv_stacks`` and
``stack_child``), and the floor: the epoch's FLOPs (every conv as im2col products, every linear
layer's products; the first layer's input gradient left out) at the best sgemm rate measured in
this run on those very shapes. Where the CPU has
bfloat16 dot products, the three stacks again with bfloat16 mixed precision, against the
bfloat16 GEMM floor. Then our recipe's network, cnn-best, the same way at its own batch size (256),
optimizer (AdamW) and precision (bfloat16 where the CPU has bfloat16 dot products): the three
stacks train the same network (batch norm, dropout; the parameter counts are checked equal), and
none augments its images, so the epochs compare the networks' steps alone.

Plus the data load (first verified load into an empty ``FMNIST_CACHE``, then a later load).
Every time is the median of repeats (or rounds); the machine may be shared, so the load average
before and after is recorded. Ratios compare numbers taken in this same run; a CNN's, the
median of the ratios within each round. ``--out FILE`` writes the
results (with the date and the load average) as JSON: the committed one,
``src/fmnist/measured/benchmark.json``, is what ``make readme`` turns into the README's tables.
"""

from __future__ import annotations

import argparse
import datetime
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
from torch.nn import functional as F  # noqa: E402

from fmnist._files import write_json  # noqa: E402
from fmnist.data import load_dataset, train_val_split  # noqa: E402
from fmnist.evaluation.metrics import images_to_tensor, log_proba_tensors, one_view, predict_proba  # noqa: E402
from fmnist.measured import processor  # noqa: E402
from fmnist.models import create_model, get_preset  # noqa: E402
from fmnist.training import TrainConfig, Trainer  # noqa: E402
from fmnist.training.config import DEFAULT_WEIGHT_DECAY  # noqa: E402
from fmnist.training.loop import bfloat16_native, resolve_precision  # noqa: E402

PRESETS = ("softmax", "mlp-200", "mlp-200-100")
CONV_PRESET = "cnn-book"
RECIPE_PRESET = "cnn-best"
BATCH = 32


def say(what: str) -> None:
    """Progress on stderr: a full run takes minutes, more on a shared machine."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


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
    """Seconds for ``steps`` training steps' matrix products at batch 32, alone.

    Forward and weight gradient for every layer; the input gradient for every layer but the
    first (the images need no gradient, so training never computes it).
    """
    mats = [(torch.rand(BATCH, i), torch.rand(o, i), torch.rand(BATCH, o), torch.empty(BATCH, o),
             torch.empty(o, i), torch.empty(BATCH, i), k > 0) for k, (i, o) in enumerate(shapes)]

    def run():
        for _ in range(steps):
            for x, w, g, out, gw, gx, needs_gx in mats:
                torch.mm(x, w.t(), out=out)
                torch.mm(g.t(), x, out=gw)
                if needs_gx:
                    torch.mm(g, w, out=gx)

    for x, w, _, out, *_ in mats:  # warm up MKL
        torch.mm(x, w.t(), out=out)
    return median_time(run, repeats)[0]


def forward_floor(shapes, n: int, repeats: int) -> float:
    """Seconds for the forward matmuls of ``n`` images (one product per layer)."""
    mats = [(torch.rand(n, i), torch.rand(o, i), torch.empty(n, o)) for i, o in shapes]
    return median_time(lambda: [torch.mm(x, w.t(), out=out) for x, w, out in mats], repeats)[0]


def step_products(model: nn.Module, sample: torch.Tensor, batch: int = BATCH) -> list[tuple[str, int, int, int]]:
    """The (label, M, K, N) matrix products of one training step at ``batch``, as im2col GEMMs.

    A convolution with C_in channels, a k x k kernel and C_out filters over an H x W output is
    forward (B*H*W, C_in*k*k) @ (C_in*k*k, C_out), weight gradient (C_out, B*H*W) @ (B*H*W, C_in*k*k)
    and input gradient (B*H*W, C_out) @ (C_out, C_in*k*k); a linear layer likewise with H*W = 1.
    The first layer's input gradient is left out, as training leaves it out.
    """
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0], o)))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():  # one view, as a training step runs (not the model's test-time views)
        one_view(model.eval())(sample[:1])
    model.train()
    for h in hooks:
        h.remove()
    products = []
    for k, (m, _, out) in enumerate(seen):
        if isinstance(m, nn.Conv2d):
            rows, inner, cols = batch * out.shape[2] * out.shape[3], m.weight[0].numel(), m.out_channels
            name = f"conv {m.in_channels}->{m.out_channels} {out.shape[2]}x{out.shape[3]}"
        else:
            rows, inner, cols = batch, m.in_features, m.out_features
            name = f"dense {m.in_features}->{m.out_features}"
        products += [(f"{name} forward", rows, inner, cols), (f"{name} weight grad", cols, rows, inner)]
        if k > 0:
            products.append((f"{name} input grad", rows, cols, inner))
    return products


def sgemm_floor(products, steps: int, repeats: int, dtype: torch.dtype = torch.float32) -> dict:
    """The epoch's FLOPs at the best sgemm rate measured here on its own product shapes.

    Each shape is timed alone with ``torch.mm`` (MKL's sgemm, what both fmnist's dense engine
    and torch's linear layers call; oneDNN's bfloat16 GEMM for ``dtype=torch.bfloat16``) at the
    current thread count; the best rate among them is what this machine's GEMM reaches on this
    network, and the floor is the epoch at that rate.
    """
    rates, flop_step = {}, 0.0
    for label, m, k, n in products:
        flop = 2.0 * m * k * n
        flop_step += flop
        if (m, k, n) not in rates:
            a, b, c = (torch.rand(m, k, dtype=dtype), torch.rand(k, n, dtype=dtype),
                       torch.empty(m, n, dtype=dtype))
            torch.mm(a, b, out=c)  # warm up
            reps = max(3, int(2e9 / flop))  # ~2 GFLOP per timing: long enough to be steady
            seconds = median_time(lambda a=a, b=b, c=c, r=reps: [torch.mm(a, b, out=c) for _ in range(r)],
                                  repeats)[0] / reps
            rates[(m, k, n)] = flop / seconds / 1e9
    best = max(rates.values())
    return {"epoch_gflop": flop_step * steps / 1e9, "best_sgemm_gflop_per_s": best,
            "floor_s": flop_step * steps / 1e9 / best,
            "products": [{"product": label, "m": m, "k": k, "n": n, "gflop_per_s": rates[(m, k, n)]}
                         for label, m, k, n in products]}


def eager_network(preset: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    """``preset``'s network as a user writes it in plain PyTorch, channels-last, and its torch.optim optimizer."""
    if preset == CONV_PRESET:  # the book's 8-2, with Keras's Adam defaults
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 100), nn.ReLU(), nn.Dropout(0.4), nn.Linear(100, 10))
        make = lambda params: torch.optim.Adam(params, lr=1e-3, eps=1e-7)  # noqa: E731
    elif preset == RECIPE_PRESET:  # its spec's layers, AdamW at its rate and fmnist's weight decay
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(32),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(64),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(128),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 3 * 3, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(256, 10))
        train = get_preset(preset).train
        make = lambda params: torch.optim.AdamW(  # noqa: E731
            params, lr=train["lr"], weight_decay=DEFAULT_WEIGHT_DECAY["adamw"], eps=1e-7)
    else:
        raise ValueError(f"no plain PyTorch network written for {preset}")
    net = net.to(memory_format=torch.channels_last)
    return net, make(net.parameters())


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def eager_cnn_epoch(preset: str, xs: torch.Tensor, ys: torch.Tensor, threads: int, repeats: int,
                    bf16: bool = False, batch: int = BATCH) -> float:
    """``preset``'s epoch as a user writes it in plain PyTorch: eager, channels-last, a torch.optim
    optimizer (with ``bf16``, the forward pass under ``torch.autocast``, as PyTorch's AMP recipe writes it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net, opt = eager_network(preset)
        images = xs.unsqueeze(1).contiguous(memory_format=torch.channels_last)

        def epoch(n=len(images)):
            net.train()
            for idx in torch.randperm(n).split(batch):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = net(images[idx])
                loss = F.cross_entropy(logits.float(), ys[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        epoch(min(batch * 10, len(images)))  # warm up (oneDNN primitive creation)
        return median_time(epoch, repeats)[0]
    finally:
        torch.set_num_threads(old)


def keras_epoch(name: str, images: int | None, repeats: int, precision: str = "float32",
                batch: int = BATCH) -> float | None:
    """Keras's epoch, timed by ``benchmarks/keras_epoch.py`` in a fresh process (see there why); None without TF."""
    return keras_child(name, repeats, images, precision, batch)["epoch_s"]


def keras_child(name: str, repeats: int, images: int | None, precision: str = "float32", batch: int = BATCH) -> dict:
    """What ``benchmarks/keras_epoch.py NAME`` prints: the epochs and the versions."""
    cmd = [sys.executable, str(Path(__file__).with_name("keras_epoch.py")), name, "--repeats", str(repeats),
           "--precision", precision, "--batch", str(batch)]
    if images:
        cmd += ["--images", str(images)]
    return child_json(cmd)


def child_json(cmd: list[str]) -> dict:
    """Run a timing script in a process of its own; the JSON object on its last line of output."""
    import subprocess

    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def conv_preset(xs, ys, rounds: int, eager_threads: int) -> dict:
    """cnn-book's epoch in fmnist, in plain PyTorch eager and in Keras, against its sgemm floor; where
    the CPU has bfloat16 dot products, under ``"bfloat16"`` the same three in bfloat16 mixed precision."""
    result = {"preset": CONV_PRESET, "eager_threads": eager_threads,
              **conv_stacks(CONV_PRESET, xs, ys, rounds, eager_threads)}
    if bfloat16_native(torch.device("cpu")):
        h = conv_stacks(CONV_PRESET, xs, ys, rounds, eager_threads, "bfloat16")
        result["bfloat16"] = {"floor_s": h["floor_s"], "best_gemm_gflop_per_s": h["best_sgemm_gflop_per_s"],
                              **{k: v for k, v in h.items() if k.startswith(_ROUND_KEYS)}}
    return result


def conv_recipe(xs, ys, rounds: int, eager_threads: int) -> dict:
    """cnn-best's epoch at its recipe's batch size, optimizer and precision (float32 on a CPU without
    bfloat16 dot products) in the three stacks, none augmenting, against its floor."""
    train = get_preset(RECIPE_PRESET).train
    precision = resolve_precision(train.get("precision", "float32"), torch.device("cpu"))
    return {"preset": RECIPE_PRESET, "batch": train["batch_size"], "precision": precision,
            "eager_threads": eager_threads,
            **conv_stacks(RECIPE_PRESET, xs, ys, rounds, eager_threads, precision, train["batch_size"])}


# The keys of conv_stacks' result the bfloat16 entry copies: the three stacks' epochs, rounds and
# ratios, and with them ("epoch_") the epoch's GFLOP, the same in either precision.
_ROUND_KEYS = ("epoch_", "eager_", "keras_")


def conv_stacks(preset: str, xs, ys, rounds: int, eager_threads: int,
                precision: str = "float32", batch: int = BATCH) -> dict:
    """``preset``'s epoch at ``precision`` and ``batch`` in the three stacks, and its floor at the best
    GEMM rate measured in any of the rounds.

    fmnist ``--precision``, PyTorch eager (under ``torch.autocast`` for bfloat16) and Keras (its
    ``mixed_bfloat16`` policy): in bfloat16 each keeps float32 weights and updates and runs the
    convolutions and matrix products in bfloat16, and the floor is at the bfloat16 GEMM's rate.
    fmnist trains with the preset's optimizer and rate, without its augmentation.

    The stacks take turns: each round times the GEMM's rates on the step's shapes, then one epoch
    of fmnist, of PyTorch eager and of Keras, each in a process of its own. Why: this machine's
    speed drifts between minutes, and Keras's most (cnn-book's epoch on 2 Zen 4 cores: 12.3, 13.5,
    20.6 and 20.9 s in four rounds that took turns with fmnist's, while fmnist's moved between 7.9
    and 9.2 s); each stack's epochs timed in one block put the drift of those minutes into the
    ratios. A ratio here is the median over the rounds of the ratio within each round
    (``*_rounds``: every round's), each stack's epoch the median of its rounds, and the floor is
    at the best rate any round measured.
    """
    bf16 = precision == "bfloat16"
    tag = f" (batch {batch}{', bfloat16' if bf16 else ''})"
    trainer = preset_trainer(preset, batch, precision)
    if parameters(eager_network(preset)[0]) != parameters(trainer.model):
        raise RuntimeError(f"benchmarks/run.py: the plain PyTorch {preset} is not the preset's network "
                           "(parameter counts differ): write eager_network() after its spec")
    threads = torch.get_num_threads()
    train_threads = trainer.train_threads(xs[:1])
    products = step_products(trainer.model, xs[:1], batch)
    floors, ours, eager, keras = [], [], [], []
    for i in range(rounds):
        say(f"{preset}: round {i + 1} of {rounds}: GEMM rates on its shapes, fmnist, PyTorch eager and Keras "
            f"epochs{tag}")
        torch.set_num_threads(train_threads)
        floors.append(sgemm_floor(products, -(-len(xs) // batch), repeats=3,
                                  dtype=torch.bfloat16 if bf16 else torch.float32))
        torch.set_num_threads(threads)
        ours.append(stack_child("fmnist", preset, len(xs), 1, precision, batch, eager_threads)["epoch_s"])
        eager.append(stack_child("eager", preset, len(xs), 1, precision, batch, eager_threads)["epoch_s"])
        keras.append(keras_epoch(preset, len(xs), 1, precision, batch))
    floor = max(floors, key=lambda f: f["best_sgemm_gflop_per_s"])  # the fastest the GEMM went in this run
    epoch = statistics.median(ours)
    result = {"train_threads": train_threads, **floor, "epoch_s": epoch, "epoch_runs_s": ours,
              "epoch_vs_floor": epoch / floor["floor_s"], **paired("eager", eager, ours)}
    return {**result, **paired("keras", keras if None not in keras else None, ours)}


def paired(stack: str, times: list[float] | None, ours: list[float]) -> dict:
    """A stack's epochs beside ours, round by round: its median epoch, its rounds, and the median of
    the per-round ratios (``*_vs_ours``, with every round's); None throughout where it was not timed."""
    if times is None:
        return {f"{stack}_epoch_s": None, f"{stack}_runs_s": None, f"{stack}_vs_ours": None,
                f"{stack}_vs_ours_rounds": None}
    ratios = [theirs / mine for theirs, mine in zip(times, ours, strict=True)]
    return {f"{stack}_epoch_s": statistics.median(times), f"{stack}_runs_s": times,
            f"{stack}_vs_ours": statistics.median(ratios), f"{stack}_vs_ours_rounds": ratios}


def preset_trainer(preset: str, batch: int, precision: str) -> Trainer:
    """The trainer fmnist's CNN epochs are timed with: the preset's network (seed 0), optimizer and
    rate at ``batch`` and ``precision``, without its augmentation."""
    train = get_preset(preset).train
    torch.manual_seed(0)
    return Trainer(create_model(preset), TrainConfig(
        epochs=1, device="cpu", optimizer=train["optimizer"], lr=train.get("lr"), batch_size=batch,
        precision=precision))


def stack_child(stack: str, preset: str, images: int, repeats: int, precision: str, batch: int,
                eager_threads: int) -> dict:
    """``stack``'s CNN epochs (fmnist or plain PyTorch eager), timed by ``run.py --stack`` in a
    process of its own, as Keras's are.

    Why: timed in this long process, after the dense presets, the GEMM floors and fmnist's own
    epochs, the plain PyTorch cnn-book epoch took 14.4-14.6 s on 2 Zen 4 cores in two runs, and
    19.5 s in a fresh process minutes later (same code, same images). Whether the earlier work or
    the shared machine made that difference was not settled; a fresh process for each stack at
    least gives every stack the same start, as Keras's always had.
    """
    return child_json([sys.executable, str(Path(__file__).resolve()), "--stack", stack, "--preset", preset,
                       "--images", str(images), "--conv-repeats", str(repeats), "--precision", precision,
                       "--batch", str(batch), "--eager-threads", str(eager_threads)])


def stack_epochs(args) -> dict:
    """What ``run.py --stack`` prints: one stack's epochs on the first ``--images`` training images."""
    data = load_dataset()
    x_tr, _, y_tr, _ = train_val_split(data.x_train, data.y_train)
    xs, ys = images_to_tensor(x_tr[:args.images]), torch.as_tensor(y_tr[:args.images], dtype=torch.long)
    if args.stack == "eager":
        epoch = eager_cnn_epoch(args.preset, xs, ys, args.eager_threads, args.conv_repeats,
                                bf16=args.precision == "bfloat16", batch=args.batch)
        return {"epoch_s": epoch}
    trainer = preset_trainer(args.preset, args.batch, args.precision)
    trainer.run_epoch(xs[:args.batch * 10], ys[:args.batch * 10])  # warm up
    epoch, runs = median_time(lambda: trainer.run_epoch(xs, ys), args.conv_repeats)
    return {"epoch_s": epoch, "epoch_runs_s": runs}


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


def _versions() -> dict[str, str]:
    import numba

    found = {"torch": torch.__version__, "numpy": np.__version__, "numba": numba.__version__,
             "python": platform.python_version()}
    keras = keras_child("softmax", 0, BATCH * 10)  # versions only: no epoch timed
    if "keras" in keras:
        found["keras"], found["tensorflow"] = keras["keras"], keras["tensorflow"]
    return found


def command_line(args) -> str:
    """The command that measured a results file, every option that changes what it measures
    spelled out: a partial run (fewer images, no CNNs) must not read as the full one."""
    return ("python benchmarks/run.py" + (" --quick" if args.quick else "")
            + (f" --threads {args.threads}" if args.threads else "")
            + (f" --eager-threads {args.eager_threads}" if args.eager_threads != 2 else "")
            + (f" --conv-repeats {args.conv_repeats}" if args.conv_repeats else "")
            + (" --no-conv" if args.no_conv else "")
            + (f" --images {args.images}" if args.images is not None else ""))


def run(args) -> dict:
    repeats = 3 if args.quick else 5
    load_before, date = os.getloadavg(), datetime.datetime.now(datetime.UTC)
    data = load_dataset()
    x_tr, x_val, y_tr, y_val = train_val_split(data.x_train, data.y_train)
    x_tr, y_tr = x_tr[:args.images], y_tr[:args.images]
    xs, ys = images_to_tensor(x_tr), torch.as_tensor(y_tr, dtype=torch.long)
    xv = images_to_tensor(x_val)
    steps = -(-len(x_tr) // BATCH)

    results: dict = {
        "format": "fmnist-measured-benchmark", "format_version": 1,
        "command": command_line(args),
        "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "processor": processor(), "cpus": os.cpu_count(),
                    "affinity": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                    "train_threads": Trainer.cpu_train_threads or torch.get_num_threads()},
        "versions": _versions(), "repeats": repeats, "images": len(x_tr), "batch": BATCH, "presets": {}}
    for name in PRESETS:
        say(name)
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
        keras = keras_epoch(name, len(x_tr), 1 if args.quick else 3)
        results["presets"][name] = {
            "gemm_floor_s": floor, "epoch_s": epoch, "epoch_runs_s": epoch_all, "epoch_vs_floor": epoch / floor,
            "eval_images": len(xv), "eval_s": ev, "eval_floor_s": ev_floor, "eval_vs_floor": ev / ev_floor,
            "predict_images_per_s": len(x_val) / pred,
            "keras_epoch_s": keras, "keras_vs_ours": (keras / epoch) if keras else None,
        }
    if not args.no_conv:
        rounds = args.conv_repeats or (1 if args.quick else 3)
        results["conv_rounds"] = rounds
        results["conv"] = conv_preset(xs, ys, rounds, args.eager_threads)
        results["conv_recipe"] = conv_recipe(xs, ys, rounds, args.eager_threads)
    say("data load")
    results["data_load"] = data_load(repeats)
    results["loadavg_before"] = [round(v, 2) for v in load_before]
    results["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    return results


def format_text(results: dict) -> str:
    m = results["machine"]
    lines = [f"{m['processor'] or m['platform']}: {m['cpus']} CPUs, torch {results['versions']['torch']} "
             f"({m['train_threads']} thread(s) training, {m['torch_threads']} evaluating); medians of "
             f"{results['repeats']}; load average {results['loadavg_before'][0]:.1f} -> {results['loadavg_after'][0]:.1f}",
             f"{'preset':<13}{'floor':>8}{'epoch':>8}{'x floor':>9}{'eval':>9}{'ev floor':>10}{'x floor':>9}"
             f"{'predict/s':>12}{'keras':>9}"]
    for name, r in results["presets"].items():
        keras = f"{r['keras_epoch_s']:.2f}s" if r["keras_epoch_s"] else "not measured"
        lines.append(f"{name:<13}{r['gemm_floor_s']:>7.3f}s{r['epoch_s']:>7.3f}s{r['epoch_vs_floor']:>8.2f}x"
                     f"{r['eval_s']:>8.4f}s{r['eval_floor_s']:>9.4f}s{r['eval_vs_floor']:>8.2f}x"
                     f"{r['predict_images_per_s']:>12,.0f}{keras:>9}")
    if c := results.get("conv"):
        lines.append(f"{c['preset']}: floor {c['floor_s']:.2f}s ({c['epoch_gflop']:.0f} GFLOP at the best sgemm rate "
                     f"{c['best_sgemm_gflop_per_s']:.1f} GFLOP/s), epoch {c['epoch_s']:.2f}s "
                     f"({c['train_threads']} threads) = {c['epoch_vs_floor']:.2f}x floor; PyTorch eager "
                     f"({c['eager_threads']} threads) {_beside(c)}")
        if h := c.get("bfloat16"):
            lines.append(f"{c['preset']}, bfloat16 mixed precision: floor {h['floor_s']:.2f}s (best bfloat16 GEMM "
                         f"{h['best_gemm_gflop_per_s']:.1f} GFLOP/s), epoch {h['epoch_s']:.2f}s = "
                         f"{h['epoch_vs_floor']:.2f}x floor; PyTorch eager {_beside(h)}")
    if r := results.get("conv_recipe"):
        lines.append(f"{r['preset']} at batch {r['batch']}, {r['precision']} (no augmentation): "
                     f"floor {r['floor_s']:.2f}s, epoch {r['epoch_s']:.2f}s = {r['epoch_vs_floor']:.2f}x floor; "
                     f"PyTorch eager {_beside(r)}")
    d = results["data_load"]
    lines.append(f"data load: first (verified, empty cache) {d['first_s']:.3f}s, later {d['later_s']:.4f}s")
    return "\n".join(lines)


def _beside(r: dict) -> str:
    """The plain PyTorch and Keras epochs of a CNN result, each as a ratio to ours."""
    keras = f"{r['keras_epoch_s']:.1f}s" if r["keras_epoch_s"] else "not measured"
    return (f"{r['eager_epoch_s']:.2f}s = {r['eager_vs_ours']:.2f}x ours{_rounds(r, 'eager')}; Keras {keras}"
            + (f" = {r['keras_vs_ours']:.2f}x ours{_rounds(r, 'keras')}" if r["keras_vs_ours"] else ""))


def _rounds(r: dict, stack: str) -> str:
    """The spread of a stack's per-round ratios to ours, where there were rounds to spread."""
    ratios = r.get(f"{stack}_vs_ours_rounds") or []
    return f" ({min(ratios):.2f}-{max(ratios):.2f}x in {len(ratios)} rounds)" if len(ratios) > 1 else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file (default: none)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats (3 instead of 5; 1 Keras epoch a dense preset; 1 round of the CNNs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--eager-threads", type=int, default=2,
                        help="threads for the plain PyTorch CNN (default: 2)")
    parser.add_argument("--conv-repeats", type=int, default=None,
                        help="rounds of the CNN stacks, each timing one epoch of each in turn (default: 3; "
                             "1 with --quick)")
    parser.add_argument("--no-conv", action="store_true", help="skip the convolutional presets (minutes)")
    parser.add_argument("--images", type=int, default=None,
                        help="train on only the first N of the 48,000 images, to try the script (default: all)")
    parser.add_argument("--stack", choices=("fmnist", "eager"), help=argparse.SUPPRESS)  # stack_child's
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stack:
        print(json.dumps(stack_epochs(args)))
        return 0
    results = run(args)
    if args.out:
        write_json(args.out, results)
    print(json.dumps(results, indent=2) if args.json else format_text(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
