"""``fmnist.audit``: does the data itself deserve trust?

:func:`audit` looks at every image of a dataset and returns (and with ``out_dir`` writes as
``audit.json``, beside a self-contained ``audit.html``) what it found::

    {"data":             where the data came from, content checksums, counts per class,
     "exact_duplicates": [{"a": {"split", "index"}, "b": {...}, "labels": [label_a, label_b]}],
     "near_duplicates":  [{"a", "b", "distance", "space"}],          space: "pixel" or "embedding"
     "label_issues":     [{"split", "index", "given", "suggested", "score"}],   most likely first
     "outliers":         [{"split", "index", "label", "distance"}],             farthest first
     "summary":          counts, thresholds and why, the model, timings, the file's format}

Phases, each with its progress bar: content hashes (exact duplicates); nearest neighbours in
pixel space; K models trained by the one training loop, each on all training folds but one
(out-of-fold probabilities); nearest neighbours in the penultimate layer of the first fold's
model; cleanlab on the out-of-sample probabilities (likely label errors); outliers.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import check_free, write_json
# What an audit file is and which data it describes: read by .exclude, written here.
from fmnist.auditing.exclude import AUDIT_FORMAT, data_checksums

__all__ = ["audit", "output_files", "AUDIT_FILE", "AUDIT_FORMAT", "NEIGHBOURS", "PIXEL_FACTOR", "EMBEDDING_FACTOR", "OUTLIER_MADS",
           "data_checksums"]

AUDIT_FILE = "audit.json"
# Neighbours kept per image in each space: a near duplicate is found unless this many other
# images are closer still.
NEIGHBOURS = 5
# A pair is a near duplicate in pixel space when its RMS distance is below this fraction of the
# median distance between a test image and its nearest training image (Fashion-MNIST: 0.4 x
# 0.124 = 0.050, about 13 grey levels a pixel: noise or a re-encoding, not another photo).
PIXEL_FACTOR = 0.4
# In the embedding a pair must be this much closer than the median nearest-neighbour distance
# and, moved by up to SHIFT pixels, within the pixel threshold: the embedding finds shifted
# copies, the pixels confirm that the two are one photo and not two alike garments.
EMBEDDING_FACTOR = 0.5
SHIFT = 2
# Candidates per image from the shift-invariant (Fourier magnitude) search, each aligned and
# measured on the pixels. A copy shifted against the border loses a row or two and with it some
# of its likeness in the Fourier magnitudes: on Fashion-MNIST with copies shifted by up to 2
# pixels, 3 candidates found 85 % of them (the original ranked up to 5th among the candidates).
SHIFT_NEIGHBOURS = 6
SPACES = ("pixel", "shifted", "embedding")
# An image is an outlier when the mean RMS distance to its nearest training images exceeds the
# median by this many median absolute deviations (blank, inverted, not a garment).
OUTLIER_MADS = 8.0
# Epochs per fold model. mlp-200's preset trains 5 (the tutorial's); the audit's ranking of
# label errors gains from better-fitted probabilities: with 1 % of the labels flipped in a
# tenth of Fashion-MNIST (3 folds), the share of flips among the first flagged rose from 0.55
# at 5 epochs to 0.72 at 15, for ~40 CPU-seconds more on the whole data set.
EPOCHS = 15


class _Phases:
    """One tqdm bar per phase on stderr (shown on a terminal unless ``progress`` is False)."""

    def __init__(self, progress: bool | None):
        self.enabled = sys.stderr.isatty() if progress is None else progress
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, key: str, desc: str, total: int | None = None, unit: str = "it"):
        from tqdm import tqdm

        start = time.perf_counter()
        bar = tqdm(total=total, desc=desc, unit=unit, disable=not self.enabled, file=sys.stderr, leave=True,
                   dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()
            self.times[key] = round(time.perf_counter() - start, 2)


def output_files(out_dir: str | Path) -> list[Path]:
    """The files an audit writes into ``out_dir`` that hold a user's finished work."""
    return [Path(out_dir) / AUDIT_FILE, Path(out_dir) / "audit.html"]


def audit(data=None, *, data_dir=None, dataset: str = "fashion-mnist", model: str = "mlp-200", folds: int = 5,
          epochs: int | None = EPOCHS, seed: int = 42, out_dir: str | Path | None = None,
          overrides: dict[str, Any] | None = None, progress: bool | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Audit a dataset; return the structure of ``audit.json`` (module docstring).

    ``data``: a :class:`fmnist.data.Dataset`, else loaded from ``data_dir``/``dataset`` as
    ``fmnist.load_dataset`` does. ``model``: the preset (or layer spec) trained ``folds`` times
    for out-of-fold probabilities, ``epochs`` each (None: the preset's own), with ``overrides``
    over its other training settings (``lr``, ``optimizer`` ...). With ``out_dir`` writes
    ``audit.json`` and ``audit.html`` there (atomically); an audit already there is replaced
    only with ``overwrite``.
    """
    from fmnist.auditing.labels import require_cleanlab

    require_cleanlab()  # before minutes of work, not after
    if out_dir is not None:
        check_free(output_files(out_dir), overwrite=overwrite, what="an audit")
    if data is None:
        from fmnist.data import load_dataset

        data = load_dataset(data_dir, dataset=dataset)
    from fmnist.auditing.labels import check_folds

    check_folds(data.y_train, folds)  # before minutes of neighbour search
    phases = _Phases(progress)
    overrides = {**(overrides or {}), **({"epochs": epochs} if epochs is not None else {})}
    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train).astype(np.int64)
    x_test, y_test = np.asarray(data.x_test), np.asarray(data.y_test).astype(np.int64)
    num_classes = max(len(data.class_names), int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1)
    start = time.perf_counter()

    with phases.phase("exact", "exact duplicates (hashes)", total=len(x_train) + len(x_test), unit="img") as bar:
        exact = _exact_duplicates(x_train, y_train, x_test, y_test, bar)
    exact_pairs = {_key(d["a"], d["b"]) for d in exact}

    from fmnist.auditing import neighbours as nb

    with phases.phase("pixel", "pixel-space neighbours", total=len(x_test) + len(x_train), unit="img") as bar:
        projection = nb.fit_projection(x_train, seed=seed)
        px_test = nb.pixel_knn(x_test, x_train, NEIGHBOURS, projection=projection, on_chunk=bar.update)
        px_train = nb.pixel_knn(x_train, x_train, NEIGHBOURS, same=True, projection=projection, on_chunk=bar.update)

    with phases.phase("shifted", "shifted-copy neighbours", total=len(x_test) + len(x_train), unit="img") as bar:
        sh_test = nb.shifted_knn(x_test, x_train, SHIFT_NEIGHBOURS, max_shift=SHIFT, on_chunk=bar.update)
        sh_train = nb.shifted_knn(x_train, x_train, SHIFT_NEIGHBOURS, same=True, max_shift=SHIFT, on_chunk=bar.update)

    from fmnist.auditing.labels import find_label_issues, out_of_fold_proba
    from fmnist.models import get_preset
    from fmnist.runs import resolve_config
    from fmnist.training import Callback

    epochs = resolve_config(get_preset(model), **overrides).epochs

    class _EpochTick(Callback):
        chunk_safe = True

        def on_epoch_end(self, trainer, epoch, logs):
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", accuracy=f"{logs['accuracy']:.3f}")

    with phases.phase("folds", f"training {folds} fold models ({model})", total=folds * epochs,
                      unit="epoch") as bar:
        fp = out_of_fold_proba(x_train, y_train, x_test, model=model, folds=folds, num_classes=num_classes,
                               seed=seed, overrides=overrides, callbacks=[_EpochTick()])

    from fmnist.evaluation.features import feature_source, penultimate_features

    with phases.phase("embedding", "embedding neighbours", total=len(x_test) + len(x_train), unit="img") as bar:
        f_train = penultimate_features(fp.models[0], x_train)
        f_test = penultimate_features(fp.models[0], x_test)
        em_test = nb.embedding_knn(f_test, f_train, NEIGHBOURS, on_chunk=bar.update)
        em_train = nb.embedding_knn(f_train, f_train, NEIGHBOURS, same=True, on_chunk=bar.update)

    px_threshold = PIXEL_FACTOR * float(np.median(px_test[0][:, 0] if len(x_test) else px_train[0][:, 0]))
    em_threshold = EMBEDDING_FACTOR * float(np.median(em_test[0][:, 0] if len(x_test) else em_train[0][:, 0]))
    near = []
    for space, (d_test, i_test), (d_train, i_train), threshold in (
            ("pixel", px_test, px_train, px_threshold), ("shifted", sh_test, sh_train, px_threshold),
            ("embedding", em_test, em_train, em_threshold)):
        near += _near_pairs(space, d_test, i_test, "test", threshold, exact_pairs)
        near += _near_pairs(space, d_train, i_train, "train", threshold, exact_pairs)
    near = _confirm_embedding(near, x_train, x_test, px_threshold)
    near.sort(key=lambda d: (SPACES.index(d["space"]), d["distance"]))

    with phases.phase("labels", "label issues (cleanlab)", total=2, unit="split") as bar:
        issues = []
        for split, labels, proba in (("train", y_train, fp.train), ("test", y_test, fp.test)):
            if len(labels):
                issues += [{"split": split, **issue} for issue in find_label_issues(labels, proba)]
            bar.update(1)

    with phases.phase("outliers", "outliers", total=1) as bar:
        outliers, outlier_threshold, knn_test, knn_train = _outliers(px_test[0], px_train[0], y_train, y_test)
        bar.update(1)

    counts = {split: np.bincount(y, minlength=num_classes).tolist() for split, y in (("train", y_train),
                                                                                    ("test", y_test))}
    result = {
        "data": {"dataset": data.dataset, "source": str(data.source), "verified": bool(data.verified),
                 "class_names": list(data.class_names) + [str(c) for c in range(len(data.class_names), num_classes)],
                 "sha256": data_checksums(data.x_train, data.y_train, data.x_test, data.y_test),
                 "counts": {"train": len(y_train), "test": len(y_test)}, "per_class": counts},
        "exact_duplicates": exact,
        "near_duplicates": near,
        "label_issues": issues,
        "outliers": outliers,
    }
    result["summary"] = _summary(result, model=model, folds=folds, seed=seed, config=fp.config,
                                 feature=feature_source(fp.models[0]), thresholds={
                                     "pixel": px_threshold, "embedding": em_threshold, "outlier": outlier_threshold},
                                 accuracy={"train_out_of_fold": float((fp.train.argmax(1) == y_train).mean()),
                                           "test_fold_mean": float((fp.test.argmax(1) == y_test).mean())
                                           if len(y_test) else None},
                                 times={**phases.times, "total": round(time.perf_counter() - start, 2)})
    if out_dir is not None:
        from fmnist.reporting.audit_report import write_audit_report

        distances = {"pixel_test": px_test[0][:, 0], "pixel_train": px_train[0][:, 0],
                     "shifted_test": sh_test[0][:, 0], "shifted_train": sh_train[0][:, 0],
                     "embedding_test": em_test[0][:, 0], "embedding_train": em_train[0][:, 0],
                     "outlier_test": knn_test, "outlier_train": knn_train}
        with phases.phase("report", "audit.json and audit.html", total=1) as bar:
            write_json(Path(out_dir) / AUDIT_FILE, result)
            write_audit_report(result, data, out_dir, distances)
            bar.update(1)
        result["summary"]["times_s"]["report"] = phases.times["report"]
        write_json(Path(out_dir) / AUDIT_FILE, result)
    return result


def _ref(split: str, index: int) -> dict[str, Any]:
    return {"split": split, "index": int(index)}


def _key(a: dict[str, Any], b: dict[str, Any]) -> tuple:
    return tuple(sorted(((a["split"], a["index"]), (b["split"], b["index"]))))


# Pairs listed per group of identical images: every pair while a group is this small, else
# each copy with the group's first (a thousand blank images would be half a million pairs).
_ALL_PAIRS_UP_TO = 20


def _exact_duplicates(x_train, y_train, x_test, y_test, bar) -> list[dict[str, Any]]:
    groups: dict[bytes, list[tuple[str, int]]] = {}
    for split, x in (("train", x_train), ("test", x_test)):
        flat = np.ascontiguousarray(x).reshape(len(x), -1)
        for i, row in enumerate(flat):
            groups.setdefault(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), []).append((split, i))
        bar.update(len(x))
    labels = {"train": y_train, "test": y_test}
    pairs = []
    for members in groups.values():
        if len(members) < 2:
            continue
        # Train before test, then by index: a leak reads train -> test.
        members.sort(key=lambda m: (m[0] != "train", m[1]))
        if len(members) <= _ALL_PAIRS_UP_TO:
            combos = [(a, b) for n, a in enumerate(members) for b in members[n + 1:]]
        else:
            combos = [(members[0], b) for b in members[1:]]
        pairs += [{"a": _ref(*a), "b": _ref(*b), "labels": [int(labels[a[0]][a[1]]), int(labels[b[0]][b[1]])]}
                  for a, b in combos]
    pairs.sort(key=lambda d: (d["a"]["split"], d["b"]["split"], d["a"]["index"], d["b"]["index"]))
    return pairs


def _near_pairs(space: str, dist: np.ndarray, index: np.ndarray, query_split: str, threshold: float,
                exact_pairs: set) -> list[dict[str, Any]]:
    """Pairs (training image a, query image b) closer than ``threshold``, each pair once."""
    rows, cols = np.nonzero(dist <= threshold)
    out, seen = [], set()
    for q, j in zip(rows.tolist(), cols.tolist()):
        a, b = _ref("train", index[q, j]), _ref(query_split, q)
        if query_split == "train" and a["index"] > b["index"]:
            a, b = b, a
        key = _key(a, b)
        if key in seen or key in exact_pairs:
            continue
        seen.add(key)
        out.append({"a": a, "b": b, "distance": round(float(dist[q, j]), 6), "space": space})
    return out


def _confirm_embedding(near: list[dict[str, Any]], x_train, x_test, threshold: float) -> list[dict[str, Any]]:
    """Keep the embedding's pairs whose images, aligned by up to SHIFT pixels, are within the pixel threshold."""
    from fmnist.auditing.neighbours import shifted_rms

    emb = [d for d in near if d["space"] == "embedding"]
    if not emb:
        return near
    images = {"train": x_train, "test": x_test}
    a = np.stack([images[d["a"]["split"]][d["a"]["index"]] for d in emb])
    b = np.stack([images[d["b"]["split"]][d["b"]["index"]] for d in emb])
    keep = shifted_rms(a, b, SHIFT) <= threshold
    return [d for d in near if d["space"] != "embedding"] + [d for d, k in zip(emb, keep) if k]


def _outliers(px_test: np.ndarray, px_train: np.ndarray, y_train, y_test):
    """Images whose mean distance to their nearest training images is extreme (robust z-score)."""
    knn_train, knn_test = px_train.mean(1), px_test.mean(1)
    median = float(np.median(knn_train))
    mad = float(np.median(np.abs(knn_train - median))) or 1e-6
    threshold = median + OUTLIER_MADS * 1.4826 * mad
    out = []
    for split, scores, labels in (("train", knn_train, y_train), ("test", knn_test, y_test)):
        for i in np.nonzero(scores > threshold)[0]:
            out.append({"split": split, "index": int(i), "label": int(labels[i]), "distance": round(float(scores[i]), 6)})
    out.sort(key=lambda d: -d["distance"])
    return out, threshold, knn_test, knn_train


def _summary(result, *, model, folds, seed, config, feature, thresholds, accuracy, times) -> dict[str, Any]:
    def count(items, **match):
        return sum(all(item[k] == v for k, v in match.items()) for item in items)

    def splits(item):
        return "-".join(sorted({item["a"]["split"], item["b"]["split"]}, key=["train", "test"].index))

    exact, near = result["exact_duplicates"], result["near_duplicates"]
    return {
        "format": AUDIT_FORMAT, "format_version": 1,
        "exact_duplicates": {"train": sum(splits(d) == "train" for d in exact),
                             "test": sum(splits(d) == "test" for d in exact),
                             "train-test": sum(splits(d) == "train-test" for d in exact),
                             "with_different_labels": sum(d["labels"][0] != d["labels"][1] for d in exact)},
        "near_duplicates": {space: {kind: sum(d["space"] == space and splits(d) == kind for d in near)
                                    for kind in ("train", "train-test")} for space in SPACES},
        "label_issues": {"train": count(result["label_issues"], split="train"),
                         "test": count(result["label_issues"], split="test")},
        "outliers": {"train": count(result["outliers"], split="train"),
                     "test": count(result["outliers"], split="test")},
        "thresholds": {
            "pixel": round(thresholds["pixel"], 6), "shifted": round(thresholds["pixel"], 6),
            "embedding": round(thresholds["embedding"], 6),
            "outlier": round(thresholds["outlier"], 6),
            "why": (f"pixel: RMS distance of pixels in [0, 1] below {PIXEL_FACTOR} x the median distance from a "
                    "test image to its nearest training image; shifted: the same threshold on the RMS distance after "
                    f"the best shift by up to {SHIFT} pixels (candidates from the magnitudes of the images' Fourier "
                    "transforms, which shifts leave almost unchanged); embedding: cosine distance below "
                    f"{EMBEDDING_FACTOR} x the median nearest-neighbour distance there, and the two images, moved by "
                    f"up to {SHIFT} pixels, within the pixel threshold; outlier: mean RMS distance to the "
                    f"{NEIGHBOURS} nearest training images more than {OUTLIER_MADS} robust standard deviations "
                    "(1.4826 MAD) above the training images' median"),
        },
        "label_score": ("cleanlab's label quality (self-confidence: the out-of-sample probability of the given "
                        "label); lower is more suspect; each split's issues ranked by cleanlab, most likely first"),
        "model": model, "folds": folds, "seed": seed, "training": config, "embedding": feature,
        "accuracy": accuracy, "times_s": times,
    }
