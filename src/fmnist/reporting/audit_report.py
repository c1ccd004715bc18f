"""``audit.html``: one self-contained page of what ``fmnist audit`` found.

Like ``report.html`` (:mod:`fmnist.reporting.report`): every image embedded as a data: URI,
CSS inline, no script, nothing fetched. Sections: the summary, counts per class, the distance
histograms with their thresholds, then a gallery per finding: both images of each duplicate
or near-duplicate pair side by side, each likely label error with its given and suggested
label, and the outliers. The histograms are also written as PNGs beside the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._files import atomic_write
from fmnist.reporting.report import _CSS, _e, _figure, _png_img

__all__ = ["write_audit_report", "findings_per_class", "AUDIT_HTML", "AUDIT_SECTIONS"]

AUDIT_HTML = "audit.html"
AUDIT_SECTIONS = ("summary", "per-class", "histograms", "exact-duplicates", "near-duplicates", "label-issues",
                  "outliers")
# Pairs or images shown per gallery; the rest are counted, and all are in audit.json.
GALLERY_LIMIT = 48


def write_audit_report(result: dict[str, Any], data, out_dir: str | Path, distances: Mapping[str, np.ndarray],
                       dpi: int = 100) -> Path:
    """Write ``out_dir/audit.html`` (and its histogram PNGs) for an :func:`fmnist.audit` result.

    ``data``: the audited :class:`fmnist.data.Dataset`; ``distances``: nearest-neighbour
    distances per image, keys ``pixel_test``, ``pixel_train``, ``embedding_test``,
    ``embedding_train``, ``outlier_test``, ``outlier_train`` (float arrays).
    """
    out = Path(out_dir)
    images = {"train": data.x_train, "test": data.x_test}
    labels = {"train": np.asarray(data.y_train), "test": np.asarray(data.y_test)}
    names = result["data"]["class_names"]
    body = [_summary_html(result), _per_class_html(result, labels, names, out, dpi),
            _histograms_html(result, distances, out, dpi),
            _pairs_html("exact-duplicates", "Exact duplicates", result["exact_duplicates"], images, labels, names,
                        "Identical pixels (same content hash). Two different labels on one image are themselves "
                        "a label error."),
            _pairs_html("near-duplicates", "Near duplicates and train/test leaks", result["near_duplicates"], images,
                        labels, names, "Closer than the thresholds above, nearest first in each space; a test "
                        "image beside a training image is a leak: the model has seen it."),
            _issues_html(result["label_issues"], images, names, result["summary"]["label_score"]),
            _outliers_html(result["outliers"], images, names)]
    s = result["summary"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>fmnist audit: {_e(result['data']['source'])}</title><style>{_CSS}"
            ".pair{display:inline-block;margin:.3em .6em .6em 0;vertical-align:top;font-size:.8em;"
            "border:1px solid #ddd;padding:.3em}.pair img{display:inline-block;margin:0 .2em}</style></head><body>"
            f"<h1>fmnist audit</h1><p class=\"meta\">{_e(result['data']['dataset'])} from "
            f"<code>{_e(result['data']['source'])}</code>; model {_e(s['model'])}, {s['folds']} folds, seed "
            f"{s['seed']}; {s['times_s']['total']:.0f} s.</p>"
            "<nav>" + "".join(f'<a href="#{k}">{k.replace("-", " ")}</a>' for k in AUDIT_SECTIONS) + "</nav>"
            + "".join(body) + "</body></html>\n")
    path = out / AUDIT_HTML
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def _name(names, label: int) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def _summary_html(result) -> str:
    s = result["summary"]
    ex, nd, li, ol = s["exact_duplicates"], s["near_duplicates"], s["label_issues"], s["outliers"]
    rows = [
        ("exact duplicate pairs within train", ex["train"]), ("exact duplicate pairs within test", ex["test"]),
        ("exact train/test duplicate pairs (leaks)", ex["train-test"]),
        ("exact duplicate pairs with different labels", ex["with_different_labels"]),
        (f"near duplicate pairs within train ({' / '.join(nd)})", " / ".join(str(v["train"]) for v in nd.values())),
        (f"near train/test leak pairs ({' / '.join(nd)})", " / ".join(str(v["train-test"]) for v in nd.values())),
        ("likely label errors in train / test", f"{li['train']} / {li['test']}"),
        ("outliers in train / test", f"{ol['train']} / {ol['test']}"),
    ]
    acc = s["accuracy"]
    test_acc = "–" if acc["test_fold_mean"] is None else f"{acc['test_fold_mean']:.4f}"
    table = "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{_e(v)}</td></tr>" for k, v in rows)
    return ('<section id="summary"><h2>Summary</h2>'
            f"<table><tr><th>finding</th><th>count</th></tr>{table}</table>"
            f"<p>Out-of-fold accuracy of the {s['folds']} fold models on the training images: "
            f"{acc['train_out_of_fold']:.4f}; their mean prediction on the test images: {test_acc}. "
            f"Embedding: {_e(s['embedding'])} of the first fold's model.</p>"
            + "".join(f'<p class="note">{_e(note)}.</p>' for note in s["notes"])
            + f"<p>Thresholds: {_e(s['thresholds']['why'])}.</p></section>")


def findings_per_class(result, labels: Mapping[str, np.ndarray], k: int) -> dict[str, list[int]]:
    """Images of each of ``k`` classes that each finding names: finding -> int counts (k,).

    Images, not pairs: three copies of one image are three pairs but two second copies, and a
    near duplicate found in several spaces is one image. A duplicate's second image (``b``:
    the later one, or the test one of a leak) is the one counted, by its own label.
    """
    def per_class(refs) -> list[int]:
        c = np.zeros(k, np.int64)
        for split, index in set(refs):
            c[int(labels[split][index])] += 1
        return c.tolist()

    second = lambda items: [(d["b"]["split"], d["b"]["index"]) for d in items]  # noqa: E731
    return {
        "exact duplicates (second copy)": per_class(second(result["exact_duplicates"])),
        "near duplicates (second image)": per_class(second(result["near_duplicates"])),
        "label issues (given label)": per_class((d["split"], d["index"]) for d in result["label_issues"]),
        "outliers": per_class((d["split"], d["index"]) for d in result["outliers"]),
    }


def _per_class_html(result, labels, names, out: Path, dpi: int) -> str:
    from fmnist.plots.audit import finding_counts

    k = len(names)
    findings = findings_per_class(result, labels, k)
    per = result["data"]["per_class"]
    head = "<tr><th>class</th><th>train</th><th>test</th>" + "".join(f"<th>{_e(f)}</th>" for f in findings) + "</tr>"
    rows = "".join(
        f"<tr><td>{_e(_name(names, c))}</td><td class=\"num\">{per['train'][c]:,}</td>"
        f"<td class=\"num\">{per['test'][c]:,}</td>"
        + "".join(f"<td class=\"num\">{v[c]:,}</td>" for v in findings.values()) + "</tr>" for c in range(k))
    return ('<section id="per-class"><h2>Counts per class</h2>'
            "<p>Images of each class in the data, and how many of them each finding names (train and test "
            f"together).</p><table>{head}{rows}</table>"
            + _figure(finding_counts(findings, names), out / "per_class.png", "findings per class", dpi)
            + "</section>")


def _histograms_html(result, distances, out: Path, dpi: int) -> str:
    from fmnist.plots.audit import distance_histogram

    t = result["summary"]["thresholds"]
    parts = ['<section id="histograms"><h2>Distance histograms</h2>',
             "<p>Each image's distance to its nearest training image (test images) or nearest other training "
             "image. Almost all lie in one broad hump: different photos of alike garments. Copies, noisy copies, "
             "re-encodings, moved, re-lit and mirrored copies sit at the far left, below the dashed threshold, where the hump's "
             "tail of genuinely alike photos thins out; outliers lie at the far right of the last histogram.</p>"]
    specs = [("pixel", "RMS pixel distance (pixels in [0, 1])", t["pixel"], True, "histogram_pixel.png"),
             ("aligned", "1 - correlation at the best move (mirrored or not)", t["aligned"], True,
              "histogram_aligned.png"),
             ("embedding", "cosine distance in the embedding", t["embedding"], True, "histogram_embedding.png"),
             ("outlier", "mean RMS pixel distance to the nearest training images", t["outlier_pixel"], False,
              "histogram_outliers.png")]
    # The outliers' legend counts what the audit flags: any of three scores, or an image of one grey level.
    outliers = {"test → train": sum(d["split"] == "test" for d in result["outliers"]),
                "train → train": sum(d["split"] == "train" for d in result["outliers"])}
    for key, xlabel, threshold, below, file in specs:
        series = {"test → train": distances[f"{key}_test"], "train → train": distances[f"{key}_train"]}
        parts.append(_figure(distance_histogram(series, threshold, xlabel=xlabel, flagged_below=below,
                                                flagged=outliers if key == "outlier" else None),
                             out / file, f"{key} distance histogram", dpi))
    parts.append("</section>")
    return "".join(parts)


def _more(total: int) -> str:
    return (f'<p class="note">Showing the first {GALLERY_LIMIT} of {total:,}; all are in audit.json.</p>'
            if total > GALLERY_LIMIT else "")


def _pairs_html(section: str, title: str, items, images, labels, names, intro: str) -> str:
    parts = [f'<section id="{section}"><h2>{_e(title)}</h2><p>{_e(intro)}</p>']
    if not items:
        parts.append('<p class="note">None found.</p>')
    for d in items[:GALLERY_LIMIT]:
        a, b = d["a"], d["b"]
        la, lb = int(labels[a["split"]][a["index"]]), int(labels[b["split"]][b["index"]])
        caption = (f"{a['split']} #{a['index']} ({_name(names, la)}) · {b['split']} #{b['index']} ({_name(names, lb)})")
        if "distance" in d:
            caption += f" · {d['space']} {d['distance']:.4f}"
        parts.append(f'<div class="pair">{_png_img(images[a["split"]][a["index"]], caption, 3)}'
                     f'{_png_img(images[b["split"]][b["index"]], caption, 3)}<br>{_e(caption)}</div>')
    parts.append(_more(len(items)) + "</section>")
    return "".join(parts)


def _issues_html(issues, images, names, explained: str) -> str:
    parts = ['<section id="label-issues"><h2>Likely label errors</h2>',
             f"<p>Given label → the label the out-of-sample models prefer; score: {_e(explained)}.</p>"]
    for split in ("train", "test"):
        mine = [d for d in issues if d["split"] == split]
        parts.append(f"<h3>{split} ({len(mine):,})</h3>")
        for d in mine[:GALLERY_LIMIT]:
            caption = (f"{split} #{d['index']}: {_name(names, d['given'])} → {_name(names, d['suggested'])} "
                       f"({d['score']:.2g})")  # .3f would print 9e-05 as 0.000
            parts.append(f'<div class="pair">{_png_img(images[split][d["index"]], caption, 3)}<br>{_e(caption)}</div>')
        parts.append(_more(len(mine)))
    parts.append("</section>")
    return "".join(parts)


def _outliers_html(outliers, images, names) -> str:
    parts = ['<section id="outliers"><h2>Outliers</h2>',
             "<p>Images far from every training image (and so from every class), farthest first.</p>"]
    if not outliers:
        parts.append('<p class="note">None found.</p>')
    for d in outliers[:GALLERY_LIMIT]:
        caption = f"{d['split']} #{d['index']} ({_name(names, d['label'])}) · {d['distance']:.3f}"
        parts.append(f'<div class="pair">{_png_img(images[d["split"]][d["index"]], caption, 3)}<br>{_e(caption)}</div>')
    parts.append(_more(len(outliers)) + "</section>")
    return "".join(parts)
