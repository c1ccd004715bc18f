"""How well a model recognises photos of garments: catalogue photos against phone-like ones.

    python benchmarks/photos.py RUN [--n 1000] [--seed 0] [--split test|val] [--out FILE] [--write DIR]

Takes the first ``--n`` images of the split (test: t10k; val: the run's validation images,
for working on the pipeline without looking at t10k), makes from each a clean catalogue
photo and a phone-like photo (:mod:`fmnist.inference.photos`, seeded by ``--seed`` and the
image's index), prepares them exactly as ``fmnist predict`` and ``fmnist serve`` do, and
scores the model on the photos and on the original images. ``--out`` writes the figures as
JSON (with the date and the machine's load); ``--write DIR`` also keeps the photos as
``DIR/{catalogue,phone}/INDEX-LABEL.jpg`` with ``DIR/labels.json``, to post to a server.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from fmnist._files import write_bytes, write_json  # noqa: E402
from fmnist.inference.photos import KINDS, photo  # noqa: E402
from fmnist.inference.predict import load_uploads, predict_inputs  # noqa: E402


def _images(run: Path, split: str, n: int):
    from fmnist.data import load_dataset, train_val_split

    data = load_dataset()
    if split == "test":
        x, y = data.x_test, data.y_test
    else:
        split_info = json.loads((run / "run.json").read_text()).get("data", {}).get("split", {})
        _, x, _, y = train_val_split(data.x_train, data.y_train, test_size=split_info.get("test_size", 0.2),
                                     random_state=split_info.get("random_state", 42))
    return x[:n], y[:n], data.class_names


def measure(run: Path, n: int, seed: int, split: str, write: Path | None = None) -> dict:
    """Top-1 accuracy of the run's model on ``n`` originals, catalogue photos and phone photos."""
    from fmnist.evaluation import predict_proba
    from fmnist.models.io import load_model

    model = load_model(run)
    x, y, names = _images(run, split, n)
    name = json.loads((Path(run) / "model.json").read_text()).get("name", Path(run).name)
    out = {"model": name, "run": str(run), "split": split, "n": int(len(x)), "seed": seed,
           "original": float((predict_proba(model, x).argmax(1) == y).mean())}
    for kind in KINDS:
        t0 = time.perf_counter()
        uploads = [(f"{i}-{int(label)}.jpg", photo(image, kind, seed * 1_000_003 + i))
                   for i, (image, label) in enumerate(zip(x, y))]
        made = time.perf_counter() - t0
        if write:
            for name, data in uploads:
                write_bytes(write / kind / name, data)
        t0 = time.perf_counter()
        inputs, failures = load_uploads(uploads)
        prepared = time.perf_counter() - t0
        if failures:
            raise SystemExit(f"{len(failures)} {kind} photos failed, e.g. {failures[0]}")
        predictions = predict_inputs(model, inputs, top_k=1, class_names=names)
        labels = np.array([p.label for p in predictions])
        warned = np.array([bool(p.input.warning) for p in predictions])
        out[kind] = {
            "accuracy": float((labels == y).mean()),
            "warned": int(warned.sum()),
            "accuracy_unwarned": float((labels == y)[~warned].mean()) if (~warned).any() else None,
            "make_s": round(made, 2), "prepare_ms_per_photo": round(1000 * prepared / len(x), 2),
        }
    if write:
        write_json(write / "labels.json", {f"{i}-{int(label)}.jpg": int(label) for i, label in enumerate(y)})
    out["phone_minus_catalogue"] = out["phone"]["accuracy"] - out["catalogue"]["accuracy"]
    out["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes")
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder or saved model")
    ap.add_argument("--n", type=int, default=1000, help="images to photograph (default: 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the photo set (default: 0)")
    ap.add_argument("--split", choices=["test", "val"], default="test",
                    help="test: t10k (measuring); val: the run's validation images (developing) (default: test)")
    ap.add_argument("--out", type=Path, help="write the figures here, e.g. src/fmnist/measured/photos.json, "
                    "then make readme (default: print only)")
    ap.add_argument("--write", type=Path, help="also keep the photos in this folder (default: off)")
    args = ap.parse_args(argv)
    if args.run is None:
        ap.error("give a run folder")
    result = measure(args.run, args.n, args.seed, args.split, args.write)
    print(json.dumps(result, indent=2))
    if args.out:
        # One file, one row per model: a later measurement of the same model and split replaces its row.
        old = json.loads(args.out.read_text())["results"] if args.out.exists() else []
        rows = [r for r in old if (r["model"], r["split"]) != (result["model"], result["split"])] + [result]
        write_json(args.out, {"results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
