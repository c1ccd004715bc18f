"""``fmnist.audit``: does the data itself deserve trust?

:func:`audit` looks at every image of a dataset and returns (and with ``out_dir`` writes as
``audit.json``, beside a self-contained ``audit.html``) what it found::

    {"data":             where the data came from, content checksums, counts per class,
     "exact_duplicates": [{"a": {"split", "index"}, "b": {...}, "labels": [label_a, label_b]}],
     "near_duplicates":  [{"a", "b", "distance", "space"}],   space: "pixel", "aligned" or "embedding"
     "label_issues":     [{"split", "index", "given", "suggested", "score"}],   most likely first
     "outliers":         [{"split", "index", "label", "distance"}],             farthest first
     "summary":          counts, thresholds and why, the model, timings, the file's format}

Phases, each with its progress bar: content hashes (exact duplicates); nearest neighbours in
pixel space; nearest neighbours when moves, lighting and mirroring do not count (aligned); K models trained by the one training loop, each on all training folds but one
(out-of-fold probabilities); nearest neighbours in the penultimate layer of the first fold's
model; cleanlab on the out-of-sample probabilities (likely label errors); outliers (far from the
training images, unlike what their principal components draw, rough as noise, or flat).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import check_free, check_other_work, claim, staged, write_json
from fmnist._text import plural
# What an audit file is and which data it describes: read by .exclude, written here.
from fmnist.auditing.exclude import AUDIT_FORMAT, data_checksums
from fmnist.auditing.neighbours import PIXEL_COMPONENTS

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
# A copy that went through other hands (moved a few pixels, brightened, re-contrasted, mirrored)
# is far from its original in plain pixels; in the "aligned" space a pair's distance is 1 - the
# Pearson correlation of their pixels at the best move of up to SHIFT pixels (mirror included),
# and a pair is a near duplicate there below ALIGNED_FACTOR x the median of that distance from
# a test image to its nearest training image. On the whole Fashion-MNIST (median 0.062) pairs
# below the threshold multiply past 0.1: 33 train/test and 89 train pairs at 0.1 (most of them
# pixel-space near duplicates too), 119 and 324 at 0.15, 434 and 1,074 at 0.2, alike garments
# rather than copies. Moved, mirrored and re-lit copies lie far below it (a pure move or mirror
# at 0); a copy shifted and then noisy may not, and is left to the other spaces.
ALIGNED_FACTOR = 0.1
SHIFT = 3
# ...a copy with sensor noise on top (Gaussian noise of sd 16 grey levels: up to 0.04 there) is
# no farther than the nearest other garment of many a test image. What tells it apart is what is
# left of it once its original is fitted (neighbours.residual_noise): noise has no shape, and
# lies on the background as much as on the garment. Below NOISY_FACTOR x the same median, an
# image and its nearest neighbour are a near duplicate too when that residual's correlation with
# itself one pixel away is at most NOISE_AUTOCORRELATION and its spread on the black background
# at least NOISE_BACKGROUND of that on the garment. Planted noisy and moved-and-noisy copies:
# 0.07 at the most, 0.48 at the least. On the clean Fashion-MNIST the first test alone also
# passed 35 pairs of alike garments that differ by a print or a weave (shapeless, but only on
# the garment: 0.35 at the most, bar one).
NOISY_FACTOR = 0.8
NOISE_AUTOCORRELATION = 0.1
NOISE_BACKGROUND = 0.4
# Candidates per image in the aligned search (moves of the query by up to ALIGNED_VARIANTS
# pixels each give their own, after registration). Within train half as many: 60,000 queries
# instead of 10,000, and a pair there is found from either of its two images.
ALIGNED_NEIGHBOURS = 6
ALIGNED_VARIANTS = 1
# In the embedding a pair must be this much closer than the median nearest-neighbour distance
# and the two images within the aligned threshold: the embedding proposes, the pixels confirm
# that the two are one photo and not two alike garments.
EMBEDDING_FACTOR = 0.5
SPACES = ("pixel", "aligned", "embedding")
# Images (not exact copies of a training image) needed to set the thresholds from their median.
MIN_REFERENCE = 10
# An image is an outlier when one of its scores exceeds the training images' median by this many
# median absolute deviations, or when it has no contrast at all (blank or one grey level). The
# scores: the mean RMS distance to its nearest training images; the part of it that the typical
# training images' principal components cannot draw (an inverted garment: white where every
# garment has black); its roughness (noise). On the clean Fashion-MNIST reconstruction at 8
# flags no image and every inverted one; roughness runs up to 11.8 on real photos (a noisy copy
# of one to 6.3) and from 14 on uniform noise, hence 12 there.
OUTLIER_MADS = {"pixel": 8.0, "reconstruction": 8.0, "roughness": 12.0}
# The typical images' components are at most one per this many training images: with 64 for 180
# images they drew the training images nearly exactly and any new garment badly, and 15 % of the
# ordinary test images were flagged; at one per 10, none, while an inverted garment still is.
IMAGES_PER_COMPONENT = 10
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
    args = dict(data_dir=data_dir, dataset=dataset, model=model, folds=folds, epochs=epochs, seed=seed,
                out_dir=out_dir, overrides=overrides, progress=progress)
    if out_dir is None:
        return _audit(data, **args)
    # Claimed, then checked: a second audit given the same folder is refused, not written over this one.
    with claim(out_dir):
        check_other_work(out_dir, "audit.json")
        check_free(output_files(out_dir), overwrite=overwrite, what="an audit")
        return _audit(data, **args)


def _audit(data, *, data_dir, dataset, model, folds, epochs, seed, out_dir, overrides, progress) -> dict[str, Any]:
    if data is None:
        from fmnist.data import load_dataset

        data = load_dataset(data_dir, dataset=dataset)
    from fmnist.auditing.labels import check_folds

    check_folds(data.y_train, folds)  # before minutes of neighbour search
    from fmnist.models import get_preset
    from fmnist.runs import resolve_config

    # The model and its settings too: a typo must not wait for the neighbour search to end.
    overrides = {**(overrides or {}), **({"epochs": epochs} if epochs is not None else {})}
    epochs = resolve_config(get_preset(model), **overrides).epochs
    phases = _Phases(progress)
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

    with phases.phase("aligned", "aligned neighbours (moved, re-lit, mirrored)", total=len(x_test) + len(x_train),
                      unit="img") as bar:
        al_test = nb.aligned_knn(x_test, x_train, ALIGNED_NEIGHBOURS, max_shift=SHIFT, variants=ALIGNED_VARIANTS,
                                 on_chunk=bar.update)
        al_train = nb.aligned_knn(x_train, x_train, ALIGNED_NEIGHBOURS // 2, same=True, max_shift=SHIFT,
                                  on_chunk=bar.update)

    from fmnist.auditing.labels import find_label_issues, out_of_fold_proba
    from fmnist.training import Callback

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

    notes: list[str] = []
    reference, note = _threshold_reference(exact, len(x_train), len(x_test))
    notes += [note] if note else []

    def typical(d_test: np.ndarray, d_train: np.ndarray) -> float:
        split, rows = reference
        if not len(rows):
            return 0.0
        return float(np.median((d_test if split == "test" else d_train)[rows, 0]))

    px_threshold = PIXEL_FACTOR * typical(px_test[0], px_train[0])
    al_threshold = ALIGNED_FACTOR * typical(al_test[0], al_train[0])
    em_threshold = EMBEDDING_FACTOR * typical(em_test[0], em_train[0])
    noisy_limit = NOISY_FACTOR * al_threshold / ALIGNED_FACTOR
    noisy = {"test": _noisy_copies(*al_test, x_test, x_train, al_threshold, noisy_limit),
             "train": _noisy_copies(*al_train, x_train, x_train, al_threshold, noisy_limit)}
    near = []
    for space, (d_test, i_test), (d_train, i_train), threshold in (
            ("pixel", px_test, px_train, px_threshold), ("aligned", al_test, al_train, al_threshold),
            ("embedding", em_test, em_train, em_threshold)):
        extra = space == "aligned"
        near += _near_pairs(space, d_test, i_test, "test", threshold, exact_pairs, noisy["test"] if extra else None)
        near += _near_pairs(space, d_train, i_train, "train", threshold, exact_pairs,
                            noisy["train"] if extra else None)
    near = _confirm_embedding(near, x_train, x_test, al_threshold)
    near.sort(key=lambda d: (SPACES.index(d["space"]), d["distance"]))

    # A class with no training images is one no fold model can predict: its test images are not
    # label errors, and the audit says the class is missing instead.
    train_counts = np.bincount(y_train, minlength=num_classes)
    untrained = sorted(set(np.flatnonzero(train_counts == 0).tolist()) & set(y_test.tolist()))
    if untrained:
        from fmnist.plots._common import class_name

        names = {c: class_name(c, data.class_names) for c in untrained}
        shown = ", ".join(str(c) if names[c] == str(c) else f"{c} ({names[c]})" for c in untrained)
        notes.append(f"{plural(len(untrained), 'class', 'classes')} with test images but none in train: {shown}; "
                     "no model could predict them, so their test images are not judged for label errors")
    with phases.phase("labels", "label issues (cleanlab)", total=2, unit="split") as bar:
        issues = []
        for split, labels, proba in (("train", y_train, fp.train), ("test", y_test, fp.test)):
            if len(labels):
                issues += [{"split": split, **issue}
                           for issue in find_label_issues(labels, proba, np.flatnonzero(train_counts))]
            bar.update(1)

    with phases.phase("outliers", "outliers", total=1) as bar:
        typical = nb.fit_typical_projection(x_train, outlier_components(len(x_train)), seed=seed)
        outliers, outlier_threshold, knn_test, knn_train = _outliers(
            {"pixel": (px_test[0], px_train[0]),
             "reconstruction": (nb.reconstruction_error(x_test, typical)[:, None],
                                nb.reconstruction_error(x_train, typical)[:, None]),
             "roughness": (nb.roughness(x_test)[:, None], nb.roughness(x_train)[:, None])},
            x_train, x_test, y_train, y_test)
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
    result["summary"] = _summary(result, notes=notes, missing=untrained, components=typical.n_components_,
                                 model=model, folds=folds, seed=seed, config=fp.config,
                                 feature=feature_source(fp.models[0]), thresholds={
                                     "pixel": px_threshold, "aligned": al_threshold, "embedding": em_threshold,
                                     **outlier_threshold},
                                 accuracy={"train_out_of_fold": float((fp.train.argmax(1) == y_train).mean()),
                                           "test_fold_mean": float((fp.test.argmax(1) == y_test).mean())
                                           if len(y_test) else None},
                                 times={**phases.times, "total": round(time.perf_counter() - start, 2)})
    if out_dir is not None:
        from fmnist.reporting.audit_report import write_audit_report

        distances = {"pixel_test": px_test[0][:, 0], "pixel_train": px_train[0][:, 0],
                     "aligned_test": al_test[0][:, 0], "aligned_train": al_train[0][:, 0],
                     "embedding_test": em_test[0][:, 0], "embedding_train": em_train[0][:, 0],
                     "outlier_test": knn_test["pixel"], "outlier_train": knn_train["pixel"]}
        # Staged: an audit interrupted while it writes leaves the folder as it was (an earlier
        # audit whole, under --overwrite), never a new audit.json beside an old audit.html.
        with staged(out_dir, last=AUDIT_FILE) as stage:
            with phases.phase("report", "audit.json and audit.html", total=1) as bar:
                write_audit_report(result, data, stage, distances)
                bar.update(1)
            result["summary"]["times_s"]["report"] = phases.times["report"]
            write_json(stage / AUDIT_FILE, result)
    return result


def _threshold_reference(exact: list[dict[str, Any]], n_train: int,
                         n_test: int) -> tuple[tuple[str, np.ndarray], str | None]:
    """The images whose nearest-neighbour distances set the near-duplicate thresholds, and a note if not the usual.

    Returns ((split, rows), note): the test images, else the training images, that are not
    exact copies of a training image. A copy's nearest distance is 0: were half the test set
    copies, the median and every threshold would be 0 and the searches silently off. With fewer
    than MIN_REFERENCE test images left (all of them, in a smaller test set), the training
    images (nearest other training image) set them; with too few there too, no threshold at
    all (rows empty), and the note says so.
    """
    copied = {"train": set(), "test": set()}
    for d in exact:
        if d["a"]["split"] == "train":  # the later image has a training image identical to it
            copied[d["b"]["split"]].add(d["b"]["index"])
            if d["b"]["split"] == "train":
                copied["train"].add(d["a"]["index"])
    left = {split: np.setdiff1d(np.arange(n), sorted(copied[split])) for split, n in (("test", n_test),
                                                                                        ("train", n_train))}
    if len(left["test"]) and len(left["test"]) >= min(MIN_REFERENCE, n_test):
        return ("test", left["test"]), None
    why = (f"only {len(left['test']):,} of {n_test:,} test images are not exact copies of training images"
           if n_test else None)
    if len(left["train"]) and len(left["train"]) >= min(MIN_REFERENCE, n_train):
        note = f"near-duplicate thresholds set from the training images: {why}" if why else None
        return ("train", left["train"]), note
    return ("train", left["train"][:0]), (
        f"near-duplicate search off: fewer than {MIN_REFERENCE} images are not exact copies of a training image "
        "to set its thresholds from")


def outlier_components(n_train: int) -> int:
    """Principal components of the outliers' typical-image model for ``n_train`` training images."""
    return max(1, min(PIXEL_COMPONENTS, n_train // IMAGES_PER_COMPONENT))


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
                exact_pairs: set, noisy: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """Pairs (training image a, query image b) closer than ``threshold``, each pair once.

    ``noisy``: query rows whose nearest neighbour (column 0) is a noisy copy beyond the
    threshold (:func:`_noisy_copies`); those pairs carry their residual's autocorrelation.
    """
    flagged = dist <= threshold
    for q in noisy or {}:
        flagged[q, 0] = True
    rows, cols = np.nonzero(flagged)
    out, seen = [], set()
    for q, j in zip(rows.tolist(), cols.tolist()):
        a, b = _ref("train", index[q, j]), _ref(query_split, q)
        if query_split == "train" and a["index"] > b["index"]:
            a, b = b, a
        key = _key(a, b)
        if key in seen or key in exact_pairs:
            continue
        seen.add(key)
        pair = {"a": a, "b": b, "distance": round(float(dist[q, j]), 6), "space": space}
        if j == 0 and noisy and q in noisy and dist[q, j] > threshold:
            pair["residual_autocorrelation"] = round(noisy[q], 4)
        out.append(pair)
    return out


def _noisy_copies(dist: np.ndarray, index: np.ndarray, queries: np.ndarray, base: np.ndarray, threshold: float,
                  limit: float) -> dict[int, float]:
    """Query rows whose nearest aligned neighbour, beyond ``threshold`` and within ``limit``, is it plus noise.

    Returns {row: the residual's autocorrelation} for those whose residual
    (:func:`neighbours.residual_noise`, at the best move, the query mirrored if that matches
    better) is shapeless and lies on the background too (the constants above).
    """
    from fmnist.auditing.neighbours import correlation_distance, residual_noise

    if not len(dist) or not dist.shape[1]:
        return {}
    rows = np.nonzero((dist[:, 0] > threshold) & (dist[:, 0] <= limit))[0]
    if not len(rows):
        return {}
    a, b = queries[rows], base[index[rows, 0]]
    mirror = np.ascontiguousarray(a[:, :, ::-1])
    d_plain, m_plain = correlation_distance(a, b, SHIFT, return_moves=True)
    d_mirror, m_mirror = correlation_distance(mirror, b, SHIFT, return_moves=True)
    flip = d_mirror < d_plain
    shapeless, everywhere = residual_noise(np.where(flip[:, None, None], mirror, a), b,
                                           np.where(flip[:, None], m_mirror, m_plain))
    noise = (shapeless <= NOISE_AUTOCORRELATION) & (everywhere >= NOISE_BACKGROUND)
    return {int(r): float(v) for r, v, keep in zip(rows, shapeless, noise) if keep}


def _confirm_embedding(near: list[dict[str, Any]], x_train, x_test, threshold: float) -> list[dict[str, Any]]:
    """Keep the embedding's pairs whose images are within the aligned space's threshold."""
    from fmnist.auditing.neighbours import correlation_distance

    emb = [d for d in near if d["space"] == "embedding"]
    if not emb:
        return near
    images = {"train": x_train, "test": x_test}
    a = np.stack([images[d["a"]["split"]][d["a"]["index"]] for d in emb])
    b = np.stack([images[d["b"]["split"]][d["b"]["index"]] for d in emb])
    keep = np.minimum(correlation_distance(a, b, SHIFT), correlation_distance(a[:, :, ::-1], b, SHIFT)) <= threshold
    return [d for d in near if d["space"] != "embedding"] + [d for d, k in zip(emb, keep) if k]


def _outliers(spaces: dict[str, tuple[np.ndarray, np.ndarray]], x_train, x_test, y_train, y_test):
    """Images far from every training image by some score (robust z-score), or without any contrast.

    ``spaces``: name -> (test, train) distances (n, k) to the nearest training images (or to
    what the principal components can draw, k = 1); an image's score is their mean. Returns the findings (farthest first,
    by pixel distance), the thresholds, and the scores of test and of train per space.
    """
    def score(d):  # the aligned search may hold fewer than k distinct candidates (inf)
        return np.nanmean(np.where(np.isfinite(d), d, np.nan), 1) if d.size else np.zeros(len(d), np.float32)

    knn_test = {name: score(d_test) for name, (d_test, _) in spaces.items()}
    knn_train = {name: score(d_train) for name, (_, d_train) in spaces.items()}
    thresholds, flagged = {}, {}
    for name in spaces:
        finite = knn_train[name][np.isfinite(knn_train[name])]
        median = float(np.median(finite)) if len(finite) else 0.0
        mad = float(np.median(np.abs(finite - median))) if len(finite) else 0.0
        thresholds[f"outlier_{name}"] = median + OUTLIER_MADS[name] * 1.4826 * (mad or 1e-6)
    out = []
    for split, x, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        scores = knn_train if split == "train" else knn_test
        flat = np.asarray(x).reshape(len(x), -1)
        flat_image = flat.max(1) == flat.min(1)
        far = np.zeros(len(x), bool)
        for name in spaces:
            far |= scores[name] > thresholds[f"outlier_{name}"]
        for i in np.nonzero(far | flat_image)[0]:
            out.append({"split": split, "index": int(i), "label": int(labels[i]),
                        "distance": round(float(scores["pixel"][i]), 6)})
    out.sort(key=lambda d: -d["distance"])
    return out, thresholds, knn_test, knn_train


def _summary(result, *, notes, missing, components, model, folds, seed, config, feature, thresholds, accuracy,
             times) -> dict[str, Any]:
    def count(items, **match):
        return sum(all(item[k] == v for k, v in match.items()) for item in items)

    def splits(item):
        return "-".join(sorted({item["a"]["split"], item["b"]["split"]}, key=["train", "test"].index))

    exact, near = result["exact_duplicates"], result["near_duplicates"]
    return {
        "format": AUDIT_FORMAT, "format_version": 2,
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
            **{name: round(value, 6) for name, value in thresholds.items()},
            "why": (f"pixel: RMS distance of pixels in [0, 1] below {PIXEL_FACTOR} x the median distance from a "
                    "test image to its nearest training image (test images that are exact copies of a training image "
                    "left out; the training images and their nearest other training image where too few test images "
                    "are left); aligned: 1 - the Pearson correlation of the pixels two "
                    f"images share at the best move of up to {SHIFT} pixels, either image mirrored or not, below "
                    f"{ALIGNED_FACTOR} x its median from a test image to its nearest training image (candidates from "
                    "images registered to the training mean and standardised, so moved, re-lit and mirrored copies "
                    f"are found), or below {NOISY_FACTOR} x that median for an image and its nearest neighbour when "
                    "what the neighbour leaves unexplained is noise (its correlation with itself one pixel away at "
                    f"most {NOISE_AUTOCORRELATION}: residual_autocorrelation; its spread on the background at least "
                    f"{NOISE_BACKGROUND} of that on the garment); embedding: cosine distance below {EMBEDDING_FACTOR} x the median nearest-neighbour "
                    "distance there, and the two images within the aligned threshold; outlier: the mean RMS distance "
                    "to the nearest training images, or the RMS error of the image drawn from the typical training "
                    f"images' {components} principal components (at most {PIXEL_COMPONENTS}, one per "
                    f"{IMAGES_PER_COMPONENT} training images; fitted again without the 2 % drawn worst), or the "
                    "mean absolute difference of neighbouring pixels, above the training images' median by more than "
                    + ", ".join(f"{v:g}" for v in OUTLIER_MADS.values()) +
                    " robust standard deviations (1.4826 MAD) respectively, or an image of one grey level"),
        },
        "label_score": ("cleanlab's label quality (self-confidence: the out-of-sample probability of the given "
                        "label); lower is more suspect; each split's issues ranked by cleanlab, most likely first"),
        "model": model, "folds": folds, "seed": seed, "training": config, "embedding": feature,
        "accuracy": accuracy, "times_s": times,
        "classes_missing_from_train": missing,
        # What the counts above cannot say (a search off, a class the models never saw): one line each.
        "notes": notes,
    }
