"""fmnist compare: several models, one split and seed, one leaderboard ranked by validation accuracy."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fmnist
from fmnist.cli.main import main
from fmnist.compare import compare, format_markdown, format_table, resume_compare
from fmnist.errors import ModelError, OutputExistsError, RunError, TrainingError, UsageError
from fmnist.evaluation import evaluate
from fmnist.models import get_preset
from fmnist.runs import evaluate_run, load_run, resolve_config, train_run

SPEC = "flatten,dense:16:relu,dense:10"


def test_compare_cli_end_to_end(tmp_path, tiny_dir, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "softmax", SPEC, "sgd-logreg", "--epochs", "2", "--seed", "3", "--out", str(out),
            "--data-dir", str(tiny_dir), "--dataset", "custom"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy (reported apart)" in printed and "Epoch 2/2" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    rows = board["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["name"] for r in rows} == {"softmax", "flatten-dense-16-relu-dense-10", "sgd-logreg"}
    accs = [r["val_accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    md = (out / "leaderboard.md").read_text()
    assert "| rank | run | model | optimizer | lr |" in md and "reported apart" in md
    assert "| rmsprop | 0.001 |" in md  # the resolved Keras default, not "None"
    data = fmnist.load_dataset(tiny_dir, dataset="custom")
    for row in rows:
        run = load_run(row["run_dir"])
        # each row is its run folder's numbers, and the folder reloads to the same test score
        assert evaluate(run.model, data.x_test, data.y_test)["accuracy"] == pytest.approx(row["test_accuracy"])
        assert row["name"] in md
        if row["family"] == "torch":
            assert row["epochs"] == 2 and row["config"]["seed"] == 3 and len(run.history) == 2
        else:  # SGD's passes over the data, as its run folder records them
            assert row["epochs"] == run.metrics["n_iter"] and 1 <= row["epochs"] <= 5
    by_name = {r["name"]: r for r in rows}
    assert by_name["softmax"]["parameters"] == 7850 and by_name["sgd-logreg"]["parameters"] == 7850
    assert by_name["flatten-dense-16-relu-dense-10"]["parameters"] == 784 * 16 + 16 + 16 * 10 + 10


def test_compare_json_output_is_only_json(tmp_path, tiny_dir, capsys):
    assert main(["compare", SPEC, SPEC, "--epochs", "1", "--out", str(tmp_path / "c"), "--json",
                 "--data-dir", str(tiny_dir), "--dataset", "custom"]) == 0
    captured = capsys.readouterr()
    board = json.loads(captured.out)
    assert [r["name"] for r in sorted(board["rows"], key=lambda r: r["name"])] == [
        "flatten-dense-16-relu-dense-10", "flatten-dense-16-relu-dense-10-2"]
    # same model, same seed, same split: the same numbers (CPU)
    assert board["rows"][0]["val_accuracy"] == board["rows"][1]["val_accuracy"]
    assert "Epoch 1/1" in captured.err


def test_same_seed_gives_same_leaderboard(tiny_data):
    first = compare([SPEC], tiny_data, epochs=1, seed=5)["rows"][0]
    again = compare([SPEC], tiny_data, epochs=1, seed=5)["rows"][0]
    assert (first["val_accuracy"], first["val_loss"]) == (again["val_accuracy"], again["val_loss"])
    assert first["run_dir"] is None


def test_unknown_model_fails_before_training(tiny_data, tmp_path):
    with pytest.raises(ModelError, match="unknown model 'mlp-9000'"):
        compare([SPEC, "mlp-9000"], tiny_data, out_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(UsageError, match="epochs must be at least 1") as exc:
        compare([SPEC], tiny_data, epochs=0)
    assert exc.value.cli_message.startswith("--epochs must be at least 1")


def test_cli_errors_are_one_line(tmp_path, tiny_dir, capsys):
    assert main(["compare", "nope", "--out", str(tmp_path / "c"), "--data-dir", str(tiny_dir),
                 "--dataset", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist compare: error: MODEL: unknown model 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_seed_reseeds_scikit_learn_models(tiny_data, tmp_path):
    """--seed is every model's seed: sgd-logreg's random_state too (it shuffles each SGD pass)."""
    def fitted(seed, where):
        row = compare(["sgd-logreg"], tiny_data, seed=seed, out_dir=tmp_path / where)["rows"][0]
        run = load_run(row["run_dir"])
        assert run.info["preset"]["params"]["random_state"] == run.model.random_state  # run.json says what ran
        return run.model

    one, again, other, default = fitted(1, "a"), fitted(1, "b"), fitted(2, "c"), fitted(None, "d")
    assert one.random_state == again.random_state == 1 and other.random_state == 2
    assert default.random_state == 42  # no --seed: the preset's own
    np.testing.assert_array_equal(one.coef_, again.coef_)
    assert not np.array_equal(one.coef_, other.coef_)


def test_seeds_train_each_model_per_seed_and_pair_the_gaps_with_the_leader(tiny_data, tmp_path):
    from scipy.stats import ttest_rel

    weak = "flatten,dense:1:sigmoid,dense:10"  # one hidden unit: it cannot tell ten classes apart
    board = compare([SPEC, weak, SPEC], tiny_data, epochs=3, seeds=[1, 2, 3], out_dir=tmp_path / "c")
    rows = board["rows"]
    assert board["seeds"] == [1, 2, 3] and [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["model"] for r in rows] == [SPEC, SPEC, weak]  # best mean first
    data = fmnist.load_dataset(tiny_data.source, dataset="custom")
    for row in rows:
        runs = row["runs"]
        assert [r["seed"] for r in runs] == [1, 2, 3]
        assert row["val_accuracy"] == pytest.approx(np.mean([r["val_accuracy"] for r in runs]))
        assert row["val_accuracy_sd"] == pytest.approx(np.std([r["val_accuracy"] for r in runs], ddof=1))
        assert row["test_accuracy"] == pytest.approx(np.mean([r["test_accuracy"] for r in runs]))
        for r in runs:  # each seed's run is its own folder, trained with that seed
            run = load_run(r["run_dir"])
            assert r["run_dir"].endswith(f"-seed{r['seed']}") and run.info["config"]["seed"] == r["seed"]
            assert evaluate(run.model, data.x_test, data.y_test)["accuracy"] == pytest.approx(r["test_accuracy"])
    # The seed changes the numbers, and each run is the single run that seed gives.
    first = rows[0]["runs"]
    assert len({r["val_loss"] for r in first}) == 3
    single = compare([SPEC], tiny_data, epochs=3, seed=2)["rows"][0]
    assert (single["val_accuracy"], single["val_loss"]) == (first[1]["val_accuracy"], first[1]["val_loss"])
    # Gaps to the leader, paired by seed: the same model is no gap at all; the weak one is beyond noise
    # exactly when scipy's paired t-test says so.
    leader, twin, weak_row = rows
    assert leader["val_gap"] is None and leader["beyond_noise"] is None
    assert twin["val_gap"] == 0 and twin["beyond_noise"] is False
    lead = [r["val_accuracy"] for r in leader["runs"]]
    other = [r["val_accuracy"] for r in weak_row["runs"]]
    assert weak_row["val_gap"] == pytest.approx(np.mean(lead) - np.mean(other))
    assert weak_row["val_gap_se"] == pytest.approx(np.std(np.subtract(lead, other), ddof=1) / np.sqrt(3))
    assert weak_row["beyond_noise"] == (ttest_rel(lead, other).pvalue < 0.05)
    assert weak_row["beyond_noise"]
    md = (tmp_path / "c" / "leaderboard.md").read_text()
    assert "| gap to #1 | beyond noise |" in md and "seed: 1, 2, 3" in md
    assert f"| {weak_row['val_gap']:.4f} ± {weak_row['val_gap_se']:.4f} | yes |" in md
    assert f"| {leader['val_accuracy']:.4f} ± {leader['val_accuracy_sd']:.4f} | – | – |" in md


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1,2", "--seed", "3"], "--seeds: give either --seed"),
    (["--seeds", "4"], "--seeds: give two or more different seeds, e.g. 1,2,3 (got 4)"),
    (["--seeds", "4,4"], "--seeds: give two or more different seeds, e.g. 1,2,3 (got 4,4)"),
    (["--seeds", "1,x"], "--seeds: expected whole numbers separated by commas, e.g. 1,2,3, got '1,x'"),
    (["--cpus-per-run", "2"], "--cpus-per-run sets each run's CPUs on Ray; add --ray"),
    (["--ray", "--cpus-per-run", "0"], "--cpus-per-run must be at least 1, got 0"),
])
def test_bad_seeds_are_one_line_usage_errors(tmp_path, tiny_dir, capsys, argv, message):
    assert main(["compare", SPEC, *argv, "--out", str(tmp_path / "c"), "--data-dir", str(tiny_dir),
                 "--dataset", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist compare: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_a_gap_is_beyond_noise_only_where_the_paired_t_test_says_so():
    from scipy.stats import ttest_rel

    from fmnist.evaluation.replicates import gaps_to_leader

    def row(name, accs):
        return {"name": name, "val_accuracy": np.mean(accs), "runs": [
            {"seed": s, "val_accuracy": a} for s, a in zip([7, 8, 9], accs)]}

    lead = [0.90, 0.92, 0.91]
    # Gaps 0.02, 0.01, 0.03: 3.5 standard errors, past a rule of two but short of the t-test's 4.3.
    close, far = [0.88, 0.91, 0.88], [0.80, 0.81, 0.80]
    rows = gaps_to_leader([row("a", lead), row("b", close), row("c", far)], "val_accuracy")
    assert rows[1]["val_gap"] == pytest.approx(0.02) and rows[1]["val_gap_se"] == pytest.approx(0.01 / np.sqrt(3))
    assert ttest_rel(lead, close).pvalue > 0.05 and rows[1]["beyond_noise"] is False
    assert ttest_rel(lead, far).pvalue < 0.05 and rows[2]["beyond_noise"] is True
    # Paired by seed, whatever order the runs are listed in.
    shuffled = row("b", close)
    shuffled["runs"] = shuffled["runs"][1:] + shuffled["runs"][:1]
    assert gaps_to_leader([row("a", lead), shuffled], "val_accuracy")[1]["val_gap_se"] == \
        pytest.approx(0.01 / np.sqrt(3))


def test_a_comparison_folder_reports_every_run_it_trained_best_first(tiny_data, tmp_path):
    from fmnist.compare import run_dirs
    from fmnist.reporting.report import build_report

    weak = "flatten,dense:1:sigmoid,dense:10"
    board = compare([weak, SPEC], tiny_data, epochs=3, seeds=[1, 2], out_dir=tmp_path / "c")
    (tmp_path / "c").rename(tmp_path / "moved")  # found beside the leaderboard, not where it was written
    dirs = run_dirs(tmp_path / "moved")
    names = [f"{row['name']}-seed{s}" for row in board["rows"] for s in (1, 2)]
    assert [d.name for d in dirs] == names and names[0].startswith("flatten-dense-16")
    assert all((d / "run.json").is_file() for d in dirs)
    page = build_report([tmp_path / "moved"], tmp_path / "report", tiny_data, dpi=30, n_mistakes=2).read_text()
    assert all(f"— {name}</h2>" in page for name in names)
    assert run_dirs(dirs[0]) is None  # a run folder is no comparison
    # First the models as the comparison ranked them, by their means over the seeds, then each run.
    over_seeds = page.split('id="over-seeds"')[1].split("</section>")[0]
    assert page.index('id="over-seeds"') < page.index('id="leaderboard"')
    assert "ranked by mean validation accuracy over seeds 1, 2" in over_seeds.lower()
    rows = over_seeds.split("<tr>")[2:]  # after the header: one per model, not one per run
    assert len(rows) == len(board["rows"]) == 2
    for row, html_row in zip(board["rows"], rows):
        assert f"<td>{row['name']}</td>" in html_row
        assert f"{row['val_accuracy']:.4f} ± {row['val_accuracy_sd']:.4f}" in html_row


def test_on_ray_each_run_is_a_task_with_its_cpus_and_the_same_run_as_here(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "cmp"
    finished = []
    board = compare(["softmax", SPEC, "sgd-logreg"], tiny_data, epochs=2, seeds=[1, 2], out_dir=out, ray=True,
                    on_finish=lambda i, total, run, result: finished.append((i, total, run, result.metrics)))
    assert board["cluster"] == {**ray_cluster.to_json(), "cpus_per_run": 1}
    names = [f"{m}-seed{s}" for m in ("softmax", "flatten-dense-16-relu-dense-10", "sgd-logreg") for s in (1, 2)]
    assert sorted(run for _, _, run, _ in finished) == sorted(names)
    assert [(i, total) for i, total, _, _ in finished] == [(i, 6) for i in range(1, 7)]
    for row in board["rows"]:
        for run in row["runs"]:
            again = evaluate_run(run["run_dir"], tiny_data, split="val")
            assert again["accuracy"] == pytest.approx(run["val_accuracy"])
            info = load_run(run["run_dir"]).info
            if row["family"] == "torch":
                assert info["config"]["seed"] == run["seed"]
                assert info["threads"]["threads"] == 1  # its Ray allotment, not this machine's 2 cores
    # A run on Ray is the run this process trains with the same seed and threads.
    here = train_run(SPEC, tiny_data, config=resolve_config(get_preset(SPEC), epochs=2, seed=2, threads=1))
    ray_run = next(r for row in board["rows"] if row["model"] == SPEC for r in row["runs"] if r["seed"] == 2)
    assert ray_run["val_accuracy"] == here.metrics["val"]["accuracy"]
    assert ray_run["val_loss"] == pytest.approx(here.metrics["val"]["loss"], rel=1e-6)
    assert "Trained on Ray at" in (out / "leaderboard.md").read_text()


def test_a_ray_task_computes_with_its_allotment_whatever_the_environment_says(tiny_data, monkeypatch):
    from fmnist.compare import _jobs, _train_task

    # Ray sets OMP_NUM_THREADS for a task only where the user's environment has none.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    [job] = _jobs({"models": [SPEC], "epochs": 1, "seed": None, "seeds": None})
    assert _train_task(job, tiny_data, None, False, False, 1).threads["threads"] == 1


def test_a_run_that_fails_on_ray_fails_the_comparison_with_its_own_error(ray_cluster, tiny_data, tmp_path):
    import dataclasses

    images = tiny_data.x_train.astype(np.float32)
    images[:] = np.nan
    bad = dataclasses.replace(tiny_data, x_train=images)
    with pytest.raises(TrainingError, match="training diverged: loss is nan"):
        compare(["softmax", SPEC], bad, epochs=1, out_dir=tmp_path / "cmp", ray=True)
    assert not (tmp_path / "cmp" / "leaderboard.json").exists()


class _InterruptAt(fmnist.training.Callback):
    """Ctrl-C at the end of an epoch, before that epoch's checkpoint is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_comparison_resumes_to_the_leaderboard_of_one_that_was_not(tiny_data, tmp_path):
    models, kw = ["softmax", SPEC], dict(epochs=3, seeds=[1, 2])
    whole = compare(models, tiny_data, out_dir=tmp_path / "whole", **kw)

    out = tmp_path / "cut"
    # softmax's two seeds finish; the first of the dense net's is interrupted in its second epoch.
    with pytest.raises(KeyboardInterrupt):
        compare(models, tiny_data, out_dir=out, **kw,
                callbacks_for=lambda run: [_InterruptAt(2)] if run.startswith("flatten") else [])
    runs = out / "runs"
    assert sorted(p.name for p in runs.iterdir() if (p / "run.json").exists()) == ["softmax-seed1", "softmax-seed2"]
    cut = runs / "flatten-dense-16-relu-dense-10-seed1"
    assert (cut / "checkpoint.safetensors").exists() and not (cut / "run.json").exists()
    assert not (out / "leaderboard.json").exists()
    with pytest.raises(OutputExistsError, match=f"fmnist compare --resume {out}"):
        compare(models, tiny_data, out_dir=out, **kw)
    stamps = {p: p.stat().st_mtime_ns for p in (runs / "softmax-seed1").iterdir()}

    seen, epochs = [], []

    class Epochs(fmnist.training.Callback):
        def __init__(self, run):
            self.run = run

        def on_epoch_end(self, trainer, epoch, logs):
            epochs.append((self.run, epoch))

    board = resume_compare(out, tiny_data, on_finish=lambda i, total, run, result: seen.append((i, total, run)),
                           callbacks_for=lambda run: [Epochs(run)])
    # The interrupted run continued from its first epoch's checkpoint; the one after it trained whole.
    assert epochs == [(cut.name, 2), (cut.name, 3)] + [("flatten-dense-16-relu-dense-10-seed2", e) for e in (1, 2, 3)]
    assert seen[:2] == [(1, 4, "softmax-seed1"), (2, 4, "softmax-seed2")]  # kept, reported first
    assert [i for i, _, _ in seen] == [1, 2, 3, 4]
    assert {p: p.stat().st_mtime_ns for p in (runs / "softmax-seed1").iterdir()} == stamps  # not trained again
    assert board["resumed"] == 2
    # Its clock ran in this call only, and the footers say so (a fresh comparison's says "total").
    said = "in the call that resumed it (2 runs kept from before, their time not counted)"
    assert said in format_table(board) and said in format_markdown(board)
    assert "total " in format_table(whole) and said not in format_table(whole)
    for key in ("name", "epochs", "val_accuracy", "val_loss", "test_accuracy", "val_gap", "parameters"):
        assert [r[key] for r in board["rows"]] == pytest.approx([r[key] for r in whole["rows"]]), key
    # A kept run's config is the one it trained with (learning rate, device), as a fresh run's row says.
    for key in ("optimizer", "lr", "config"):
        assert [r[key] for r in board["rows"]] == [r[key] for r in whole["rows"]], key
    assert all(r["config"]["device"] == "cpu" and r["config"]["lr"] is not None for r in board["rows"])
    assert [r["val_loss"] for row in board["rows"] for r in row["runs"]] == \
        pytest.approx([r["val_loss"] for row in whole["rows"] for r in row["runs"]], rel=1e-6)
    with pytest.raises(RunError, match="finished already"):
        resume_compare(out, tiny_data)


def test_a_kept_run_whose_config_cannot_be_read_back_is_one_line(tiny_data, tmp_path):
    out = tmp_path / "cmp"
    compare(["softmax"], tiny_data, epochs=1, out_dir=out)
    (out / "leaderboard.json").unlink()  # as if interrupted after its run finished
    info = json.loads((out / "runs" / "softmax" / "run.json").read_text())
    info["config"]["learning_speed"] = 3
    (out / "runs" / "softmax" / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match=r"softmax/run.json: its config cannot be read back \(.*learning_speed.*\); "
                                       r"remove .*softmax and resume, which trains it again"):
        resume_compare(out, tiny_data)


def _files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_an_interrupted_overwrite_leaves_the_earlier_comparison_as_it_was(tiny_data, tmp_path):
    out = tmp_path / "cmp"
    compare(["softmax", SPEC], tiny_data, epochs=1, out_dir=out)
    before = _files(out)
    with pytest.raises(KeyboardInterrupt):  # the new comparison stops in its first run
        compare(["softmax", SPEC], tiny_data, epochs=3, out_dir=out, overwrite=True,
                callbacks_for=lambda run: [_InterruptAt(2)])
    assert _files(out) == before
    with pytest.raises(RunError, match="this comparison finished already"):
        resume_compare(out, tiny_data)


def test_a_killed_overwrite_gives_the_earlier_comparison_back_to_the_next_one(tiny_data, tmp_path):
    from tests.test_runs import _dead_pid

    out = tmp_path / "cmp"
    compare(["softmax"], tiny_data, epochs=1, out_dir=out)
    before = _files(out)
    aside = out / f".replaced.{_dead_pid()}"  # as a kill -9 of compare --overwrite leaves it, mid-run
    (aside / "runs" / "softmax").mkdir(parents=True)
    for name in ("leaderboard.json", "leaderboard.md", "compare.json"):
        (out / name).rename(aside / name)
    for path in (out / "runs" / "softmax").iterdir():
        path.rename(aside / "runs" / "softmax" / path.name)
    (out / "compare.json").write_text("{}")  # the replacement's plan, and its run's first epoch
    (out / "runs" / "softmax" / "checkpoint.safetensors").write_bytes(b"half")
    with pytest.raises(OutputExistsError, match="already holds an earlier comparison"):
        compare(["softmax"], tiny_data, epochs=1, out_dir=out)
    assert _files(out) == before


def test_the_leaderboards_two_files_are_written_together(tiny_data, tmp_path, monkeypatch):
    import fmnist._files

    out = tmp_path / "cmp"
    replace = os.replace

    def killed_at_the_second_rename(src, dst):
        if str(dst).endswith("leaderboard.json"):
            raise KeyboardInterrupt  # as a kill between the renames: the .md is new, the .json not there
        replace(src, dst)

    monkeypatch.setattr(fmnist._files.os, "replace", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        compare(["softmax"], tiny_data, epochs=2, out_dir=out)
    monkeypatch.setattr(fmnist._files.os, "replace", replace)
    assert (out / "leaderboard.md").exists()
    assert not (out / "leaderboard.json").exists()  # not finished: --resume completes it
    assert resume_compare(out, tiny_data)["rows"][0]["epochs"] == 2
    assert json.loads((out / "leaderboard.json").read_text())["epochs"] == 2


def test_on_ray_a_relative_out_is_where_the_runs_go(ray_cluster, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cluster's workers started elsewhere
    board = compare(["softmax"], tiny_data, epochs=1, out_dir="cmp", ray=True)
    assert (tmp_path / "cmp" / "runs" / "softmax" / "run.json").exists()
    assert evaluate_run(tmp_path / "cmp" / "runs" / "softmax", tiny_data)["accuracy"] == \
        pytest.approx(board["rows"][0]["val_accuracy"])


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{out}", "softmax"], "--resume finishes a comparison as it was started; drop MODEL"),
    (["--resume", "{out}", "--seeds", "1,2"], "drop --seeds"),
    (["--resume", "{out}", "--epochs", "0"], "drop --epochs"),  # a given 0 is given
    ([], "fmnist compare needs one or more MODELs"),
])
def test_resume_usage_errors(tmp_path, tiny_dir, capsys, argv, message):
    argv = [a.replace("{out}", str(tmp_path / "c")) for a in argv]
    assert main(["compare", *argv, "--data-dir", str(tiny_dir), "--dataset", "custom"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resuming_on_other_data_or_no_comparison_is_one_line(tiny_data, tiny_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    compare(["softmax"], tiny_data, epochs=1, out_dir=out)
    (out / "leaderboard.json").unlink()  # as if interrupted after its last run
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    data = fmnist.load_dataset(other, dataset="custom")
    data.y_train[:] = data.y_train[::-1]  # other labels
    with pytest.raises(RunError, match="trained on other data"):
        resume_compare(out, data)
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--data-dir", str(tiny_dir),
                 "--dataset", "custom"]) == 1
    err = capsys.readouterr().err
    assert f"the comparison has not finished (no leaderboard.json); finish it with 'fmnist compare --resume {out}'" \
        in err and err.count("\n") == 1
    assert main(["compare", "--resume", str(tmp_path), "--data-dir", str(tiny_dir), "--dataset", "custom"]) == 1
    err = capsys.readouterr().err
    assert "no compare.json here, so nothing to resume" in err and err.count("\n") == 1
    assert resume_compare(out, tiny_data)["resumed"] == 1


def test_cli_resume_on_ray_keeps_the_finished_run_and_trains_the_rest_there(ray_cluster, tiny_data, tiny_dir,
                                                                           tmp_path, capsys):
    import shutil

    out = tmp_path / "cmp"
    compare(["softmax", SPEC], tiny_data, epochs=1, out_dir=out)
    (out / "leaderboard.json").unlink()  # interrupted before the second run began
    shutil.rmtree(out / "runs" / "flatten-dense-16-relu-dense-10")
    argv = ["compare", "--resume", str(out), "--ray", "--data-dir", str(tiny_dir), "--dataset", "custom"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[1/2] softmax - 1 epoch - " in printed and "[2/2] flatten-dense-16-relu-dense-10 - 1 epoch - " in printed
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["resumed"] == 1 and board["cluster"]["address"] == ray_cluster.address
    assert load_run(out / "runs" / "flatten-dense-16-relu-dense-10").info["threads"]["threads"] == 1


def test_ctrl_c_says_what_is_kept_and_how_to_go_on(tmp_path, tiny_dir, capsys, monkeypatch):
    import fmnist.compare as compare_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_module, "train_run", interrupted)
    out = tmp_path / "cmp"
    argv = ["compare", "softmax", "--out", str(out), "--data-dir", str(tiny_dir), "--dataset", "custom"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert (f"fmnist: interrupted; finished runs are kept in {out}, and a network interrupted mid-run has its last "
            "finished epoch there; ") in err
    assert f"continue with: fmnist compare --resume {out} --dataset custom --data-dir {tiny_dir}\n" in err
    assert "Traceback" not in err and (out / "compare.json").exists()
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", *argv[:2], "--out", str(tmp_path / "other"), *argv[4:]])
    # The command it suggests finishes the comparison (it checks the data it is given).
    monkeypatch.undo()
    assert main(["compare", "--resume", str(out), "--dataset", "custom", "--data-dir", str(tiny_dir)]) == 0


def test_an_address_where_nothing_listens_leaves_no_comparison_to_resume(tiny_data, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(fmnist.errors.FmnistError, match=rf"^--address 127\.0\.0\.1:{port}: nothing answers there"):
        compare(["softmax"], tiny_data, epochs=1, out_dir=tmp_path / "c", address=f"127.0.0.1:{port}")
    assert not (tmp_path / "c").exists()
    # The same comparison run here then starts afresh; no interrupted one is in the way.
    board = compare(["softmax"], tiny_data, epochs=1, out_dir=tmp_path / "c")
    assert [row["name"] for row in board["rows"]] == ["softmax"]


@pytest.mark.parametrize(("argv", "flags"), [
    (["compare", "softmax", "--address", "10.0.0.5:6379", "--cpus-per-run", "2"],
     " --address 10.0.0.5:6379 --cpus-per-run 2"),
    (["compare", "softmax", "--ray"], " --ray"),
    (["compare", "softmax"], ""),
    (["sweep", "softmax", "--param", "lr=0.1", "--address", "10.0.0.5:6379", "--cpus-per-trial", "2"],
     " --address 10.0.0.5:6379"),  # the sweep's resume keeps its per-trial CPUs itself
])
def test_a_resume_hint_runs_where_the_command_ran(argv, flags):
    from fmnist.cli.main import _ray_flags, build_parser

    assert _ray_flags(build_parser().parse_args(argv)) == flags


def test_ctrl_c_of_a_comparison_on_a_cluster_says_to_resume_it_there(tmp_path, tiny_dir, capsys, monkeypatch):
    import fmnist.compare as compare_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_module, "compare", interrupted)
    out = tmp_path / "cmp"
    argv = ["compare", "softmax", "--out", str(out), "--address", "10.0.0.5:6379", "--data-dir", str(tiny_dir),
            "--dataset", "custom"]
    assert main(argv) == 130
    assert f"continue with: fmnist compare --resume {out} --address 10.0.0.5:6379 --dataset custom" in \
        capsys.readouterr().err


def test_the_command_line_says_an_interrupted_overwrite_left_the_earlier_comparison(tiny_dir, tmp_path, capsys,
                                                                                    monkeypatch):
    import fmnist.compare as module
    from fmnist.cli.main import main

    out, data = tmp_path / "cmp", ["--dataset", "custom", "--data-dir", str(tiny_dir), "--quiet"]
    assert main(["compare", "softmax", "--epochs", "1", "--out", str(out), *data]) == 0
    before = _files(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_train", interrupted)
    capsys.readouterr()
    assert main(["compare", "softmax", "--epochs", "2", "--out", str(out), "--overwrite", *data]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; {out} holds the earlier comparison as it was (the new one is discarded)" in err
    assert "--resume" not in err and _files(out) == before
