"""The tutorial's study: wiring on tiny data, and the real run landing in the tutorial's bands."""

import json

import numpy as np
import pytest

from fmnist.errors import OutputExistsError, RunError
from fmnist.runs import evaluate_run
from fmnist.study import EXPERIMENTS, format_table, reproduce


def test_reproduce_writes_table_json_and_runs(tiny_data, tmp_path):
    started = []
    result = reproduce(tiny_data, tmp_path / "out", on_start=started.append)
    assert started == list(EXPERIMENTS)
    rows = result["rows"]
    table = format_table(result)
    markdown = (tmp_path / "out" / "results.md").read_text()
    for row, exp in zip(rows, EXPERIMENTS, strict=True):
        assert (row["model"], row["tutorial"], row["band"]) == (exp.model, exp.tutorial, exp.band)
        assert 0 <= row["ours"] <= 1 and 0 <= row["test_accuracy"] <= 1
        assert row["delta"] == pytest.approx(row["ours"] - exp.tutorial)
        assert row["within_band"] == (abs(row["ours"] - exp.tutorial) <= exp.band)
        assert (tmp_path / "out" / "runs" / exp.model / "run.json").exists()
        # Each row's own numbers are what the terminal table and results.md show.
        line = next(t for t in table.splitlines() if t.startswith(exp.name))
        assert f"{row['ours']:.4f}" in line and f"{exp.tutorial:.4f}" in line and f"{row['test_accuracy']:.4f}" in line
        md_line = next(t for t in markdown.splitlines() if t.startswith(f"| {exp.name} |"))
        assert f"| {row['ours']:.4f} |" in md_line
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["ours"] for r in saved["rows"]] == [r["ours"] for r in rows]
    assert "t10k" in markdown
    assert markdown.startswith("# fmnist reproduce: the tutorial's study on other MNIST-format data")
    assert "on Fashion-MNIST, not this data: they are no target here" in markdown and "same data" not in markdown
    # The linear run keeps the first of its 5 fold models, which saw 4/5 of every training image:
    # its run.json says so, and it has no split of them to be scored on.
    linear = tmp_path / "out" / "runs" / "sgd-logreg"
    record = json.loads((linear / "run.json").read_text())["data"]["split"]
    assert record == {"cross_validation_folds": 5, "fold": 0}
    with pytest.raises(RunError, match="fold 1 of a 5-fold cross-validation over all 200 training images"):
        evaluate_run(linear, tiny_data, split="val")
    assert evaluate_run(linear, tiny_data, split="test")["n"] == len(tiny_data.x_test)


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=5, as the tutorial
def test_the_study_on_real_data_lands_in_every_band_on_the_tutorials_split(real_data, tmp_path):
    """The four experiments as ``fmnist reproduce`` runs them (~30-60 s on two cores)."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from fmnist.evaluation import evaluate
    from fmnist.models.io import load_model

    result = reproduce(real_data, tmp_path)
    rows = {row["model"]: row for row in result["rows"]}
    for exp in EXPERIMENTS:
        ours = rows[exp.model]["ours"]
        assert abs(ours - exp.tutorial) <= exp.band, f"{exp.name}: {ours:.4f}, tutorial {exp.tutorial} ± {exp.band}"
        assert rows[exp.model]["within_band"]
    # The networks' validation set is the tutorial's: train_test_split(test_size=0.2,
    # random_state=42) of the 60,000. Each saved network scores on it exactly what its row
    # says; on any other split it would be scored partly on images it trained on.
    x_tr, x_val, y_tr, y_val = train_test_split(real_data.x_train, real_data.y_train, test_size=0.2, random_state=42)
    assert len(x_val) == 12_000
    for exp in EXPERIMENTS[1:]:
        run_dir = tmp_path / "runs" / exp.model
        scores = evaluate(load_model(run_dir), x_val, y_val)
        assert scores["n"] == 12_000
        assert scores["accuracy"] == pytest.approx(rows[exp.model]["ours"], abs=2 / 12_000)
        assert json.loads((run_dir / "run.json").read_text())["data"]["split"] == {"test_size": 0.2, "random_state": 42}
    # The linear model is cross-validated on all 60,000 as the tutorial's cross_validate(sc,
    # train_scaled, train_target) does: stratified, unshuffled 5 folds. The saved model is the
    # first fold's, exactly the SGDClassifier the tutorial's code fits on that fold's 48,000.
    fold_train = next(iter(StratifiedKFold(5).split(real_data.x_train, real_data.y_train)))[0]
    train_scaled = real_data.x_train.reshape(-1, 28 * 28) / 255.0
    reference = SGDClassifier(loss="log_loss", max_iter=5, random_state=42)
    reference.fit(train_scaled[fold_train], real_data.y_train[fold_train])
    linear = load_model(tmp_path / "runs" / "sgd-logreg")
    np.testing.assert_array_equal(linear.coef_, reference.coef_)
    np.testing.assert_array_equal(linear.intercept_, reference.intercept_)


def _earlier_study(tiny_dir, out):
    """A finished study in ``out`` (the CLI's), and its files' bytes."""
    from fmnist.cli.main import main

    assert main(["reproduce", "--out", str(out), "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 0
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_an_interrupted_overwrite_leaves_the_earlier_study_as_it_was(tiny_dir, tmp_path, capsys, monkeypatch):
    import fmnist.study as study
    from fmnist.cli.main import main

    out = tmp_path / "study"
    before = _earlier_study(tiny_dir, out)
    finished = study.run_experiment

    def second_interrupted(exp, *args, **kwargs):  # Ctrl-C in the second experiment of the new study
        if exp.model != "sgd-logreg":
            raise KeyboardInterrupt
        return finished(exp, *args, **kwargs)

    monkeypatch.setattr(study, "run_experiment", second_interrupted)
    capsys.readouterr()
    argv = ["reproduce", "--out", str(out), "--overwrite", "--dataset", "custom", "--data-dir", str(tiny_dir)]
    assert main(argv) == 130
    assert f"interrupted; {out} holds the earlier study as it was (the new one is discarded)" in capsys.readouterr().err
    assert _files(out) == before


def test_a_killed_overwrite_gives_the_earlier_study_back_to_the_next_command(tiny_dir, tmp_path):
    from fmnist.data import load_dataset
    from fmnist.study import EXPERIMENTS, reproduce
    from tests.test_runs import _dead_pid

    out = tmp_path / "study"
    before = _earlier_study(tiny_dir, out)
    aside = out / f".replaced.{_dead_pid()}"  # as a kill -9 of reproduce --overwrite leaves it, one run in
    aside.mkdir()
    for name in ("results.json", "results.md"):
        (out / name).rename(aside / name)
    for run in (out / "runs").iterdir():
        (aside / "runs" / run.name).mkdir(parents=True)
        for path in run.iterdir():
            path.rename(aside / "runs" / run.name / path.name)
    (out / "runs" / "sgd-logreg" / "run.json").write_text("{}")  # the replacement's first run
    with pytest.raises(OutputExistsError, match="already holds an earlier study"):
        reproduce(load_dataset(tiny_dir, dataset="custom"), out, experiments=EXPERIMENTS[:1])
    assert _files(out) == before


def test_ctrl_c_says_which_runs_are_kept_and_how_to_start_again(tiny_dir, tmp_path, capsys, monkeypatch):
    import fmnist.study as study
    from fmnist.cli.main import main

    finished = study.run_experiment

    def second_interrupted(exp, *args, **kwargs):
        if exp.model != "sgd-logreg":
            raise KeyboardInterrupt
        return finished(exp, *args, **kwargs)

    monkeypatch.setattr(study, "run_experiment", second_interrupted)
    out = tmp_path / "study"
    assert main(["reproduce", "--out", str(out), "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 130
    err = capsys.readouterr().err
    assert err.endswith(f"fmnist: interrupted; the runs it finished are in {out / 'runs'} (sgd-logreg); the study "
                        f"starts again with: fmnist reproduce --out {out} --overwrite --dataset custom --data-dir "
                        f"{tiny_dir}\n")
    assert (out / "runs" / "sgd-logreg" / "run.json").exists() and not (out / "results.json").exists()


def test_ctrl_c_before_anything_is_written_says_so(tiny_dir, tmp_path, capsys, monkeypatch):
    import fmnist.study as study
    from fmnist.cli.main import main

    def interrupted(exp, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_experiment", interrupted)
    out = tmp_path / "study"
    assert main(["reproduce", "--out", str(out), "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 130
    assert capsys.readouterr().err.endswith("fmnist: interrupted; nothing was written\n")
    assert not (out / "runs").exists()
