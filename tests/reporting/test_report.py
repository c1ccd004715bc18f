"""The report, built from real (tiny) runs: a conv network and the scikit-learn baseline."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.cli.main import main
from fmnist.data import load_dataset
from fmnist.data.idx import write_idx
from fmnist.models import get_preset
from fmnist.reporting.report import REPORT_FILE, SECTIONS, build_report
from fmnist.runs import resolve_config, train_run
from tests.conftest import learnable_images

CONV = "conv:4:3,maxpool:2,flatten,dense:16:relu,dense:10"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The conftest's learnable 200 + 50 images, module-scoped so the runs train once."""
    folder = tmp_path_factory.mktemp("tiny-data")
    mp = pytest.MonkeyPatch()
    mp.setenv("FMNIST_CACHE", str(tmp_path_factory.mktemp("cache")))
    y_train, y_test = np.arange(200) % 10, np.arange(50) % 10
    write_idx(folder / "train-images-idx3-ubyte.gz", learnable_images(y_train, 0))
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", learnable_images(y_test, 1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test.astype(np.uint8))
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    data = load_dataset(tiny, dataset="custom")
    out = tmp_path_factory.mktemp("runs")
    train_run(CONV, data, config=resolve_config(get_preset(CONV), epochs=3, batch_size=16), out_dir=out / "cnn")
    train_run("sgd-logreg", data, out_dir=out / "sgd")
    return data, [out / "cnn", out / "sgd"]


@pytest.fixture(scope="module")
def titles():
    """Each saved PNG's figure title, by file name relative to the report folder."""
    return {}


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory, titles):
    import fmnist.plots

    data, dirs = runs
    out = tmp_path_factory.mktemp("report")
    save = fmnist.plots.save_figure

    def spy(fig, path, **kw):
        titles[str(path.relative_to(out))] = fig.get_suptitle()
        return save(fig, path, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(fmnist.plots, "save_figure", spy)
    try:
        return build_report(dirs, out, data, dpi=50, n_mistakes=5)
    finally:
        mp.undo()


def test_every_standalone_png_names_its_model(report, titles):
    per_run = {name: title for name, title in titles.items() if "/" in name}
    assert {name.split("/")[0] for name in per_run} == {"cnn", "sgd"}
    for name, title in per_run.items():
        model = CONV if name.startswith("cnn/") else "sgd-logreg"
        assert title.startswith(model), (name, title)
    assert "filters" in per_run["cnn/conv_filters.png"]  # the figure's own title is kept after the name


def test_report_html_has_every_section_for_every_run(runs, report):
    import html

    page = report.read_text(encoding="utf-8")
    assert report.name == REPORT_FILE
    assert 'id="leaderboard"' in page and 'id="learning-curves"' in page
    for section in SECTIONS[2:]:
        for slug in ("cnn", "sgd"):
            assert f'id="{section}-{slug}"' in page, (section, slug)
    assert "test accuracy (reported apart)" in page and "never used to rank or choose" in page
    data, _ = runs
    for name in data.class_names:  # every class has its row in the per-class tables
        assert page.count(f'<tr><td>{html.escape(name)}</td><td class="num">') == 2


def test_report_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    # Every image is embedded; every link stays inside the page.
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    without_data = re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", page)
    assert "http" not in without_data
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    # 1 learning-curves + 5 per run (4 where a run made no mistakes: no gallery) + conv (2 figures +
    # input image) for the conv net.
    perfect = page.count("No mistakes: every one of the")
    assert len(srcs) == 1 + 5 * 2 - perfect + 3


def test_report_writes_valid_pngs_beside_the_html(report):
    out = report.parent
    expected = {"learning_curves.png"} | {f"{run}/{name}.png" for run in ("cnn", "sgd") for name in
                                          ("confusion_counts", "confusion_normalised", "per_class", "embedding")}
    expected |= {"cnn/conv_filters.png", "cnn/feature_maps.png"}
    # The gallery of mistakes, for each run that made some (a run without says so instead).
    page = report.read_text(encoding="utf-8")
    expected |= {f"{run}/misclassified.png" for run in ("cnn", "sgd")
                 if "No mistakes" not in page.split(f'id="misclassified-{run}"')[1].split("</section>")[0]}
    assert "cnn/misclassified.png" in expected  # the conv net errs on these images: a gallery is drawn
    found = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert found == expected
    for rel in expected:
        path = out / rel
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as im:
            im.verify()
    # learning_curves is an 11 x 4 inch figure: 550 x 200 pixels at dpi 50.
    with Image.open(out / "learning_curves.png") as im:
        assert im.size == (550, 200)
    with Image.open(out / "cnn" / "embedding.png") as im:
        assert im.size == (400, 325)


def test_sgd_run_skips_conv_and_embeds_pixels(report):
    page = report.read_text(encoding="utf-8")
    sgd = page[page.index('id="conv-sgd"'):]
    assert "Not applicable" in sgd[:400]
    assert "input pixels" in page[page.index('id="embedding-sgd"'):][:600]
    assert "No per-epoch history for sgd-logreg" in page


def test_leaderboard_ranks_by_validation_accuracy(runs, report):
    import json

    page = report.read_text(encoding="utf-8")
    board = page[page.index('id="leaderboard"'):page.index('id="learning-curves"')]
    data, dirs = runs
    val = {d.name: json.loads((d / "metrics.json").read_text())["val"]["accuracy"] for d in dirs}
    first, second = sorted(val, key=lambda k: -val[k])
    assert board.index(str(dirs[0].parent / first)) < board.index(str(dirs[0].parent / second))


def test_text_is_escaped(runs, tmp_path):
    """A run folder named like markup appears as text, never as markup."""
    import shutil

    data, dirs = runs
    evil = tmp_path / "<b>run&"
    shutil.copytree(dirs[1], evil)
    page = build_report([evil], tmp_path / "out", data, dpi=30).read_text(encoding="utf-8")
    assert "<b>run&" not in page and "&lt;b&gt;run&amp;" in page


def test_two_runs_of_one_model_have_their_own_learning_curves(runs, tmp_path, monkeypatch):
    """Curves of two trainings of one model are told apart by their run folders."""
    import shutil

    import fmnist.plots

    data, dirs = runs
    again = tmp_path / "again"
    shutil.copytree(dirs[0], again)
    drawn = []
    draw = fmnist.plots.learning_curves
    monkeypatch.setattr(fmnist.plots, "learning_curves", lambda histories, **kw: drawn.append(list(histories))
                        or draw(histories, **kw))
    build_report([dirs[0], again], tmp_path / "out", data, dpi=30, n_mistakes=2)
    assert drawn == [[f"{CONV} — cnn", f"{CONV} — again"]]


def test_report_cli(runs, tiny, tmp_path, capsys):
    _, dirs = runs
    out = tmp_path / "cli-report"
    code = main(["report", str(dirs[1]), "--out", str(out), "--data-dir", str(tiny), "--dataset", "custom"])
    assert code == 0
    assert (out / REPORT_FILE).exists()
    assert str(out / REPORT_FILE) in capsys.readouterr().out


def test_report_cli_errors_are_one_line(tiny, tmp_path, capsys):
    code = main(["report", str(tmp_path / "missing"), "--data-dir", str(tiny), "--dataset", "custom"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "missing" in err


def test_a_comparison_folder_among_run_folders_is_named_as_such(runs, tiny, tmp_path, capsys):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text("{}")
    code = main(["report", str(runs[1][0]), str(tmp_path / "cmp"), "--out", str(tmp_path / "r"),
                 "--data-dir", str(tiny), "--dataset", "custom"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "a comparison's folder, which is reported alone" in err, err
    assert not (tmp_path / "r").exists()


def test_figures_on_other_data_than_the_run_trained_on_say_so(runs, tmp_path):
    import dataclasses

    data, dirs = runs
    other = dataclasses.replace(data, x_train=255 - data.x_train, x_test=255 - data.x_test, source="elsewhere")
    page = build_report([dirs[1]], tmp_path / "out", other, dpi=30, n_mistakes=2).read_text(encoding="utf-8")
    assert "not the data the run trained on" in page and "elsewhere" in page
    page = build_report([dirs[1]], tmp_path / "own", data, dpi=30, n_mistakes=2).read_text(encoding="utf-8")
    assert "not the data the run trained on" not in page


def test_an_interrupted_report_says_what_it_left_and_how_to_draw_it_again(runs, tiny, tmp_path, capsys, monkeypatch):
    import fmnist.plots

    _, dirs = runs
    out = tmp_path / "r"
    argv = ["report", str(dirs[1]), "--out", str(out), "--data-dir", str(tiny), "--dataset", "custom"]
    draw = fmnist.plots.per_class_metrics_figure
    monkeypatch.setattr(fmnist.plots, "per_class_metrics_figure",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(argv) == 130  # Ctrl-C after the confusion matrices were written
    err = capsys.readouterr().err
    assert f"the report in {out} is unfinished" in err
    assert f"fmnist report {dirs[1]} --out {out} --overwrite --dataset custom --data-dir {tiny}" in err
    assert not (out / REPORT_FILE).exists()
    monkeypatch.setattr(fmnist.plots, "per_class_metrics_figure", draw)
    assert main(argv) == 1
    assert "an unfinished report's figures (it was interrupted before report.html)" in capsys.readouterr().err
    (out / ".fmnist-busy").write_text("12345\n")  # as a killed report leaves its lock file: it holds nothing
    assert main([*argv, "--overwrite"]) == 0 and (out / REPORT_FILE).exists()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_second_report_into_the_folder_of_one_being_drawn_is_refused(runs, tiny, tmp_path, capsys, monkeypatch,
                                                                       overwrite):
    import os

    import fmnist.plots

    _, dirs = runs
    out = tmp_path / "r"
    data = ["--data-dir", str(tiny), "--dataset", "custom"]
    draw, second = fmnist.plots.per_class_metrics_figure, []

    def and_a_second_report(*args, **kwargs):  # started while the first is drawing, its figures half done
        if not second:
            second.append(main(["report", str(dirs[0]), "--out", str(out), *overwrite, *data]))
            second.append(capsys.readouterr().err)
        return draw(*args, **kwargs)

    monkeypatch.setattr(fmnist.plots, "per_class_metrics_figure", and_a_second_report)
    assert main(["report", str(dirs[1]), "--out", str(out), *data]) == 0
    code, err = second
    assert code == 1 and err.count("\n") == 1, err
    assert f"{out}: another fmnist command is writing there now (process {os.getpid()})" in err
    # The first report's files alone: none of the second's run.
    assert sorted(p.name for p in out.iterdir()) == sorted([REPORT_FILE, dirs[1].name])


def _labelled(folder, y_train, y_test):
    write_idx(folder / "train-images-idx3-ubyte.gz", learnable_images(y_train, 0))
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", learnable_images(y_test, 1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test.astype(np.uint8))
    return load_dataset(folder, dataset="custom")


def _figures_line(page):
    found = re.search(r"Figures below on the [^:]*: ([\d,]+) images, accuracy ([\d.]+)%", page)
    return int(found[1].replace(",", "")), float(found[2]) / 100


def test_a_scikit_learn_run_on_labels_3_and_7_is_drawn_with_its_own_scores(tmp_path, monkeypatch):
    from fmnist.runs import evaluate_run

    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d").mkdir()
    data = _labelled(tmp_path / "d", np.where(np.arange(200) % 2, 7, 3), np.where(np.arange(50) % 2, 7, 3))
    train_run("sgd-logreg", data, out_dir=tmp_path / "sgd")
    page = build_report([tmp_path / "sgd"], tmp_path / "r", data, dpi=30, n_mistakes=2).read_text(encoding="utf-8")
    scored = evaluate_run(tmp_path / "sgd", data, split="test")
    assert scored["accuracy"] > 0.9
    assert _figures_line(page) == (scored["n"], pytest.approx(scored["accuracy"], abs=5e-5))
    # The classes with no images (all but 3 and 7) score nothing: "–", not 0.
    absent = len(data.class_names) - 2
    assert absent > 0 and page.count('<td class="num">–</td>' * 3 + '<td class="num">0</td></tr>') == absent


def test_the_validation_figures_leave_out_what_the_run_left_out(runs, tmp_path):
    from fmnist.auditing.exclude import Exclusion
    from fmnist.data import split_indices
    from fmnist.runs import evaluate_run

    data, _ = runs
    _, val = split_indices(len(data.y_train))
    run = tmp_path / "run"
    train_run("sgd-logreg", data, out_dir=run, exclude=Exclusion("a.json", ("outliers",), "train", np.sort(val[:9])))
    page = build_report([run], tmp_path / "r", data, split="val", dpi=30, n_mistakes=2).read_text(encoding="utf-8")
    scored = evaluate_run(run, data, split="val")
    assert scored["n"] == len(val) - 9
    assert _figures_line(page) == (scored["n"], pytest.approx(scored["accuracy"], abs=5e-5))


def test_a_cross_validated_runs_two_test_accuracies_say_which_model_each_is(runs, tmp_path, monkeypatch):
    import html
    import json

    from fmnist.runs import evaluate_run
    from fmnist.study import EXPERIMENTS, run_experiment

    # Images without a pattern: each fold model guesses its own way, so their test accuracies differ.
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    rng, folder = np.random.default_rng(0), tmp_path / "noise"
    for name, n in (("train", 200), ("t10k", 50)):
        write_idx(folder / f"{name}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{name}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    data = load_dataset(folder, dataset="custom")
    linear = next(exp for exp in EXPERIMENTS if exp.metric.startswith("5-fold"))
    run = Path(run_experiment(linear, data, tmp_path / "study", [])["run_dir"])
    page = html.unescape(build_report([run], tmp_path / "r", data, dpi=30, n_mistakes=2).read_text(encoding="utf-8"))
    mean = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]  # of the 5 fold models
    own = evaluate_run(run, data, split="test")["accuracy"]  # of the one fold model the folder keeps
    assert round(mean, 4) != round(own, 4)  # else this test could not tell them apart
    board = page.split('id="leaderboard"')[1].split("</section>")[0]
    assert "sgd-logreg (test: mean of 5 fold models)" in board and f"{mean:.4f}" in board
    assert (f"sgd-logreg's test accuracy, {100 * mean:.2f}%, is the mean of the 5 fold models of its 5-fold "
            "cross-validation; its run folder keeps one of them, fold 1's, and its figures are that model's "
            "own.") in board
    assert _figures_line(page)[1] == pytest.approx(own, abs=5e-5)
    assert (f"This is fold 1's model of the 5 its cross-validation fitted, alone; the leaderboard's test accuracy, "
            f"{100 * mean:.2f}%, is the mean of all 5.") in page
    # A run of one model says nothing of folds.
    other = build_report([runs[1][1]], tmp_path / "r2", data, dpi=30, n_mistakes=2).read_text(encoding="utf-8")
    assert "fold" not in other


@pytest.mark.parametrize("case", ["no validation split", "umap missing"])
def test_a_report_that_cannot_be_drawn_is_refused_before_any_figure(runs, tiny, tmp_path, capsys, monkeypatch, case):
    import sys

    data, dirs = runs
    run, options = dirs[1], []
    if case == "no validation split":
        run = tmp_path / "all"
        train_run("sgd-logreg", data, out_dir=run, holdout=False)
        options = ["--split", "val"]
    else:
        monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` raises ImportError
        options = ["--embedding", "umap"]
    out = tmp_path / "r"
    code = main(["report", str(run), "--out", str(out), *options, "--data-dir", str(tiny), "--dataset", "custom"])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.count("\n") == 1, err
    assert ("no validation split" if case == "no validation split" else "umap-learn") in err
    assert not out.exists()


def test_a_report_drawn_again_with_overwrite_keeps_no_figures_of_runs_it_no_longer_shows(runs, tmp_path):
    data, dirs = runs
    out = tmp_path / "r"
    build_report(dirs, out, data, dpi=30, n_mistakes=2)
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("the user's own")
    build_report([dirs[1]], out, data, dpi=30, n_mistakes=2, overwrite=True)
    # The scikit-learn run alone: no learning curves, and no folder of the network's figures.
    assert sorted(p.name for p in out.iterdir()) == sorted([REPORT_FILE, dirs[1].name, "mine"])
    assert (out / "mine" / "notes.txt").read_text() == "the user's own"


def test_a_run_without_mistakes_says_so_instead_of_an_empty_gallery(runs, tmp_path):
    import dataclasses

    from fmnist import load_model
    from fmnist.evaluation import predict_proba

    data, dirs = runs
    right = predict_proba(load_model(dirs[1]), data.x_test).argmax(1).astype(np.uint8)  # its own answers as labels
    page = build_report([dirs[1]], tmp_path / "r", dataclasses.replace(data, y_test=right), dpi=30,
                        n_mistakes=2).read_text(encoding="utf-8")
    section = page.split('class="misclassified"')[1].split("</section>")[0]
    assert f"No mistakes: every one of the {len(right):,} images is predicted right." in section
    assert "most confident" not in section and not (tmp_path / "r" / "sgd" / "misclassified.png").exists()
