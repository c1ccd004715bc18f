"""How well models recognise photos of garments: catalogue photos against phone-like ones.

    python benchmarks/photos.py RUN [RUN...] [--n 1000] [--seed 0] [--split test|val] [--jobs 2]
                                [--effects] [--out FILE] [--write DIR]

Takes the first ``--n`` images of the split (test: t10k, for measuring; val: the first run's
validation images, drawn from the training file, for working on the pipeline without looking
at t10k), makes from each a clean catalogue photo and a phone-like photo
(:mod:`fmnist.inference.photos`, seeded by ``--seed`` and the image's index), prepares them
exactly as ``fmnist predict`` and ``fmnist serve`` do, and scores every run's model on the
photos and on the original images. The photos are made and prepared once, in ``--jobs``
processes, whatever the number of runs.

``--effects`` also makes, for each effect a phone adds (tint, uneven light, shadows, tilt,
noise, JPEG...: :data:`fmnist.inference.photos.EFFECTS`), phone photos with that effect
alone, with the same draws: what each costs on its own. ``--out`` writes the figures as JSON
(with the date and the machine's load), one row per model and split, replacing an earlier
row of the same; ``--write DIR`` also keeps the photos as ``DIR/{catalogue,phone}/INDEX-LABEL.jpg``
with ``DIR/labels.json``, to post to a server.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# One photo per process at a time (--jobs processes): the libraries' own threads would only compete.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from fmnist._files import write_bytes, write_json  # noqa: E402
from fmnist.inference.photos import EFFECTS, catalogue_photo, phone_photo  # noqa: E402


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


def _make(kind: str, image: np.ndarray, seed: int) -> bytes:
    """One photo: ``catalogue``, ``phone``, or ``only:EFFECT`` (a phone photo with that effect alone)."""
    if kind == "catalogue":
        return catalogue_photo(image, seed)
    if kind == "phone":
        return phone_photo(image, seed)
    effect = kind.split(":", 1)[1]
    return phone_photo(image, seed, without=tuple(e for e in EFFECTS if e != effect))


def _photograph(job: tuple[str, str, np.ndarray, int, bool]):
    """Make one photo and prepare it as ``fmnist predict`` does: (28x28 image, warning, seconds, bytes or None)."""
    from fmnist.inference.predict import read_image_bytes

    kind, name, image, seed, keep = job
    data = _make(kind, image, seed)
    t0 = time.perf_counter()
    prepared = read_image_bytes(name, data)
    return prepared.image, prepared.warning, time.perf_counter() - t0, data if keep else None


def measure(runs: list[Path], n: int, seed: int, split: str, jobs: int = 1, effects: bool = False,
            write: Path | None = None) -> list[dict]:
    """Top-1 accuracy of each run's model on ``n`` originals, catalogue photos and phone photos: one row per run."""
    from fmnist.evaluation import predict_proba
    from fmnist.models.io import load_model

    x, y, _ = _images(runs[0], split, n)
    kinds = ["catalogue", "phone"] + ([f"only:{e}" for e in EFFECTS] if effects else [])
    made: dict[str, dict] = {}
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        for kind in kinds:
            t0 = time.perf_counter()
            batch = [(kind, f"{i}-{int(label)}.jpg", image, seed * 1_000_003 + i, write is not None)
                     for i, (image, label) in enumerate(zip(x, y))]
            out = list(pool.map(_photograph, batch, chunksize=8))
            made[kind] = {"images": np.stack([o[0] for o in out]),
                          "warned": np.array([o[1] is not None for o in out]),
                          "prepare_ms": 1000 * float(np.median([o[2] for o in out])),
                          "seconds": time.perf_counter() - t0}
            if write and kind in ("catalogue", "phone"):
                for (_, name, *_), o in zip(batch, out):
                    write_bytes(write / kind / name, o[3])
            print(f"{kind}: {len(x)} photos in {made[kind]['seconds']:.0f} s", file=sys.stderr, flush=True)
    if write:
        write_json(write / "labels.json", {f"{i}-{int(label)}.jpg": int(label) for i, label in enumerate(y)})

    stamp = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
             "load_average": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(), "jobs": jobs}
    rows = []
    for run in runs:
        model = load_model(run)
        name = json.loads((Path(run) / "model.json").read_text()).get("name", Path(run).name)
        try:
            epochs = json.loads((Path(run) / "run.json").read_text())["config"]["epochs"]
        except (OSError, ValueError, KeyError, TypeError):
            epochs = None  # a saved model without its run's record
        row = {"model": name, "epochs": epochs, "run": str(run), "split": split, "n": int(len(x)), "seed": seed,
               "original": float((predict_proba(model, x).argmax(1) == y).mean())}
        for kind in kinds:
            right = predict_proba(model, made[kind]["images"]).argmax(1) == y
            warned = made[kind]["warned"]
            score = {"accuracy": float(right.mean()), "warned": int(warned.sum()),
                     "accuracy_unwarned": float(right[~warned].mean()) if (~warned).any() else None}
            if kind in ("catalogue", "phone"):
                row[kind] = {**score, "prepare_ms_median": round(made[kind]["prepare_ms"], 1)}
            else:
                row.setdefault("phone_effects_alone", {})[kind.split(":", 1)[1]] = score["accuracy"]
        row["phone_minus_catalogue"] = row["phone"]["accuracy"] - row["catalogue"]["accuracy"]
        rows.append({**row, **stamp})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run folders or saved models")
    ap.add_argument("--n", type=int, default=1000, help="images to photograph (default: 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the photo set (default: 0)")
    ap.add_argument("--split", choices=["test", "val"], default="test",
                    help="test: t10k (measuring); val: the first run's validation images (developing) (default: test)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes making and preparing photos (default: the CPUs)")
    ap.add_argument("--effects", action="store_true",
                    help="also score phone photos with one effect at a time (default: off)")
    ap.add_argument("--out", type=Path, help="write the figures here, e.g. src/fmnist/measured/photos.json, "
                    "then make readme (default: print only)")
    ap.add_argument("--write", type=Path, help="also keep the photos in this folder (default: off)")
    args = ap.parse_args(argv)
    rows = measure(args.runs, args.n, args.seed, args.split, args.jobs, args.effects, args.write)
    print(json.dumps(rows, indent=2))
    if args.out:
        # One file, one row per model and split: a later measurement of the same replaces its row.
        old = json.loads(args.out.read_text())["results"] if args.out.exists() else []
        new = {(r["model"], r["split"]) for r in rows}
        write_json(args.out, {"results": [r for r in old if (r["model"], r["split"]) not in new] + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
