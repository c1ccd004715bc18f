"""Predict the class of your own images with a trained model: ``fmnist predict``.

Inputs, by file:

- photos and drawings that Pillow reads (PNG, JPEG, WebP, BMP, GIF, TIFF, ...): prepared by
  :func:`fmnist.inference.preprocess.prepare_image` (a 28x28 light-on-dark image as it is,
  anything else the way Fashion-MNIST was made; animated files: the first frame);
- ``.npy`` arrays: one image (28, 28) or a batch (N, 28, 28) / (N, 784), uint8 or integers in
  0..255 (or floats in [0, 1]), taken as dataset-style images without any preparation;
- IDX files (``*-ubyte``, ``*.idx``, or any file starting with IDX magic bytes; gzipped ones
  named ``*.gz``, as the data layer reads them): the same shapes, read with
  :func:`fmnist.data.read_idx`.

A file that cannot be used (missing, empty, not an image, truncated, absurdly large) is
reported as a :class:`Failure` with a one-line reason; the others are still predicted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import FmnistError, UsageError, option

__all__ = ["MAX_PIXELS", "Failure", "Input", "Prediction", "PredictResult", "load_inputs", "load_uploads",
           "read_image_bytes", "predict_files", "predict_inputs",
           "class_names_for", "format_predictions", "save_preprocessed", "save_plots", "PLOT_LIMIT"]

# At most this many probability charts per `fmnist predict --plot` unless --plot-limit says otherwise.
PLOT_LIMIT = 100

# Refuse images that would decode to more than this many pixels before decoding them: a few
# bytes of PNG can claim 100,000 x 100,000 pixels (a "decompression bomb"). Ours, lower than
# Pillow's (~89 megapixels), is the one a refusal names, whichever of the two stopped the image
# (_open_image). A JPEG is decoded at up to an eighth of its size, and the limit applies to that
# (_open_jpeg).
MAX_PIXELS = 64_000_000
_IDX_TYPES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)


@dataclasses.dataclass
class Input:
    """One image ready for the model: ``image`` uint8 (28, 28), light on black.

    ``index`` is its position in a batch file (None for a single image); ``how`` says how it
    was prepared: ``"as-is"``, ``"photo"``, ``"light-on-dark"`` or ``"batch"``; ``warning``
    why the garment may have been found wrongly in a photo (None when nothing is doubtful).
    """

    file: str
    index: int | None
    image: np.ndarray
    how: str
    warning: str | None = None


@dataclasses.dataclass
class Failure:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclasses.dataclass
class Prediction:
    """The model's answer for one :class:`Input`. ``top_k``: the best classes, most probable first."""

    input: Input
    label: int | str  # the model's label value: a NetClassifier fitted on text has text labels
    class_name: str
    probability: float
    top_k: list[dict[str, Any]]
    proba: np.ndarray  # float (n_classes,)

    def to_dict(self) -> dict[str, Any]:
        """``{"file", ["index",] "label", "class_name", "probability", "top_k": [...], "prepared", ["warning"]}``,
        JSON-ready.

        ``prepared`` is how the image was made the model's input (``Input.how``: ``"as-is"``,
        ``"photo"``, ``"light-on-dark"``, ``"batch"``); ``warning`` is there only when the photo's
        crop is doubtful (see :class:`Input`).
        """
        d: dict[str, Any] = {"file": self.input.file}
        if self.input.index is not None:
            d["index"] = self.input.index
        d.update(label=self.label, class_name=self.class_name, probability=self.probability, top_k=self.top_k,
                 prepared=self.input.how)
        if self.input.warning:
            d["warning"] = self.input.warning
        return d


@dataclasses.dataclass
class PredictResult:
    """Predictions in input order, the files that failed, and the model's class names."""

    predictions: list[Prediction]
    failures: list[Failure]
    class_names: list[str]


# --- reading ------------------------------------------------------------------------------------

def _batch(array: np.ndarray, what: str) -> np.ndarray:
    """A loaded array as uint8 (N, 28, 28), or FmnistError saying what shape/values were wrong."""
    a = np.asarray(array)
    if a.ndim in (3, 4) and a.shape[-3:] in ((28, 28, 1), (1, 28, 28)):
        # One channel axis, as Keras's CNN chapter adds ((N, 28, 28, 1)) or torch's layout has.
        a = a.reshape(-1, 28, 28)
    if a.ndim == 2 and a.shape == (28, 28):
        a = a[None]
    elif a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim != 3 or a.shape[1:] != (28, 28) or len(a) == 0:
        raise FmnistError(f"{what} of shape {a.shape}: expected images (28, 28), (N, 28, 28), (N, 28, 28, 1) or "
                          "(N, 784)")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer) and a.min() >= 0 and a.max() <= 255:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
        return np.round(a * 255).astype(np.uint8)
    values = f" with values {a.min()}..{a.max()}" if a.dtype.kind in "biuf" else ""
    hint = ("; floats of 0..255: divide them by 255, or save them as uint8"
            if a.dtype.kind == "f" and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255 else "")
    raise FmnistError(f"{what} of dtype {a.dtype}{values}: expected uint8 pixels (0..255) or floats in [0, 1]"
                      f"{hint}")


def _is_idx(path: Path, head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":  # gzip: look at the decompressed header
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(4)
        except (OSError, EOFError):
            return False
    return len(head) >= 4 and head[:2] == b"\0\0" and head[2] in _IDX_TYPES and 1 <= head[3] <= 4


def _open_image(path):
    from PIL import Image

    # Pillow's own complaints about a damaged file (warnings such as "Corrupt EXIF data", log
    # lines from its TIFF reader) would print beside the one line each file gets: a file that
    # decodes is used, one that does not is refused, and either way Pillow stays quiet.
    with warnings.catch_warnings(), _quiet_logger("PIL"):
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        # Our own limit, lower than Pillow's, replaces it (never its process-wide setting): checked
        # on the header below, before decoding, so Pillow's warning over ~89 megapixels is let
        # pass. Its error, over twice that, is raised inside Image.open, before our check can
        # run: it becomes our refusal, so every image too large reads the same.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = _open_jpeg(path) or Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(_pillows_pixels(exc)) from None
        try:
            w, h = image.size
            # A JPEG is decoded at up to 8x smaller (draft below): a 108-megapixel phone photo
            # costs 1.7 megapixels. The limit is on what is decoded.
            shrink = 8 if image.format == "JPEG" else 1
            if w < 1 or h < 1 or -(-w // shrink) * -(-h // shrink) > MAX_PIXELS:
                raise _too_large(f"{w} x {h} pixels", eighth=shrink > 1)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            if image.format == "JPEG":
                # Let the JPEG decoder shrink by up to 8x: 28 pixels need far fewer than a camera's.
                image.draft("RGB", (8 * 28, 8 * 28))
            image.load()  # decode now, so a truncated file fails here and not halfway through
        except BaseException:
            image.close()  # its file, which a refused image would otherwise hold open
            raise
    return image


def _too_large(size: str, eighth: bool = False) -> FmnistError:
    """The one refusal of an image over :data:`MAX_PIXELS`; ``size`` as known, e.g. "9000 x 8000 pixels"."""
    return FmnistError(f"absurdly large image ({size}), over the {MAX_PIXELS // 1_000_000} megapixel limit"
                       f"{' even decoded at an eighth of its size' if eighth else ''}; refused before decoding: "
                       "resize it first")


def _pillows_pixels(exc: Exception) -> str:
    """The size in Pillow's refusal ("Image size (100000000 pixels) exceeds limit of ..."), as we write sizes."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,} pixels" if found else "size unknown"


def _open_jpeg(path):
    """A JPEG opened by Pillow's JPEG reader itself, or None for anything else.

    ``Image.open`` checks the pixels a header claims against Pillow's limit (~89 megapixels)
    before anything can ask the decoder to shrink: today's phones take 108- and 200-megapixel
    JPEGs, which a JPEG decoder reads at an eighth of the size. Our own check in
    :func:`_open_image` then applies to what is decoded.
    """
    from PIL import JpegImagePlugin

    if _head(path, 3) != b"\xff\xd8\xff":
        return None
    return JpegImagePlugin.JpegImageFile(path)


def _head(source, n: int) -> bytes:
    """The first ``n`` bytes of ``source``: a path, or a seekable binary file (left at its start)."""
    if hasattr(source, "seek"):
        source.seek(0)
        head = source.read(n)
        source.seek(0)
        return head
    with open(source, "rb") as fh:
        return fh.read(n)


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Nothing logged by ``name`` or the loggers below it (PIL.TiffImagePlugin...) meanwhile."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # its children, at NOTSET, take their level from it
    try:
        yield
    finally:
        logger.setLevel(before)


# The ISO base media file's brands of HEIC/HEIF stills: what a phone's camera saves by default.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _is_heif(source) -> bool:
    """Whether ``source`` (a path or a seekable binary file) starts as a HEIC/HEIF image does."""
    try:
        head = _head(source, 12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _image_input(source, name: str, arrays: bool = True) -> Input:
    """Decode an image (a path or a binary file object) and prepare it; FmnistError for a bad one."""
    from PIL import Image, UnidentifiedImageError

    from fmnist.inference.preprocess import prepare_image

    try:
        image = _open_image(source)
    except UnidentifiedImageError:
        if _is_heif(source):
            raise FmnistError("a HEIC/HEIF photo, which Pillow cannot read: save it as JPEG (an iPhone does with "
                              "Settings > Camera > Formats > Most Compatible)") from None
        also = ", nor .npy or IDX" if arrays else ""  # where arrays are read too (not the web service)
        raise FmnistError(f"not an image Pillow can read (PNG, JPEG, WebP, BMP, GIF...){also}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # a later frame's check
        raise _too_large(_pillows_pixels(exc)) from None
    except FmnistError:
        raise
    except Exception as exc:  # noqa: BLE001 (a damaged file reaches code paths of Pillow's that raise anything)
        # Pillow reports a cut-off file as OSError "image file is truncated", a few corrupt
        # headers as SyntaxError, and a TIFF page without its dimensions as TypeError.
        raise FmnistError(f"damaged or truncated image ({exc.__class__.__name__}: {exc})") from None
    with image:
        prepared = prepare_image(image)
    return Input(name, None, prepared.image, prepared.how, prepared.warning)


def _read_one(path: Path) -> list[Input]:
    """The images in one file; raises FmnistError / OSError / ValueError for a bad file."""
    name = str(path)
    if not path.exists():
        raise FmnistError("no such file")
    size = path.stat().st_size
    if size == 0:
        raise FmnistError("empty file (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise FmnistError(f"not a readable .npy array ({exc})") from None
        images = _batch(array, "array")
        return [Input(name, i if images.shape[0] > 1 or array.ndim == 3 else None, im, "batch")
                for i, im in enumerate(images)]
    if _is_idx(path, head) or "ubyte" in path.name or path.suffix.lower() == ".idx":
        from fmnist.data import read_idx

        array = read_idx(path)
        images = _batch(array, "IDX array")
        return [Input(name, i if array.ndim == 3 else None, im, "batch") for i, im in enumerate(images)]
    return [_image_input(path, name)]


def read_image_bytes(name: str, data: bytes) -> Input:
    """One image held in memory (an upload) as the model's input; FmnistError for a bad one.

    ``name`` only labels the result and its messages: it is never opened, so a crafted name
    cannot reach the file system. Images only: a ``.npy`` or IDX batch, which may hold
    thousands of images, is refused with a pointer to ``fmnist predict``.
    """
    if not data:
        raise FmnistError("empty file (0 bytes)")
    if data[:6] == b"\x93NUMPY" or (len(data) >= 4 and data[:2] == b"\0\0" and data[2] in _IDX_TYPES):
        raise FmnistError("a .npy or IDX array, not an image; send photos or drawings here, "
                          "and arrays to `fmnist predict`")
    import io

    return _image_input(io.BytesIO(data), name, arrays=False)


def _gather(items, read) -> tuple[list[Input], list[Failure]]:
    """``read(item)`` (a list of Inputs) for each ``(name, item)``: the usable images, and a Failure per bad one."""
    inputs: list[Input] = []
    failures: list[Failure] = []
    for name, item in items:
        try:
            inputs.extend(read(item))
        except FmnistError as exc:
            # read_idx's messages already name the file; ours do not.
            failures.append(Failure(name, str(exc).removeprefix(f"{name}: ")))
        except PermissionError:
            failures.append(Failure(name, "permission denied; check the file's permissions"))
        except (OSError, ValueError, EOFError) as exc:
            failures.append(Failure(name, f"unreadable ({exc.__class__.__name__}: {exc})"))
    return inputs, failures


def load_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Input], list[Failure]]:
    """Read and prepare every file in ``paths``: the usable images, and a Failure per bad file.

    A folder stands for the images and arrays in it (by their file names' endings, in name
    order, not its subfolders); a pattern such as ``"photos/*.jpg"`` that names no file itself
    (quoted, so no shell expanded it) for the files it matches.
    """
    items: list[tuple[str, Path | str]] = []  # (name, file to read, or why there is none), in order
    for p in map(Path, paths):
        found = _expand(p)
        if found is None:
            items.append((str(p), p))
        elif found:
            items.extend((str(f), f) for f in found)
        else:
            what = "this folder holds" if p.is_dir() else "this pattern matches"
            items.append((str(p), f"{what} no images (PNG, JPEG, WebP, BMP, GIF, TIFF), .npy arrays or IDX "
                                  "image files"))

    def read(item: Path | str) -> list[Input]:
        if isinstance(item, str):
            raise FmnistError(item)
        return _read_one(item)

    return _gather(items, read)


# What a folder's files are read as: the endings Pillow reads, arrays, IDX image files. A
# dataset's folder also holds its labels (idx1-ubyte), which are no images: they are passed over.
_FOLDER_ENDINGS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".npy", ".idx")


def _expand(path: Path) -> list[Path] | None:
    """The files a folder or an unexpanded pattern stands for; None for anything else (a file)."""
    import glob

    if path.is_dir():
        return sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                      and (f.suffix.lower() in _FOLDER_ENDINGS or "ubyte" in f.name) and "idx1-ubyte" not in f.name)
    if not path.exists() and any(c in path.name for c in "*?["):
        return sorted(Path(f) for f in glob.glob(str(path)) if Path(f).is_file())
    return None


def load_uploads(uploads: Sequence[tuple[str, bytes]]) -> tuple[list[Input], list[Failure]]:
    """Prepare images held in memory, ``(name, bytes)`` each: as :func:`load_inputs` does for files.

    See :func:`read_image_bytes`: names are labels, never paths; nothing touches the disk.
    """
    return _gather(((name, (name, data)) for name, data in uploads), lambda nd: [read_image_bytes(*nd)])


# --- predicting ---------------------------------------------------------------------------------

def class_names_for(model_path: str | os.PathLike, n_classes: int) -> list[str]:
    """The class names saved with a model (model.json), else Fashion-MNIST's, else numbers."""
    import json

    folder = Path(model_path)
    folder = folder.parent if folder.is_file() else folder
    try:
        names = json.loads((folder / "model.json").read_text()).get("class_names")
    except (OSError, ValueError, AttributeError, RecursionError):
        names = None
    if not isinstance(names, list) or len(names) < n_classes:
        return _default_names(n_classes)
    return [str(n) for n in names]


def _default_names(n_classes: int) -> list[str]:
    from fmnist.data import CLASS_NAMES

    return list(CLASS_NAMES) if n_classes <= len(CLASS_NAMES) else [str(i) for i in range(n_classes)]


def predict_files(model, paths: Sequence[str | os.PathLike], *, top_k: int = 3,
                  class_names: Sequence[str] | None = None) -> PredictResult:
    """Predict every image in ``paths`` with ``model`` (a loaded model, or a run/model folder).

    Returns the predictions in input order and the files that failed. ``top_k`` is capped at
    the number of classes. Probabilities come from :func:`fmnist.evaluation.predict_proba`,
    the same path that scored the model.
    """
    if top_k < 1:
        raise UsageError(f"{option('top_k')} must be at least 1, got {top_k}")
    model_path = labels = None
    if isinstance(model, (str, os.PathLike)):
        model_path = model
        model, (inputs, failures) = _load_beside(model_path, paths)
        labels = labels_for(model_path)
    else:
        inputs, failures = load_inputs(paths)
    n = _n_classes(model)
    if class_names is None:
        class_names = class_names_for(model_path, n) if model_path is not None else _default_names(n)
    class_names = list(class_names)
    return PredictResult(predict_inputs(model, inputs, top_k=top_k, class_names=class_names, labels=labels), failures,
                         class_names)


def _load_beside(model_path, paths):
    """``load_model(model_path)`` and ``load_inputs(paths)``, the images read in a forked process.

    Loading a model from disk first imports torch, which on a small machine is most of what
    ``fmnist predict one.jpg`` waits for (~2.5 s on two cores) and needs one core; reading and
    preparing a photo (Pillow, scipy) needs ~1 s on the other. Done side by side, the photo is
    ready when the model is. Where the overlap cannot help (torch already imported, one CPU, no
    fork) or the child fails to report, the images are read here, as they would be anyway.
    """
    import multiprocessing
    import sys

    def load_model(path):  # models.io imports torch: only here, after the child is forked
        from fmnist.models.io import load_model

        return load_model(path)

    if ("torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods()
            or len(os.sched_getaffinity(0)) < 2):
        return load_model(model_path), load_inputs(paths)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        loaded = pool.submit(load_inputs, list(paths))
        model = load_model(model_path)
        try:
            return model, loaded.result()
        except BrokenProcessPool:  # the child died (killed, out of memory): read them here
            return model, load_inputs(paths)


def labels_for(model_path: str | os.PathLike) -> list | None:
    """The labels a model folder's columns stand for where they are not the column numbers: a
    saved NetClassifier's (its ``classes_``, kept in model.json), which :func:`fmnist.load_model`
    returns as its bare network. None for any other folder."""
    from fmnist.errors import ModelError
    from fmnist.models.io import model_info

    folder = Path(model_path)
    folder = folder.parent if folder.is_file() else folder
    saved = model_info(folder).get("net_classifier")
    if saved is None:
        return None
    from fmnist.estimators import _saved_labels  # scikit-learn: only for a classifier's folder

    try:
        return _saved_labels(saved["classes"], saved["classes_dtype"]).tolist()
    except (KeyError, TypeError, ValueError, FmnistError) as exc:
        raise ModelError(f"{folder / 'model.json'}: malformed 'net_classifier' entry ({exc!s:.200})") from None


def predict_inputs(model, inputs: Sequence[Input], *, top_k: int, class_names: Sequence[str],
                   labels: Sequence | None = None) -> list[Prediction]:
    """The model's :class:`Prediction` for each prepared :class:`Input`, in order, in one forward pass.

    ``labels``: the label of each column, where the model does not know them itself (a saved
    NetClassifier loaded as its network: :func:`labels_for`)."""
    from fmnist.evaluation.metrics import column_labels
    from fmnist.evaluation.metrics import predictions as predicted_classes

    if not inputs:
        return []
    n = _n_classes(model)
    proba, best = predicted_classes(model, np.stack([i.image for i in inputs]))
    # The label a column stands for: a scikit-learn model's classes_ (7, not its column 2).
    if labels is None:
        labels = column_labels(model)
        labels = list(range(n)) if labels is None else labels.tolist()
    predictions = []
    for inp, p, first in zip(inputs, proba, best):
        # The model's prediction first (a scikit-learn model's, where its probabilities tie), then
        # the most probable of the others.
        order = [int(first), *(c for c in np.argsort(-p, kind="stable") if c != first)][:min(top_k, n)]
        top = [{"label": labels[c], "class_name": class_names[c], "probability": float(p[c])} for c in order]
        predictions.append(Prediction(inp, top[0]["label"], top[0]["class_name"], top[0]["probability"], top, p))
    return predictions


def _n_classes(model) -> int:
    spec = getattr(model, "spec", None)
    if spec is not None:
        return int(spec.num_classes)
    return len(model.classes_)


def format_predictions(predictions: Sequence[Prediction]) -> str:
    """Text for people: a line per image, then its top-k classes when k > 1.

    Example::

        boot.jpg (photo): Ankle boot 0.912
            Ankle boot    0.912
            Sneaker       0.061
            Sandal        0.020

    and a last line ``warning: ...`` under an image whose crop is doubtful (see :class:`Input`).
    """
    lines = []
    for p in predictions:
        where = p.input.file + ("" if p.input.index is None else f"[{p.input.index}]")
        lines.append(f"{where} ({p.input.how}): {p.class_name} {p.probability:.3f}")
        if len(p.top_k) > 1:
            width = max(len(t["class_name"]) for t in p.top_k)
            lines += [f"    {t['class_name']:<{width}}  {t['probability']:.3f}" for t in p.top_k]
        if p.input.warning:
            lines.append(f"    warning: {p.input.warning}")
    return "\n".join(lines)


# --- writing ------------------------------------------------------------------------------------

def _stems(predictions: Sequence[Prediction]) -> list[str]:
    """A distinct file stem per prediction: 'shoe', 'batch-17'; 'shoe-2' for a second 'shoe',
    or 'shoe-3' where an input is itself called 'shoe-2'."""
    bases = []
    for p in predictions:
        stem = Path(p.input.file).name.split(".")[0] or "image"
        bases.append(stem if p.input.index is None else f"{stem}-{p.input.index}")
    reserved, used, out = set(bases), set(), []
    for stem in bases:
        name, k = stem, 1
        while name in used or (name != stem and name in reserved):
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        out.append(name)
    return out


def _preprocessed_paths(predictions: Sequence[Prediction], out_dir: str | os.PathLike) -> list[Path]:
    """Where :func:`save_preprocessed` writes each prediction's input."""
    return [Path(out_dir) / f"{stem}.png" for stem in _stems(predictions)]


def _plot_paths(predictions: Sequence[Prediction], out_dir: str | os.PathLike,
                limit: int | None = None) -> list[Path]:
    """Where :func:`save_plots` writes the charts of the first ``limit`` predictions (None: all)."""
    return [Path(out_dir) / f"{stem}-proba.png" for stem in _stems(predictions)][:limit]


def check_outputs(predictions: Sequence[Prediction], *, preprocessed: str | os.PathLike | None = None,
                  plot: str | os.PathLike | None = None, plot_limit: int | None = PLOT_LIMIT,
                  overwrite: bool = False) -> None:
    """Refuse (:class:`~fmnist.errors.OutputExistsError`) the places :func:`save_preprocessed`
    and :func:`save_plots` would write over, unless ``overwrite``: both checked before either is
    written, so a refusal of the second never follows a first folder already filled."""
    from fmnist._files import check_free

    if preprocessed is not None:
        check_free(_preprocessed_paths(predictions, preprocessed), overwrite=overwrite, what="an image",
                   out="--save-preprocessed")
    if plot is not None:
        check_free(_plot_paths(predictions, plot, plot_limit), overwrite=overwrite, what="a chart", out="--plot")


def save_preprocessed(predictions: Sequence[Prediction], out_dir: str | os.PathLike, *,
                      overwrite: bool = False) -> list[Path]:
    """Write each prepared 28x28 input as ``out_dir/STEM.png`` (what the model saw); return the paths.

    When any of those files exists, nothing is written (:class:`~fmnist.errors.OutputExistsError`)
    unless ``overwrite``.
    """
    from PIL import Image

    from fmnist._files import atomic_write, claim

    # Claimed, then checked: a second command writing the same folder is refused, not mixed in.
    with claim(out_dir, out="--save-preprocessed"):
        check_outputs(predictions, preprocessed=out_dir, overwrite=overwrite)
        paths = []
        for p, target in zip(predictions, _preprocessed_paths(predictions, out_dir)):
            img = Image.fromarray(p.input.image, mode="L")
            paths.append(atomic_write(target, lambda tmp, img=img: img.save(tmp, format="PNG")))
    return paths


def save_plots(predictions: Sequence[Prediction], out_dir: str | os.PathLike, class_names: Sequence[str],
               dpi: int = 100, limit: int | None = PLOT_LIMIT, *, overwrite: bool = False) -> list[Path]:
    """Write a probability bar chart per prediction (book 8-2) as ``out_dir/STEM-proba.png``.

    Only the first ``limit`` predictions are charted (None: all): a batch of 50,000 images
    would otherwise write 50,000 PNGs. Returns the paths written, in input order; the file
    names are those the full set would get. When any of them exists, nothing is written
    (:class:`~fmnist.errors.OutputExistsError`) unless ``overwrite``.
    """
    from fmnist.plots import probability_bars, save_figure

    if limit is not None and limit < 1:
        raise UsageError(f"{option('limit', limit, cli='--plot-limit')} must be at least 1 (None: no limit)")
    from fmnist._files import claim

    # Claimed, then checked: a second command writing the same folder is refused, not mixed in.
    with claim(out_dir, out="--plot"):
        check_outputs(predictions, plot=out_dir, plot_limit=limit, overwrite=overwrite)
        paths = []
        for p, target in zip(predictions, _plot_paths(predictions, out_dir, limit)):
            where = Path(p.input.file).name + ("" if p.input.index is None else f" [{p.input.index}]")
            fig = probability_bars(p.proba, class_names, title=f"{where}: {p.class_name} ({p.probability:.2f})")
            paths.append(save_figure(fig, target, dpi=dpi))
    return paths
