"""Compile the numba kernels training runs use, once, when fmnist is installed (``make install``).

numba compiles each kernel on its first call and caches the machine code on disk, next to the
sources, for every later process. Without this step the first run of each kind pays for it:
on 2 Zen 4 cores, the first epoch of ``fmnist train cnn-book`` from a fresh clone took 34 s
instead of 11 s. A few steps of each kind of network on blank images make the same calls
(the kernels are compiled per argument type, not per size): the compiled dense epoch, the
book's CNN step (stem, Winograd, pools, dense layers, dropout), and cnn-best's layer by layer
path at its precision, each with a validation pass.

    python -m fmnist._warmup
"""

from __future__ import annotations

import numpy as np


def main() -> None:
    from fmnist.models import create_model, get_preset
    from fmnist.runs import resolve_config
    from fmnist.training import fit

    y = np.arange(64) % 10
    x = np.zeros((64, 28, 28), np.uint8)
    for name in ("mlp-100", "cnn-book", "cnn-best"):
        # Batches of 32: the conv kernels then run on slices of 16 images on two threads.
        config = resolve_config(get_preset(name), epochs=1, batch_size=32, patience=0)
        fit(create_model(name), x, y, config=config, validation_data=(x[:32], y[:32]))


if __name__ == "__main__":
    main()
