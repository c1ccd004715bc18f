"""The command line end to end on tiny data: exit codes, one-line errors, files written."""

import json
import subprocess
import sys

import pytest

from fmnist.cli.main import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_evaluate(capsys, tiny_dir, tmp_path):
    code, out, _ = run(capsys, "train", "mlp-100", "--epochs", "2", "--data-dir", tiny_dir, "--dataset", "custom",
                       "--out", tmp_path / "run")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ") and "val_accuracy: " in lines[1]
    code, out, _ = run(capsys, "evaluate", tmp_path / "run", "--split", "test", "--data-dir", tiny_dir,
                       "--dataset", "custom", "--json")
    result = json.loads(out)
    assert code == 0 and result["split"] == "test" and result["n"] == 50 and 0 <= result["accuracy"] <= 1


def test_spec_string_and_optimizer_flags(capsys, tiny_dir, tmp_path):
    code, out, _ = run(capsys, "train", "flatten,dense:16:tanh,dense:10", "--optimizer", "sgd", "--momentum", "0.9",
                       "--nesterov", "--lr", "0.05", "--epochs", "1", "--quiet", "--data-dir", tiny_dir,
                       "--dataset", "custom", "--out", tmp_path / "run")
    assert code == 0 and "Epoch" not in out
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert (config["optimizer"], config["momentum"], config["nesterov"], config["lr"]) == ("sgd", 0.9, True, 0.05)


@pytest.mark.parametrize("argv, fragment, status", [
    (["train", "no-such-model"], "unknown model 'no-such-model'", 1),
    (["train", "softmax", "--epochs", "0"], "--epochs must be at least 1", 2),
    (["train", "softmax", "--optimizer", "lion"], "unknown optimizer 'lion'", 2),
    (["train", "flatten,dense:12"], "last layer must be dense:10", 1),
    (["evaluate", "{tmp}/missing-run"], "no such run folder", 1),
])
def test_user_errors_are_one_line(capsys, tiny_dir, tmp_path, argv, fragment, status):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--data-dir", tiny_dir, "--dataset", "custom"]
    code, _, err = run(capsys, *argv)
    assert code == status
    assert err.count("\n") == 1 and err.startswith("fmnist: error: ") and fragment in err


def test_missing_data_names_places_and_remedies(capsys, tmp_path):
    code, _, err = run(capsys, "data", "--data-dir", tmp_path / "empty")
    assert code == 1 and err.count("\n") == 1 and str(tmp_path / "empty") in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "softmax", "--epochs", "many"])
    assert exc.value.code == 2
    code, _, err = run(capsys, "train")
    assert code == 2 and "needs a MODEL" in err


def test_models_lists_the_registry(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and all(name in out for name in ("sgd-logreg", "softmax", "mlp-200", "mlp-200-100"))
    code, out, _ = run(capsys, "models", "mlp-200")
    assert "Total params: 159,010" in out


def test_installed_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fmnist.cli.main", "data", "--data-dir", str(tmp_path / "x")],
                          capture_output=True, text=True, env={"FMNIST_CACHE": str(tmp_path / "c"), "PATH": ""})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_closed_pipe_is_not_a_traceback():
    # `fmnist models | head -1`: the reader is gone before the output is written.
    proc = subprocess.Popen([sys.executable, "-m", "fmnist", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141 and "Traceback" not in err
