"""One model's Keras/TensorFlow training epoch, timed in a process of its own (``run.py`` calls it).

    python benchmarks/keras_epoch.py softmax|mlp-200|mlp-200-100|cnn-book|cnn-best [--repeats N] [--images N]
                                     [--precision float32|bfloat16] [--batch N]

Prints one JSON object: ``{"epoch_s": median, "epochs_s": [...], "keras": ..., "tensorflow": ...}``,
or ``{"epoch_s": null}`` where TensorFlow is not importable. Why a process of its own: TensorFlow
keeps thread pools and its own OpenMP/oneDNN runtime alive once imported, and torch timed in the
same process afterwards ran slower (cnn-book's steps by about a fifth, measured in one process
before and after importing it); torch is never imported here, and TensorFlow never where torch is
timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fmnist.models.registry import get_preset  # noqa: E402  (torch-free)
from fmnist.training.config import DEFAULT_WEIGHT_DECAY  # noqa: E402

BATCH = 32


def build(name: str, precision: str = "float32"):
    import keras
    from keras import layers

    if precision == "bfloat16":
        # Keras's mixed precision: bfloat16 arithmetic, float32 weights; the softmax in float32,
        # as Keras's mixed-precision guide writes the output layer.
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if name == "cnn-book":  # the book's chapter 8-2
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dense(100, activation="relu"), layers.Dropout(0.4),
            layers.Dense(10, activation="softmax", dtype="float32")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    if name == "cnn-best":  # fmnist's recipe network: its spec's layers, AdamW at its rate and weight decay
        train = get_preset(name).train
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            *(layer for width in (32, 64, 128) for layer in (
                layers.Conv2D(width, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
                layers.BatchNormalization())),
            layers.Flatten(), layers.Dropout(0.3), layers.Dense(256), layers.BatchNormalization(),
            layers.Activation("relu"), layers.Dropout(0.3), layers.Dense(10, activation="softmax", dtype="float32")])
        adamw = keras.optimizers.AdamW(learning_rate=train["lr"], weight_decay=DEFAULT_WEIGHT_DECAY["adamw"])
        model.compile(optimizer=adamw, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    hidden = {"softmax": [], "mlp-200": [200], "mlp-200-100": [200, 100]}[name]
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                              *(layers.Dense(u, activation="relu") for u in hidden),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["softmax", "mlp-200", "mlp-200-100", "cnn-book", "cnn-best"])
    parser.add_argument("--repeats", type=int, default=1, help="epochs timed (0: only say the versions)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch size (default: {BATCH}, Keras's)")
    args = parser.parse_args()
    try:
        import keras
        import tensorflow
    except ImportError:
        print(json.dumps({"epoch_s": None, "torch_loaded": "torch" in sys.modules}))
        return 0
    from fmnist.data import load_dataset, train_val_split

    data = load_dataset()
    x, _, y, _ = train_val_split(data.x_train, data.y_train)  # the same 48,000 images as run.py
    x, y = x[:args.images], y[:args.images]
    xs = x.astype("float32") / 255.0
    if args.model.startswith("cnn-"):
        xs = xs[..., None]
    model = build(args.model, args.precision)
    warm = args.batch * 10
    model.fit(xs[:warm], y[:warm], batch_size=args.batch, epochs=1, verbose=0)  # build + trace
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(xs, y, batch_size=args.batch, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    print(json.dumps({"epoch_s": statistics.median(times) if times else None, "epochs_s": times,
                      "keras": keras.__version__, "torch_loaded": "torch" in sys.modules,
                      "tensorflow": tensorflow.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
