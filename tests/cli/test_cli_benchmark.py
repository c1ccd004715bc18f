"""`fmnist benchmark classical` end to end on tiny data and a local Ray: output, files, usage errors."""

import json

import pytest

from fmnist.cli.main import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, fragment", [
    (["--families", "GaussianNB,Nope"], "--families: unknown family 'Nope'"),
    (["--cpus-per-task", "0"], "--cpus-per-task must be at least 1, got 0"),
    (["--families", ","], "--families: name at least one family"),
    (["--cpus", "-1"], "--cpus -1 must be at least 1"),
    (["--quick", "--families", "GaussianNB", "--cpus-per-task", "3", "--cpus", "2"],
     "--cpus-per-task 3: the Ray cluster at"),
])
def test_bad_arguments_are_one_line_usage_errors(capsys, tiny_dir, tmp_path, argv, fragment):
    code, out, err = run(capsys, "benchmark", "classical", *argv, "--data-dir", tiny_dir, "--dataset", "custom",
                         "--out", tmp_path / "b")
    assert code == 2 and fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_quick_says_what_it_leaves_out_and_prints_published_beside_ours(capsys, ray_cluster, tiny_dir, tmp_path):
    code, out, err = run(capsys, "benchmark", "classical", "--quick", "--data-dir", tiny_dir, "--dataset", "custom",
                         "--out", tmp_path / "b")
    assert code == 0, err
    assert "--quick leaves out SVC, GaussianProcessClassifier, GradientBoostingClassifier" in out
    assert "11 configurations of 11 families, 11 to run; estimated cost" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 11 and lines[-1].startswith("[11/11] ") and " - test: " in lines[-1]
    assert "| MLPClassifier | 0.871 |" in out and "| KNeighborsClassifier | 0.854 |" in out
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert len(saved["families"]) == 11 and saved["selection"]["left_out"][0] == "SVC"
    # Again: everything is finished, nothing runs.
    code, out, _ = run(capsys, "benchmark", "classical", "--quick", "--data-dir", tiny_dir, "--dataset", "custom",
                       "--out", tmp_path / "b")
    assert code == 0 and "0 to run (11 finished before, kept)" in out and not any(
        line.startswith("[") for line in out.splitlines())


def test_the_full_grid_prints_its_estimated_cost_first(capsys, ray_cluster, tiny_dir, tmp_path):
    code, out, _ = run(capsys, "benchmark", "classical", "--families", "GaussianNB", "--data-dir", tiny_dir,
                       "--dataset", "custom", "--out", tmp_path / "b")
    first = out.splitlines()[1]
    assert code == 0 and first.startswith("1 configurations of 1 families, 1 to run; estimated cost (rough): ")
    assert "meant for a cluster: --address" in first
    # Table 3 is Fashion-MNIST's: tiny custom data is in no band, and no reason for differing is given.
    assert "| GaussianNB | 0.511 |" in out and "outside" not in out


def test_a_missing_ray_is_one_line_saying_what_to_install(capsys, tiny_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    code, out, err = run(capsys, "benchmark", "classical", "--families", "GaussianNB", "--data-dir", tiny_dir,
                         "--dataset", "custom", "--out", tmp_path / "b")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "pip install 'fmnist[sweep]'" in err and not (tmp_path / "b").exists()
