"""One HTML page that shows what a set of runs learned: ``fmnist report RUN_DIR...``.

:func:`build_report` reads run folders (:func:`fmnist.runs.load_run`), predicts with each
model through the one evaluation path (:func:`fmnist.evaluation.metrics.predictions`), draws the
figures of :mod:`fmnist.plots` and writes::

    OUT/
      report.html                 self-contained: every PNG embedded as a data: URI, CSS inline,
                                  no script, no link outside the page; opens offline
      learning_curves.png         all runs in one figure
      RUN/confusion_counts.png    one folder per run (named after the run folder)
      RUN/confusion_normalised.png
      RUN/per_class.png
      RUN/misclassified.png
      RUN/conv_filters.png        convolutional models only
      RUN/feature_maps.png        convolutional models only
      RUN/embedding.png

Runs are ranked by validation accuracy. Test accuracy is shown in its own column, labelled
as reported apart and never used to choose; the diagnostic figures (confusion matrix,
mistakes, embedding) are drawn on the split named by ``split`` (the test set by default: the
misclassified images a reader wants to see are the held-out ones).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import atomic_write, check_free, check_other_work, claim
from fmnist._text import plural, shell, with_article
from fmnist.errors import UsageError

__all__ = ["build_report", "build_sweep_report", "RunSummary", "REPORT_FILE", "SECTIONS", "SWEEP_SECTIONS"]

REPORT_FILE = "report.html"
# Section ids in page order; the tests look for each one.
SECTIONS = ("leaderboard", "learning-curves", "confusion", "per-class", "misclassified", "conv", "embedding")
SWEEP_SECTIONS = ("leaderboard", "parameters", "learning-curves")


@dataclasses.dataclass
class RunSummary:
    """One leaderboard row. Accuracies are fractions in [0, 1]; None where a run lacks them."""

    name: str
    run_dir: str
    family: str
    parameters: int
    epochs: str
    train_time_s: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    best_epoch: int | None
    optimizer: str | None = None
    lr: float | None = None
    val_loss: float | None = None
    # (fold, folds), 0-based: the run holds one fold model of a cross-validation (the study's
    # linear experiment), and its recorded test accuracy is the mean of all the fold models.
    cv_fold: tuple[int, int] | None = None


# Each run's figures, in its own folder of the report (RUN/...).
RUN_FIGURES = frozenset({"confusion_counts.png", "confusion_normalised.png", "per_class.png", "misclassified.png",
                         "conv_filters.png", "feature_maps.png", "embedding.png"})


def _forget_report(out: Path) -> None:
    """Remove an earlier report from ``out`` (it is being replaced): its page first, then its
    figures, among them the folders of runs the new report may not show again. A folder that
    holds anything but a run's figures is not the report's and stays."""
    if not out.is_dir():
        return
    (out / REPORT_FILE).unlink(missing_ok=True)
    (out / "learning_curves.png").unlink(missing_ok=True)
    for folder in out.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            files = list(folder.iterdir())
            if files and all(f.is_file() and f.name in RUN_FIGURES for f in files):
                for f in files:
                    f.unlink()
                folder.rmdir()


def _earlier_report(out: Path) -> str:
    """What a report folder holds: a report, or the figures of one interrupted before its page."""
    return "an earlier report" if (out / REPORT_FILE).exists() else \
        "an unfinished report's figures (it was interrupted before report.html)"


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    data,
    *,
    embedding: str = "pca",
    split: str = "test",
    max_points: int = 2000,
    n_mistakes: int = 25,
    dpi: int = 100,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs for the runs in ``run_dirs``; return the HTML path.

    ``run_dirs``: run folders, or one sweep's folder (:func:`build_sweep_report`) or one
    comparison's (``fmnist compare --out``: every run it trained, best first).

    ``data``: a :class:`fmnist.data.Dataset` (the runs' dataset: the figures need the
    images). ``embedding``: ``"pca"``, ``"tsne"`` or ``"umap"`` (needs umap-learn), on at
    most ``max_points`` images of ``split`` (``"test"`` or ``"val"``). Raises
    :class:`~fmnist.errors.FmnistError` for an unreadable run folder or a bad option, and
    :class:`~fmnist.errors.OutputExistsError` when ``out_dir`` holds an earlier report's
    files (unless ``overwrite``), before drawing anything.
    """
    if not run_dirs:
        raise UsageError("report: give at least one run folder (written by 'fmnist train')")
    from fmnist.tuning.sweep import SWEEP_FILE

    if len(run_dirs) == 1 and (Path(run_dirs[0]) / SWEEP_FILE).exists():
        return build_sweep_report(run_dirs[0], out_dir, data, embedding=embedding, split=split,
                                  max_points=max_points, n_mistakes=n_mistakes, dpi=dpi, overwrite=overwrite)
    from fmnist.compare import PLAN_FILE

    board = None  # a comparison's leaderboard, when the report is of its folder
    if len(run_dirs) == 1:
        from fmnist.compare import read_leaderboard
        from fmnist.compare import run_dirs as compared

        folder = Path(run_dirs[0])
        if (folder / PLAN_FILE).exists() and not (folder / "leaderboard.json").exists():
            from fmnist.errors import RunError

            raise RunError(f"{folder}: the comparison has not finished (no leaderboard.json); finish it with "
                           f"'fmnist compare --resume {shell(folder)}'")
        board = read_leaderboard(folder)
        run_dirs = compared(folder, board) or run_dirs  # a comparison's folder: every run it trained
    else:
        for folder in map(Path, run_dirs):
            if (folder / PLAN_FILE).exists() or (folder / SWEEP_FILE).exists():
                kind = "sweep" if (folder / SWEEP_FILE).exists() else "comparison"
                raise UsageError(f"{folder}: a {kind}'s folder, which is reported alone (fmnist report {folder}); "
                                 "with other folders, name run folders only")
    _check_options(embedding, split)
    from fmnist.runs import load_run, split_data

    out = Path(out_dir)
    runs = [load_run(d) for d in run_dirs]  # all loaded first: a bad folder fails before any drawing
    # Each run's images of the split, first too: one that has no such split (--no-holdout) or
    # trained on other data fails before any drawing.
    images = [split_data(run, data, split)[:2] for run in runs]
    slugs = _unique_slugs([Path(r.run_dir).resolve().name for r in runs])
    # Claimed, then checked: a second report given the same folder is refused, not mixed in.
    with claim(out):
        check_other_work(out, REPORT_FILE)
        check_free([out / REPORT_FILE, out / "learning_curves.png", *(out / slug for slug in slugs)],
                   overwrite=overwrite, what=_earlier_report(out))
        if overwrite:
            _forget_report(out)
        class_names = list(data.class_names)

        summaries = [_summarise(run) for run in runs]
        body = [_leaderboard_html(summaries)]
        if board and board.get("seeds"):
            body.insert(0, _replicates_html(board))
        body.append(_learning_curves_html(runs, summaries, slugs, out, dpi))
        for run, slug, summary, split_images in zip(runs, slugs, summaries, images):
            body.append(_run_html(run, slug, summary, out, data, split_images, class_names, split=split,
                                  embedding=embedding, max_points=max_points, n_mistakes=n_mistakes, dpi=dpi))
        page = _page(body, summaries, split)
        path = out / REPORT_FILE
        atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


# --- facts --------------------------------------------------------------------------------------

def _parameters(model) -> int:
    if hasattr(model, "parameters") and callable(model.parameters):
        from fmnist.models import count_parameters

        spec = getattr(model, "spec", None)
        # Keras's count (batch-norm statistics included) when the spec is known, as `fmnist models` shows.
        return count_parameters(spec) if spec is not None else sum(p.numel() for p in model.parameters())
    return int(np.size(model.coef_) + np.size(model.intercept_))


def _summarise(run) -> RunSummary:
    history, metrics = run.history, run.metrics
    name = str(run.info.get("model") or Path(run.run_dir).name)
    family = "torch" if hasattr(run.model, "parameters") and callable(run.model.parameters) else "sklearn"
    if history:
        epochs = str(len(history))
    elif hasattr(run.model, "max_iter"):
        epochs = f"max_iter {run.model.max_iter}"  # scikit-learn SGD records no per-epoch history
    else:
        epochs = "–"
    # The epoch whose weights the run holds (early stopping may have restored an earlier one):
    # the scores beside it are that epoch's. Older runs did not record it: highest val accuracy.
    best = metrics.get("weights_epoch")
    scored = [(e.get("val_accuracy"), i) for i, e in enumerate(history) if e.get("val_accuracy") is not None]
    if best is None and scored:
        _, i = max(scored, key=lambda t: (t[0], -t[1]))  # the earliest epoch wins a tie
        best = int(history[i].get("epoch", i + 1))

    def acc(split: str) -> float | None:
        value = (metrics.get(split) or {}).get("accuracy")
        return None if value is None else float(value)

    from fmnist.reporting.leaderboard import optimizer_and_lr

    t = metrics.get("train_time_s")
    optimizer, lr = optimizer_and_lr(run.info.get("config")) if family == "torch" else ("scikit-learn SGD", None)
    val_loss = (metrics.get("val") or {}).get("loss")
    split = (run.info.get("data") or {}).get("split") or {}
    cv_fold = (int(split.get("fold", 0)), int(split["cross_validation_folds"])) \
        if "cross_validation_folds" in split else None
    return RunSummary(name, str(run.run_dir), family, _parameters(run.model), epochs,
                      None if t is None else float(t), acc("val"), acc("test"), best, optimizer, lr,
                      None if val_loss is None else float(val_loss), cv_fold)


def _fold_note(summary: RunSummary) -> str:
    """What a cross-validated run's test accuracy is, and which model its figures show: the run
    folder keeps one fold model, while its test number is the mean of all of them, so the two
    test accuracies a report shows for it differ; "" for any other run."""
    if summary.cv_fold is None:
        return ""
    fold, folds = summary.cv_fold
    return (f"{summary.name}'s test accuracy, {_pct(summary.test_accuracy)}, is the mean of the {folds} fold models "
            f"of its {folds}-fold cross-validation; its run folder keeps one of them, fold {fold + 1}'s, and its "
            "figures are that model's own.")


def _unique_slugs(names: Sequence[str]) -> list[str]:
    """Safe folder names for the runs' figures: two runs called 'run' become 'run', 'run-2'."""
    seen: dict[str, int] = {}
    slugs = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "run"
        seen[base] = seen.get(base, 0) + 1
        slugs.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return slugs


def _in_label_space(model, proba: np.ndarray, pred: np.ndarray, n_names: int) -> tuple[np.ndarray, np.ndarray]:
    """A model's probabilities and predicted columns indexed by label value, as the images'
    labels are, and as a network's outputs already are: a scikit-learn model's columns are its
    classes_ (data labelled 3 and 7: columns 0 and 1), which compared with the labels as they
    are would all be wrong."""
    from fmnist.evaluation.metrics import column_labels

    labels = column_labels(model)
    if labels is None:
        return proba, pred
    labels = labels.astype(np.int64)  # a run's model was fitted on a dataset's whole-number labels
    full = np.zeros((len(proba), max(n_names, int(labels.max()) + 1)), dtype=proba.dtype)
    full[:, labels] = proba
    return full, labels[pred]


def _check_options(embedding: str, split: str) -> None:
    """The options a report draws with, refused before anything is drawn."""
    from fmnist.errors import FmnistError
    from fmnist.plots.inspection import check_method

    try:
        check_method(embedding)
    except FmnistError as exc:
        raise UsageError(f"--embedding: {exc}") from None
    if split not in ("test", "val"):
        raise UsageError(f"--split: unknown split {split!r}; choose test or val")


# --- HTML pieces --------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _figure(fig, path: Path, alt: str, dpi: int, title: str | None = None) -> str:
    """Save ``fig`` as ``path`` and return an <img> embedding the same bytes.

    ``title`` (the run's model) goes on the figure itself: a PNG opened on its own, away from
    the page, still says which model it shows.
    """
    from fmnist.plots import save_figure

    if title:
        own = fig.get_suptitle()  # conv filters and feature maps title themselves: keep it, after the name
        fig.suptitle(f"{title}: {own}" if own else title, fontweight="bold")
    save_figure(fig, path, dpi=dpi)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _png_img(image: np.ndarray, alt: str, scale: int = 4) -> str:
    """A small uint8 image (H, W) as an embedded PNG, enlarged without smoothing."""
    import io

    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return f'<img class="pixel" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="{_e(alt)}">'


def _leaderboard_html(rows: Sequence[RunSummary]) -> str:
    from fmnist.reporting.leaderboard import leaderboard

    board = leaderboard([{
        "name": r.run_dir, "optimizer": r.optimizer, "lr": r.lr, "parameters": r.parameters,
        # Marked where the row's test number is not the run's own model's (the note below says why).
        "model": r.name if r.cv_fold is None else f"{r.name} (test: mean of {r.cv_fold[1]} fold models)",
        # The epoch whose weights the run holds, where early stopping restored an earlier one.
        "epochs": r.epochs if r.best_epoch is None or str(r.best_epoch) == r.epochs
        else f"{r.epochs} (weights of {r.best_epoch})",
        "train_time_s": r.train_time_s, "val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
        "test_accuracy": r.test_accuracy} for r in rows], "html")
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in map(_fold_note, rows) if note)
    return (
        '<section id="leaderboard"><h2>Leaderboard</h2>'
        "<p>Ranked by validation accuracy (on the training images each run held out). "
        "The test set (t10k) is scored apart: its column is reported for reference and is never "
        f"used to rank or choose.</p>{board}{notes}</section>")


def _replicates_html(board: dict[str, Any]) -> str:
    """A comparison over seeds ranks models by their means (``fmnist compare --seeds``): that
    table first, as the comparison ranked them; each seed's run follows in the run leaderboard."""
    from fmnist.compare import ranking
    from fmnist.reporting.leaderboard import replicate_leaderboard

    ranked = ranking(board)
    return ('<section id="over-seeds"><h2>Over seeds</h2>'
            f"<p>{_e(ranked[:1].upper() + ranked[1:])}. The test column is reported apart: nothing was chosen by "
            f"it.</p>{replicate_leaderboard(board['rows'], 'html')}</section>")


def _learning_curves_html(runs, summaries, slugs: Sequence[str], out: Path, dpi: int) -> str:
    from fmnist.plots import learning_curves

    # Each curve is named by its model, and by its run folder too where two runs share a model
    # (two trainings of one preset), as the per-run sections are.
    shared = {s.name for s in summaries if sum(t.name == s.name for t in summaries) > 1}
    labels = [f"{s.name} — {slug}" if s.name in shared else s.name for s, slug in zip(summaries, slugs)]
    histories = {label: run.history for label, run in zip(labels, runs) if run.history}
    skipped = [s.name for s, run in zip(summaries, runs) if not run.history]
    parts = ['<section id="learning-curves"><h2>Learning curves</h2>']
    if histories:
        parts.append("<p>Loss and accuracy per epoch: training solid, validation dashed (the book's 7-3 plots). "
                     "The validation curve is the training loop's monitor: at the training precision, one view "
                     "of each image; the scores above are the model's own (float32, with its test-time "
                     "augmentation), so a bfloat16 or flip model's last point may differ from them a little.</p>")
        parts.append(_figure(learning_curves(histories), out / "learning_curves.png", "learning curves", dpi))
    if skipped:
        parts.append(f"<p class=\"note\">No per-epoch history for {_e(', '.join(skipped))} "
                     "(scikit-learn models are fitted in one call).</p>")
    parts.append("</section>")
    return "".join(parts)


def _table(metrics: dict[str, list]) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"

    def score(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"  # None: undefined, a class with no images in the split

    rows = "".join(
        f'<tr><td>{_e(c)}</td><td class="num">{score(p)}</td><td class="num">{score(r)}</td>'
        f'<td class="num">{score(f)}</td><td class="num">{s}</td></tr>'
        for c, p, r, f, s in zip(metrics["class"], metrics["precision"], metrics["recall"], metrics["f1"],
                                 metrics["support"]))
    return f"<table>{head}{rows}</table>"


def _run_html(run, slug: str, summary: RunSummary, out: Path, data, images: tuple[np.ndarray, np.ndarray],
              class_names: list[str], *, split: str, embedding: str, max_points: int, n_mistakes: int,
              dpi: int) -> str:
    """A run's section, its figures drawn on ``images`` (images, labels) of ``split``."""
    from fmnist.evaluation.features import (
        feature_source,
        first_conv,
        first_conv_maps,
        penultimate_features,
    )
    from fmnist.evaluation.metrics import predictions
    from fmnist.plots import (
        confusion_matrix,
        conv_filters,
        embedding_2d,
        feature_maps,
        misclassified_gallery,
        per_class_metrics,
        per_class_metrics_figure,
    )
    from fmnist.runs import trained_on_other_data

    folder = out / slug
    x, y = images
    proba, pred = _in_label_space(run.model, *predictions(run.model, x), len(class_names))
    where = "test set (t10k)" if split == "test" else "validation split"
    if trained_on_other_data(run, data):  # a fair question on the test split, but it must say so
        record = run.info.get("data", {})
        where = (f"test set (t10k) of {data.dataset} data from {data.source}, not the data the run trained on "
                 f"({record.get('dataset')} from {record.get('source')})")
    title = summary.name if summary.name == slug else f"{summary.name} — {slug}"
    fold = ""
    if summary.cv_fold is not None:
        k, folds = summary.cv_fold
        fold = (f" This is fold {k + 1}'s model of the {folds} its cross-validation fitted, alone; the leaderboard's "
                f"test accuracy, {_pct(summary.test_accuracy)}, is the mean of all {folds}.")
    parts = [f'<article class="run"><h2>{_e(title)}</h2>',
             f"<p>Figures below on the {_e(where)}: {len(y):,} images, accuracy {_pct(float((pred == y).mean()))}."
             f"{_e(fold)}</p>"]

    parts.append(f'<section id="confusion-{_e(slug)}" class="confusion"><h3>Confusion matrix</h3>'
                 "<p>True class down, predicted class across; counts, then each row divided by its class size "
                 "(the diagonal is each class's recall).</p>")
    parts.append(_figure(confusion_matrix(y, pred, class_names), folder / "confusion_counts.png",
                         "confusion matrix, counts", dpi, title))
    parts.append(_figure(confusion_matrix(y, pred, class_names, normalize="true"), folder / "confusion_normalised.png",
                         "confusion matrix, row-normalised", dpi, title))
    parts.append("</section>")

    metrics = per_class_metrics(y, pred, class_names)
    parts.append(f'<section id="per-class-{_e(slug)}" class="per-class"><h3>Per-class precision, recall and F1</h3>')
    parts.append(_table(metrics))
    parts.append(_figure(per_class_metrics_figure(metrics), folder / "per_class.png", "per-class metrics", dpi, title))
    parts.append("</section>")

    n_wrong = int((pred != y).sum())
    parts.append(f'<section id="misclassified-{_e(slug)}" class="misclassified"><h3>Misclassified images</h3>')
    if n_wrong:
        parts.append(f"<p>{plural(n_wrong, 'mistake')}; the {min(n_mistakes, n_wrong)} most confident first, each "
                     "titled true → predicted (probability given to the prediction).</p>")
        parts.append(_figure(misclassified_gallery(x, y, pred, proba, class_names, n=n_mistakes),
                             folder / "misclassified.png", "most confident mistakes", dpi, title))
    else:  # an empty gallery would be a figure of nothing
        parts.append(f'<p class="note">No mistakes: every one of the {len(y):,} images is predicted right.</p>')
    parts.append("</section>")

    parts.append(f'<section id="conv-{_e(slug)}" class="conv"><h3>Convolution filters and feature maps</h3>')
    conv = first_conv(run.model)
    if conv is None:
        kind = "a linear scikit-learn model" if summary.family == "sklearn" else "a network without convolution"
        parts.append(f'<p class="note">Not applicable: {_e(summary.name)} is {kind}.</p>')
    else:
        image, label = x[0], int(y[0])
        name = class_names[label] if label < len(class_names) else str(label)
        parts.append("<p>The first convolution layer's kernels (blue negative, red positive), and its "
                     f"activated outputs for the first image of the split, {_e(with_article(name))}:</p>")
        parts.append(_png_img(image, f"input image: {name}"))
        parts.append(_figure(conv_filters(conv.weight), folder / "conv_filters.png", "first-layer filters", dpi, title))
        maps = first_conv_maps(run.model, image)
        parts.append(_figure(feature_maps(maps, title=f"first-layer feature maps of {with_article(name)}"),
                             folder / "feature_maps.png", "feature maps", dpi, title))
    parts.append("</section>")

    keep = np.arange(len(x))
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(x), max_points, replace=False))
    features = penultimate_features(run.model, x[keep])
    parts.append(f'<section id="embedding-{_e(slug)}" class="embedding"><h3>2-D embedding ({_e(embedding)})</h3>'
                 f"<p>{len(keep):,} images of the {_e(where)}, described by {_e(feature_source(run.model))}, "
                 "projected to two dimensions and coloured by true class.</p>")
    parts.append(_figure(embedding_2d(features, y[keep], method=embedding, class_names=class_names,
                                      max_points=len(keep)), folder / "embedding.png", "2-D embedding", dpi, title))
    parts.append("</section></article>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.test{color:#666;background:#fafafa;font-style:italic}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
img.pixel{image-rendering:pixelated;display:inline-block;border:1px solid #ccc}
.note{color:#666;font-style:italic}nav a{margin-right:1em}
.meta{color:#666;font-size:.9em}
"""


def _page(body: list[str], summaries: Sequence[RunSummary], split: str) -> str:
    names = ", ".join(s.name for s in summaries)
    toc = ['<a href="#leaderboard">Leaderboard</a>', '<a href="#learning-curves">Learning curves</a>']
    toc += [f'<a href="#confusion-{_e(slug)}">{_e(s.name)}</a>'
            for s, slug in zip(summaries, _unique_slugs([Path(s.run_dir).resolve().name for s in summaries]))]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>fmnist report: {_e(names)}</title><style>{_CSS}</style></head><body>"
        f"<h1>fmnist report</h1><p class=\"meta\">{len(summaries)} run{'s' if len(summaries) != 1 else ''}: "
        f"{_e(names)}. Written {_e(time.strftime('%Y-%m-%d %H:%M'))}; diagnostic figures on the "
        f"{'test set' if split == 'test' else 'validation split'}.</p>"
        f"<nav>{''.join(toc)}</nav>{''.join(body)}</body></html>\n")


# --- a sweep ------------------------------------------------------------------------------------

def build_sweep_report(sweep_dir: str | Path, out_dir: str | Path, data, *, embedding: str = "pca",
                       split: str = "test", max_points: int = 2000, n_mistakes: int = 25, dpi: int = 100,
                       overwrite: bool = False) -> Path:
    """``fmnist report SWEEP_DIR``: the sweep's leaderboard, its metric against each searched
    option, and the best trial's learning curves and figures (as for one run). Returns the HTML path.
    """
    import json

    from fmnist.errors import RunError
    from fmnist.plots import learning_curves, metric_vs_params
    from fmnist.runs import load_run, split_data
    from fmnist.tuning.sweep import LEADERBOARD_FILE, TRIALS_DIR, read_plan

    sweep_dir, out = Path(sweep_dir), Path(out_dir)
    plan, _ = read_plan(sweep_dir)
    board_path = sweep_dir / LEADERBOARD_FILE
    if not board_path.exists():
        raise RunError(f"{sweep_dir}: the sweep has not finished (no {LEADERBOARD_FILE}); "
                       f"finish it with 'fmnist sweep --resume {shell(sweep_dir)}'")
    try:
        board = json.loads(board_path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{board_path}: unreadable ({exc})") from None
    metric, best, trials = board["metric"], board["best"], board["trials"]
    _check_options(embedding, split)
    if best:
        # Found beside the leaderboard by name: the path it records is where the sweep ran, and
        # the folder may have moved or been copied since.
        run = load_run(sweep_dir / TRIALS_DIR / Path(best["run_dir"]).name)
        images = split_data(run, data, split)[:2]  # before any drawing, as for runs
    # Claimed, then checked: a second report given the same folder is refused, not mixed in.
    with claim(out):
        check_other_work(out, REPORT_FILE)
        check_free([out / REPORT_FILE, out / "learning_curves.png", out / "metric_vs_params.png",
                    *([out / best["trial"]] if best else [])], overwrite=overwrite, what=_earlier_report(out))
        if overwrite:
            _forget_report(out)
            (out / "metric_vs_params.png").unlink(missing_ok=True)
        names = [spec.name for spec in plan.specs]
        body = [_sweep_leaderboard_html(board, names)]

        parts = ['<section id="parameters"><h2>Metric against each searched option</h2>']
        if names and best:
            log = [spec.name for spec in plan.specs if spec.kind == "loguniform"]
            if board.get("points"):
                parts.append(f"<p>Each point's mean {_e(metric)} on the validation split ± its standard deviation "
                             "over the seeds, each seed's run a faint dot; the best in red, failed trials left "
                             "out.</p>")
            else:
                parts.append(f"<p>Each trial's {_e(metric)} on the validation split; the best in red, trials stopped "
                             "early hollow, failed trials left out.</p>")
            parts.append(_figure(metric_vs_params(trials, metric, names, log=log, points=board.get("points")),
                                 out / "metric_vs_params.png",
                                 f"{metric} against each searched option", dpi))
        else:
            parts.append('<p class="note">Nothing to plot: no option was searched, or every trial failed.</p>')
        parts.append("</section>")
        body.append("".join(parts))

        if best:
            summary = _summarise(run)
            summary.name = best["trial"]
            body.append('<section id="learning-curves"><h2>Learning curves of the best trial</h2>'
                        f"<p>{_e(best['trial'])}: training solid, validation dashed.</p>"
                        + _figure(learning_curves({best["trial"]: run.history}), out / "learning_curves.png",
                                  "learning curves of the best trial", dpi) + "</section>")
            body.append(_run_html(run, best["trial"], summary, out, data, images, list(data.class_names), split=split,
                                  embedding=embedding, max_points=max_points, n_mistakes=n_mistakes, dpi=dpi))
        page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>fmnist sweep report: {_e(plan.model)}</title><style>{_CSS}</style></head><body>"
                f"<h1>fmnist sweep: {_e(plan.model)}</h1><p class=\"meta\">{len(trials)} trials; search "
                f"{_e(', '.join(plan.params) or 'none')}; scheduler {_e(plan.scheduler)}; ranked by {_e(metric)}. "
                f"Written {_e(time.strftime('%Y-%m-%d %H:%M'))}.</p>{''.join(body)}</body></html>\n")
        path = out / REPORT_FILE
        atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def _sweep_leaderboard_html(board: dict[str, Any], names: Sequence[str]) -> str:
    from fmnist.reporting.leaderboard import TEST_COLUMN, spread
    from fmnist.tuning.sweep import format_params, option_value, point_table

    seeds = board.get("seeds")

    def values(params):
        return "".join(f"<td>{_e(option_value(params, n))}</td>" for n in names)

    points = ""
    if seeds:
        metric = board["metric"]
        top, cells = point_table(board, names)
        head = "".join(f"<th>{_e(h)}</th>" for h in [*top, "error"])
        # Numbers right-aligned, the ranking's metric in bold, then the point's error if it failed.
        num = {top.index(h) for h in ("time (s)", f"{metric} (mean ± sd)", "gap to #1 (± se)")}
        bold = top.index(f"{metric} (mean ± sd)")
        rows = []
        for row, p in zip(cells, board["points"]):
            tds = "".join((f'<td class="num">' if i in num else "<td>") + (f"<b>{_e(c)}</b>" if i == bold else _e(c))
                          + "</td>" for i, c in enumerate(row))
            rows.append(f"<tr>{tds}<td>{_e(p['error'] or '')}</td></tr>")
        points = (f"<p>Every point trained once per seed ({_e(', '.join(map(str, seeds)))}) and ranked by its mean "
                  f"{_e(metric)}; the gap to #1 is paired by seed, and beyond noise where a paired t-test over the "
                  f"seeds (two-sided, 5%) rejects a zero gap.</p><table><tr>{head}</tr>{''.join(rows)}</table>"
                  "<p>Its trials, one per point and seed:</p>")
    head = "".join(f"<th>{_e(h)}</th>" for h in ["point" if seeds else "#", "trial", *names,
                                                     *(["seed"] if seeds else []), "status", "epochs",
                                                     "training time", "validation accuracy", "validation loss",
                                                     "error"])
    rows = []
    rank = 0
    for t in board["trials"]:
        rank += t["status"] != "failed"
        place = t["point"] if seeds else rank if t["status"] != "failed" else "–"
        time_s = "–" if t["time_s"] is None else f"{t['time_s']:.1f} s"
        seed = f"<td>{t['seed']}</td>" if seeds else ""
        rows.append(f"<tr><td>{place}</td><td>{_e(t['trial'])}</td>{values(t['params'])}{seed}"
                    f"<td>{_e(t['status'])}</td><td>{'–' if t['epochs'] is None else t['epochs']}</td>"
                    f'<td class="num">{_e(time_s)}</td><td class="num"><b>{_pct(t["val_accuracy"])}</b></td>'
                    f'<td class="num">{"–" if t["val_loss"] is None else format(t["val_loss"], ".4f")}</td>'
                    f"<td>{_e(t['error'] or '')}</td></tr>")
    best = board["best"]
    c = board["cluster"]
    if best and seeds:
        folders = ", ".join(f"<code>{_e(r['run_dir'])}</code>" for r in best["runs"])
        note = (f"<p>Best: <b>point {best['point']}</b> ({_e(format_params(best['params']))}), run folders "
                f"{folders}; the figures below are its first seed's. <span class=\"test\">{_e(TEST_COLUMN)}: "
                f"{spread(best['test_accuracy'], best['test_accuracy_sd'])}</span> over its seeds (the only "
                "point scored on the test set).</p>")
    elif best:
        note = (f"<p>Best: <b>{_e(best['trial'])}</b> ({_e(format_params(best['params']))}), run folder "
                f"<code>{_e(best['run_dir'])}</code>. <span class=\"test\">{_e(TEST_COLUMN)}: "
                f"{_pct(best['test_accuracy'])}</span> (the only trial scored on the test set).</p>")
    else:
        note = "<p>Every trial failed.</p>"
    return ('<section id="leaderboard"><h2>Leaderboard</h2>'
            f"<p>Ranked by {_e(board['metric'])} on the validation split, the same images for every trial"
            f"{' (with seeds: by the mean of each point)' if seeds else ''}. "
            f"Ray: {c['nodes']} node(s), {c['cpus']} CPUs.</p>"
            f"{points}<table><tr>{head}</tr>{''.join(rows)}</table>{note}</section>")
