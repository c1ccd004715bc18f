"""fmnist sweep on a local Ray (the session's ray_cluster) with tiny data and few trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fmnist
from fmnist.cli.main import main
from fmnist.errors import UsageError
from fmnist.runs import evaluate_run, load_run
from fmnist.tuning import resume_sweep
from fmnist.tuning.sweep import plan_sweep

TRIAL_KEYS = {"trial", "params", "val_accuracy", "val_loss", "epochs", "status", "error", "time_s", "run_dir"}


def _data_args(tiny_dir):
    return ["--data-dir", str(tiny_dir), "--dataset", "custom"]


@pytest.mark.parametrize("argv, fragment", [
    (["softmax", "--param", "lrr=0.1"], "--param lrr=0.1: 'lrr' is not a training option"),
    (["softmax", "--param", "lr=uniform:1"], "--param lr=uniform:1: expected uniform:LO:HI"),
    (["softmax", "--param", "lr=-1,0.1"], "--param lr=-1,0.1: --lr must be a positive number"),
    (["softmax", "--param", "lr=0.1,0.01", "--samples", "3"], "--samples 3: only random SPECs"),
    (["softmax", "--metric", "test_accuracy"], "--metric: unknown metric 'test_accuracy'"),
    (["softmax", "--scheduler", "hyperband"], "--scheduler: unknown scheduler 'hyperband'"),
    (["softmax", "--epochs", "2", "--param", "epochs=1,2"], "--epochs and --param epochs"),
    (["sgd-logreg"], "sgd-logreg is a scikit-learn preset"),
    (["--resume", "x", "--param", "lr=0.1"], "--resume finishes a sweep as it was started; drop --param"),
    (["--resume", "x", "--seeds", "1,2"], "--resume finishes a sweep as it was started; drop --seeds"),
    (["softmax", "--seeds", "1"], "--seeds: give two or more different seeds"),
    (["softmax", "--seeds", "1,2,1"], "--seeds: give two or more different seeds, e.g. 1,2,3 (got 1,2,1)"),
    (["softmax", "--param", "seed=3,4"], "--param seed=3,4: 'seed' is not a training option that can be searched "
                                          "(to train every point over several seeds and rank their means, use "
                                          "--seeds S,S,...)"),
    (["softmax", "--seeds", "1,2", "--scheduler", "asha"], "--seeds with --scheduler asha"),
    (["softmax", "--seeds", "1,x"], "--seeds: expected whole numbers separated by commas"),
    (["softmax", "--cpus-per-trial", "0"], "--cpus-per-trial must be at least 1, got 0"),
    (["softmax", "--gpus-per-trial", "-1"], "--gpus-per-trial must be 0 or more, got -1"),
    (["softmax", "--param", "device=cpu,cuda"], "--param device=cuda: a trial sees a GPU only when it holds one; "
                                                "add --gpus-per-trial 1"),
    (["--resume", "x", "--gpus-per-trial", "1"], "--resume finishes a sweep as it was started; drop --gpus-per-trial"),
    (["softmax", "--param", "optimizer=sgd,adam", "--param", "momentum=0.9"],
     "--param optimizer=sgd,adam --param momentum=0.9: the point optimizer=adam, momentum=0.9 fails: --momentum 0.9: "
     "adam has no momentum setting"),
])
def test_bad_requests_are_usage_errors(tmp_path, tiny_dir, capsys, argv, fragment):
    assert main(["sweep", *argv, "--out", str(tmp_path / "s"), *_data_args(tiny_dir)]
                if "--resume" not in argv else ["sweep", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_settings_valid_only_together_are_accepted_together():

    plan = plan_sweep("softmax", ["schedule=onecycle", "pct_start=0.2,0.4"])
    assert plan.params == ("schedule=onecycle", "pct_start=0.2,0.4")
    plan_sweep("softmax", ["optimizer=sgd", "momentum=0.9", "nesterov=true"])
    with pytest.raises(UsageError, match="--pct-start 0.2 applies to --schedule onecycle only"):
        plan_sweep("softmax", ["pct_start=0.2,0.4"])


def test_missing_ray_says_what_to_install(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "s"
    assert main(["sweep", "softmax", "--param", "lr=0.1", "--out", str(out), *_data_args(tiny_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert "pip install 'fmnist[sweep]'" in err and "\n" not in err
    assert not out.exists()


def test_a_sweep_in_which_every_trial_failed_exits_1_with_its_leaderboard(ray_cluster, tmp_path, tiny_dir, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "softmax", "--param", "weight_decay=1e30", "--param", "optimizer=sgd", "--epochs", "1",
            "--out", str(out), *_data_args(tiny_dir)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "best: none (every trial failed)" in captured.out
    assert captured.err.strip().splitlines()[-1] == f"fmnist: error: no trial finished (each one's error is in " \
                                                    f"{out / 'leaderboard.md'})"
    assert json.loads((out / "leaderboard.json").read_text())["best"] is None


def test_a_failed_trials_time_is_its_epochs_not_tunes_clock(tmp_path):
    """Tune's time_total_s holds the trial process's start (seconds); a row's time is training's."""
    from fmnist.tuning.sweep import _row

    last = {"time_total_s": 9.0, "train_time_s": 0.12, "epoch": 1, "epochs": 3}
    assert _row("trial-00000", {}, tmp_path / "t", "training diverged", last)["time_s"] == 0.12
    assert _row("trial-00000", {}, tmp_path / "t", "training diverged", {"time_total_s": 9.0})["time_s"] is None
    assert _row("trial-00000", {}, tmp_path / "t", None, last)["time_s"] == 0.12  # stopped by the scheduler


def test_sweep_leaderboard_is_true_to_its_run_folders(ray_cluster, tmp_path, tiny_dir, capsys):
    out = tmp_path / "sweep"
    # weight_decay=1e30 makes SGD's weights overflow: that trial fails, the sweep goes on.
    argv = ["sweep", "softmax", "--param", "weight_decay=0,0.001,1e30", "--param", "optimizer=sgd", "--epochs", "2",
            "--out", str(out), *_data_args(tiny_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith(("[1/3]", "[2/3]", "[3/3]")) for line in printed.splitlines()) == 3
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board) == {"metric", "best", "trials", "cluster"}
    assert board["cluster"] == ray_cluster.to_json()
    assert all(set(t) == TRIAL_KEYS for t in board["trials"])
    by_wd = {t["params"]["weight_decay"]: t for t in board["trials"]}
    assert set(by_wd) == {0.0, 0.001, 1e30}

    failed = by_wd[1e30]
    assert failed["status"] == "failed" and failed["run_dir"] is None
    assert failed["error"].startswith("training diverged: loss is nan") and "\n" not in failed["error"]
    live = [line for line in printed.splitlines() if line.startswith("[") and "failed" in line]
    assert len(live) == 1 and "failed: training diverged" in live[0], printed  # as it happens, not only at the end

    data = fmnist.load_dataset(tiny_dir, dataset="custom")
    finished = [t for t in board["trials"] if t["status"] == "finished"]
    assert len(finished) == 2 and board["trials"][-1] is not None and board["trials"][-1]["status"] == "failed"
    assert finished[0]["val_accuracy"] >= finished[1]["val_accuracy"]
    for row in finished:
        assert Path(row["run_dir"]).parent == out / "trials" and row["epochs"] == 2
        again = evaluate_run(row["run_dir"], data, split="val")  # the same split for every trial
        assert again["accuracy"] == pytest.approx(row["val_accuracy"]) and again["n"] == 40
        assert again["loss"] == pytest.approx(row["val_loss"], rel=1e-5)
        info = load_run(row["run_dir"]).info
        assert info["config"]["weight_decay"] == row["params"]["weight_decay"]
        assert info["threads"]["threads"] == 1  # the trial's Ray allotment (--cpus-per-trial 1), not the 2 cores
    best = board["best"]
    assert best["trial"] == finished[0]["trial"]
    test = evaluate_run(best["run_dir"], data, split="test")
    assert best["test_accuracy"] == pytest.approx(test["accuracy"]) and best["test_n"] == 50
    # Only the best trial was scored on t10k; no trial's own metrics hold a test score.
    assert all("test" not in json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for r in finished)
    md = (out / "leaderboard.md").read_text()
    assert best["trial"] in md and "reported apart" in md and "training diverged" in md

    # fmnist report renders the sweep: leaderboard, metric against the option, the best's curves;
    # from wherever the folder has moved.
    moved = out.rename(tmp_path / "moved")
    assert main(["report", str(moved), "--out", str(tmp_path / "report"), *_data_args(tiny_dir)]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    for section in ("leaderboard", "parameters", "learning-curves", f"confusion-{best['trial']}"):
        assert f'id="{section}"' in page
    leaderboard = page.split('id="leaderboard"')[1].split("</section>")[0]
    assert leaderboard.count("<tr><td>") == 3 and "training diverged" in leaderboard
    assert (tmp_path / "report" / "metric_vs_params.png").stat().st_size > 0


def test_trials_hold_the_gpus_asked_for_and_no_more_than_the_cluster_has(ray_cluster, tmp_path, tiny_data):
    # Ray hides the GPUs from a trial that holds none; with --gpus-per-trial it holds them (and
    # device=cuda is then valid: it is refused at run time only where no GPU is visible).
    plan = plan_sweep("softmax", ["device=cuda"], gpus_per_trial=0.25)
    assert plan.gpus_per_trial == 0.25
    assert ray_cluster.gpus == 0 and "gpus" not in ray_cluster.to_json()
    with pytest.raises(UsageError, match=r"--gpus-per-trial 0.25: the Ray cluster at \S+ has 0 GPUs"):
        fmnist.sweep("softmax", {"lr": [0.1]}, tiny_data, epochs=1, gpus_per_trial=0.25, out_dir=tmp_path / "s")
    assert not (tmp_path / "s" / "sweep.json").exists()


def test_interrupted_sweep_resumes_without_retraining_finished_trials(ray_cluster, tmp_path, tiny_dir):
    out = tmp_path / "sweep"
    # Its own process and Ray, interrupted (SIGINT, as Ctrl-C) when the first trial ends. Two
    # CPUs per trial on two CPUs: one trial at a time, so exactly one has finished.
    script = textwrap.dedent(f"""
        import os, signal, sys
        # A job started in the background of a shell inherits SIGINT ignored, and Python then
        # keeps it so; a user's Ctrl-C at a terminal is what this stands for.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import fmnist
        from fmnist._ray import start_ray
        start_ray(num_cpus=2)
        data = fmnist.load_dataset({str(tiny_dir)!r}, dataset="custom")
        try:
            fmnist.sweep("softmax", {{"lr": [0.01, 0.02, 0.03]}}, data, epochs=2, cpus_per_trial=2,
                         out_dir={str(out)!r}, on_trial=lambda row: os.kill(os.getpid(), signal.SIGINT))
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(0)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(fmnist.__file__).parents[1]), "FMNIST_CACHE": str(tmp_path / "c")}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr[-2000:]
    done = [d for d in (out / "trials").iterdir() if (d / "run.json").exists()]
    assert len(done) == 1 and not (out / "leaderboard.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in done[0].iterdir()}

    board = resume_sweep(out, fmnist.load_dataset(tiny_dir, dataset="custom"))
    assert sorted(t["trial"] for t in board["trials"]) == ["trial-00000", "trial-00001", "trial-00002"]
    assert {t["status"] for t in board["trials"]} == {"finished"}
    assert {t["params"]["lr"] for t in board["trials"]} == {0.01, 0.02, 0.03}
    assert {p.name: p.stat().st_mtime_ns for p in done[0].iterdir()} == stamps  # not trained again
    assert (out / "leaderboard.json").exists()
    # Finished: a second resume, or a new sweep into the folder, changes nothing in it.
    before = {p: p.read_bytes() for p in (out / "leaderboard.json", out / "leaderboard.md")}
    with pytest.raises(fmnist.errors.RunError, match="this sweep finished already"):
        resume_sweep(out, fmnist.load_dataset(tiny_dir, dataset="custom"))
    with pytest.raises(UsageError, match="a finished sweep is there"):
        fmnist.sweep("softmax", {"lr": [0.01]}, out_dir=out)
    assert {p: p.read_bytes() for p in before} == before


def test_asha_stops_the_weak_trial_after_its_first_epoch(ray_cluster, tmp_path, tiny_data):
    # Two CPUs per trial on two CPUs: one trial at a time, in grid order. The strong trial
    # (lr=0.1) sets the rung at epoch 1; the weak one (lr=1e-7 barely moves from its random
    # start) is below the rung's cutoff there, so ASHA stops it, whatever the exact scores.
    out = tmp_path / "sweep"
    live = []
    board = fmnist.sweep("softmax", {"lr": [0.1, 1e-7]}, tiny_data, scheduler="asha", epochs=4, cpus_per_trial=2,
                         out_dir=out, on_trial=live.append)
    by_lr = {t["params"]["lr"]: t for t in board["trials"]}
    strong, weak = by_lr[0.1], by_lr[1e-7]
    assert strong["status"] == "finished" and strong["epochs"] == 4
    assert weak["status"] == "stopped" and weak["epochs"] == 1
    assert weak["val_accuracy"] < strong["val_accuracy"]
    assert board["best"]["trial"] == strong["trial"]
    # The stopped trial is a complete run folder too, true to its row.
    metrics = json.loads((Path(weak["run_dir"]) / "metrics.json").read_text())
    assert metrics["stopped"].startswith("stopped early by the asha scheduler")
    assert evaluate_run(weak["run_dir"], tiny_data, split="val")["accuracy"] == pytest.approx(weak["val_accuracy"])
    assert len(json.loads((Path(weak["run_dir"]) / "history.json").read_text())) == 1
    assert "stopped" in (out / "leaderboard.md").read_text()
    # The line printed as it stopped gave the time its leaderboard row gives (the epochs' own).
    said = next(row for row in live if row["trial"] == weak["trial"])
    assert said["status"] == "stopped" and said["time_s"] == pytest.approx(weak["time_s"], abs=0.05)


def test_asha_ending_trials_at_their_last_epoch_stopped_none_of_them(ray_cluster, tmp_path, tiny_data):
    # With one epoch, ASHA's only rung is the last epoch: Tune ends each trial inside its report
    # there, before the run folder is written; the sweep completes it, as a finished run.
    live = []
    board = fmnist.sweep("softmax", {"lr": [0.1, 1e-7]}, tiny_data, scheduler="asha", epochs=1, cpus_per_trial=2,
                         out_dir=tmp_path / "sweep", on_trial=live.append)
    assert [t["status"] for t in board["trials"]] == ["finished", "finished"]
    assert [t["status"] for t in live] == ["finished", "finished"]
    for trial in board["trials"]:
        metrics = json.loads((Path(trial["run_dir"]) / "metrics.json").read_text())
        assert "stopped" not in metrics and trial["epochs"] == 1
    assert "stopped" not in (tmp_path / "sweep" / "leaderboard.md").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_runs_on_a_cluster_started_with_ray_start(tmp_path, tiny_dir):
    import shutil
    import tempfile
    import time

    ray_cli = str(Path(sys.executable).parent / "ray")
    # A cluster as a user starts one, in its own processes and home: a Ray token there (as any
    # earlier local Ray leaves one) makes `ray start` require it, which a join must then send.
    # One CPU, where a local Ray for the command would have taken the machine's cores.
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(Path(fmnist.__file__).parents[1])}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, capture_output=True, check=True, timeout=120)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    log = tmp_path / "ray-start.log"
    with log.open("w") as sink:
        head = subprocess.Popen([ray_cli, "start", "--head", "--num-cpus", "1", "--port", str(port),
                                 "--include-dashboard=false", "--temp-dir", temp, "--block"],
                                env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-2000:]
        address = log.read_text().split("ray start --address='", 1)[1].split("'", 1)[0]
        assert address.endswith(f":{port}")

        out = tmp_path / "sweep"
        proc = subprocess.run([sys.executable, "-m", "fmnist", "sweep", "softmax", "--param", "lr=0.05,0.1",
                               "--epochs", "1", "--address", address, "--out", str(out), *_data_args(tiny_dir)],
                              env={**env, "FMNIST_CACHE": str(tmp_path / "c")}, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        first = proc.stdout.splitlines()[0]
        assert first.startswith(f"2 trials on the Ray cluster at {address} (1 node, 1 CPUs); Ray's logs: {temp}")
        board = json.loads((out / "leaderboard.json").read_text())
        assert board["cluster"] == {"address": address, "nodes": 1, "cpus": 1}
        assert [t["status"] for t in board["trials"]] == ["finished", "finished"]
        # The trials' worker processes were the cluster's: their logs are in its session folder.
        assert any(Path(temp).glob("session_*/logs/worker-*"))
    finally:
        head.terminate()  # `ray start --block` stops the cluster's processes when it ends
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_over_seeds_ranks_points_by_their_mean_paired_by_seed(ray_cluster, tmp_path, tiny_dir, capsys):
    from scipy.stats import ttest_rel

    out = tmp_path / "sweep"
    # Two random points, each trained with seeds 3 and 5: four trials, two at a time.
    argv = ["sweep", "softmax", "--param", "lr=loguniform:0.001:0.5", "--samples", "2", "--seeds", "3,5",
            "--param", "optimizer=sgd", "--epochs", "2", "--out", str(out), *_data_args(tiny_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith(("[1/4]", "[2/4]", "[3/4]", "[4/4]")) for line in printed.splitlines()) == 4
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board) == {"metric", "seeds", "best", "points", "trials", "cluster"} and board["seeds"] == [3, 5]
    assert all(set(t) == TRIAL_KEYS | {"point", "seed"} for t in board["trials"])

    data = fmnist.load_dataset(tiny_dir, dataset="custom")
    points = board["points"]
    assert [p["point"] for p in sorted(points, key=lambda p: p["point"])] == [1, 2]
    # A point's seeds share its drawn values and differ by their training seed only; the points differ.
    lrs = []
    for point in points:
        runs = point["runs"]
        assert [r["seed"] for r in runs] == [3, 5] and point["status"] == "finished"
        scores = []
        for run in runs:
            config = load_run(run["run_dir"]).info["config"]
            assert config["seed"] == run["seed"] and config["lr"] == point["params"]["lr"]
            again = evaluate_run(run["run_dir"], data, split="val")
            assert again["accuracy"] == pytest.approx(run["val_accuracy"])
            scores.append(again["accuracy"])
        assert point["val_accuracy"] == pytest.approx(sum(scores) / 2)
        assert point["val_accuracy_sd"] == pytest.approx(abs(scores[0] - scores[1]) / 2 ** 0.5)
        lrs.append(point["params"]["lr"])
    assert lrs[0] != lrs[1]
    lead, other = points
    assert lead["val_accuracy"] >= other["val_accuracy"] and lead["val_gap"] is None
    gaps = [a["val_accuracy"] - b["val_accuracy"] for a, b in zip(lead["runs"], other["runs"])]
    assert other["val_gap"] == pytest.approx(sum(gaps) / 2)
    if gaps[0] != gaps[1]:
        p_value = ttest_rel([r["val_accuracy"] for r in lead["runs"]], [r["val_accuracy"] for r in other["runs"]])[1]
        assert other["beyond_noise"] == bool(p_value < 0.05)
    # The trials, best point first, each point's seeds in order.
    assert [(t["point"], t["seed"]) for t in board["trials"]] == [(lead["point"], 3), (lead["point"], 5),
                                                                   (other["point"], 3), (other["point"], 5)]
    # Only the best point is scored on t10k, over its seeds' runs.
    best = board["best"]
    assert best["point"] == lead["point"] and best["run_dir"] == lead["runs"][0]["run_dir"]
    tests = [evaluate_run(r["run_dir"], data, split="test")["accuracy"] for r in lead["runs"]]
    assert [r["test_accuracy"] for r in best["runs"]] == pytest.approx(tests)
    assert best["test_accuracy"] == pytest.approx(sum(tests) / 2)
    table = printed.split("ranked by the mean val_accuracy over seeds 3, 5")[0]
    assert f"#1 point {lead['point']} " in table and f"#2 point {other['point']} " in table
    md = (out / "leaderboard.md").read_text()
    assert "gap to #1" in md and "over seeds 3, 5" in md

    # fmnist report shows the points and their trials.
    assert main(["report", str(out), "--out", str(tmp_path / "report"), *_data_args(tiny_dir)]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    section = page.split('id="leaderboard"')[1].split("</section>")[0]
    assert section.count("<tr><td>") == 6 and "beyond noise" in section


def test_the_points_table_is_one_set_of_cells_in_markdown_and_in_the_report():
    from fmnist.reporting.report import _sweep_leaderboard_html
    from fmnist.tuning.sweep import SweepPlan, format_markdown, point_table

    def point(n, lr, mean, sd, gap=None, se=None, noise=None, status="done", epochs=3, error=None):
        runs = [{"run_dir": f"trials/p{n}-s{s}", "val_accuracy": mean, "test_accuracy": None} for s in (1, 2)]
        return {"point": n, "params": {"lr": lr}, "status": status, "runs": runs, "epochs": epochs, "time_s": 12.25,
                "val_accuracy": mean, "val_accuracy_sd": sd, "val_gap": gap, "val_gap_se": se,
                "beyond_noise": noise, "error": error}

    points = [point(2, 0.01, 0.8512, 0.0021), point(1, 0.1, 0.8101, 0.0032, -0.0411, 0.0020, True, epochs=2.5),
              point(3, 1.0, None, None, status="failed", epochs=None, error="diverged")]
    board = {"metric": "val_accuracy", "seeds": [1, 2], "points": points, "trials": [], "best": None,
             "cluster": {"nodes": 1, "cpus": 2, "address": "local"}}
    head, rows = point_table(board, ["lr"])
    assert head[:3] == ["rank", "point", "lr"] and len(rows) == 3
    assert rows[0] == ["1", "2", "0.01", "done", "2", "3", "12.2", "0.8512 ± 0.0021", "–", "–"]
    assert rows[1] == ["2", "1", "0.1", "done", "2", "2.5", "12.2", "0.8101 ± 0.0032", "-0.0411 ± 0.0020", "yes"]
    assert rows[2][0] == "–" and rows[2][7] == "–"  # a failed point has no rank and no score
    plan = SweepPlan(model="softmax", params=("lr=0.01,0.1,1.0",), samples=1, scheduler="fifo",
                     metric="val_accuracy", epochs=3, cpus_per_trial=1, seed=None, seeds=(1, 2))
    md = format_markdown(board, plan)
    page = _sweep_leaderboard_html(board, ["lr"])
    for row in rows:
        assert "| " + " | ".join(row) + " |" in md
        for cell in row:
            assert cell in page
    assert '<td class="num"><b>0.8101 ± 0.0032</b></td>' in page and "<td>diverged</td>" in page


def test_ctrl_c_before_the_sweep_started_offers_no_resume(tmp_path, tiny_dir, capsys, monkeypatch):
    import importlib

    sweep_module = importlib.import_module("fmnist.tuning.sweep")  # the package's name sweep is the function

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "require_ray", interrupted)
    out = tmp_path / "s"
    assert main(["sweep", "softmax", "--param", "lr=0.1", "--epochs", "1", "--out", str(out), "--data-dir",
                 str(tiny_dir), "--dataset", "custom"]) == 130
    err = capsys.readouterr().err
    assert err.endswith("fmnist: interrupted; before the sweep started: nothing to resume; start it again\n"), err
    assert not out.exists()


def test_a_taken_out_dir_is_refused_in_the_callers_words(tmp_path, tiny_data):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    with pytest.raises(UsageError) as exc:
        fmnist.sweep("softmax", {"lr": [0.01]}, tiny_data, out_dir=out)
    assert str(exc.value) == (f"out_dir={str(out)!r}: a sweep is there already; continue it with "
                              f"resume_sweep({str(out)!r}), or choose another out_dir")
    assert exc.value.cli_message == (f"--out {out}: a sweep is there already; continue it with 'fmnist sweep "
                                     f"--resume {out}', or choose another --out")
