"""The command line end to end on tiny data: exit codes, one-line errors, files written."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fmnist
from fmnist.cli.main import main
from fmnist.data import write_idx
from tests.conftest import learnable_images


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



def test_train_without_holdout_scores_only_the_test_set(capsys, tiny_dir, tmp_path):
    data = ("--data-dir", tiny_dir, "--dataset", "custom")
    code, out, _ = run(capsys, "train", "softmax", "--no-holdout", "--epochs", "1", *data, "--out", tmp_path / "run")
    assert code == 0 and "val_" not in out
    assert "test_accuracy: " in out and "trained on all training images, no validation split" in out
    code, _, err = run(capsys, "evaluate", tmp_path / "run", *data)
    assert code == 1 and "no validation split" in err and "--split test" in err
    # Refused before any data is looked for: this folder does not exist.
    code, _, err = run(capsys, "train", "mlp-100-dropout", "--no-holdout", "--data-dir", tmp_path / "none")
    assert code == 2 and "--no-holdout: early stopping (--patience 2)" in err and "--patience 0" in err
    code, _, err = run(capsys, "train", "--resume", tmp_path / "run", "--no-holdout", *data)
    assert code == 2 and "drop --no-holdout" in err

def test_spec_string_and_optimizer_flags(capsys, tiny_dir, tmp_path):
    code, out, _ = run(capsys, "train", "flatten,dense:16:tanh,dense:10", "--optimizer", "sgd", "--momentum", "0.9",
                       "--nesterov", "--lr", "0.05", "--epochs", "1", "--quiet", "--data-dir", tiny_dir,
                       "--dataset", "custom", "--out", tmp_path / "run")
    assert code == 0 and "Epoch" not in out
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert (config["optimizer"], config["momentum"], config["nesterov"], config["lr"]) == ("sgd", 0.9, True, 0.05)


@pytest.mark.parametrize("argv, fragment", [
    (["evaluate", "{tmp}/missing-run"], "no such run folder"),
    (["train", "flatten,dense:12", "--out", "{tmp}/r"],
     "flatten,dense:12: ends in dense:12, and the data has 10 classes; end it in dense:10"),
])
def test_user_errors_are_one_line(capsys, tiny_dir, tmp_path, argv, fragment):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--data-dir", tiny_dir, "--dataset", "custom"]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("fmnist: error: ") and fragment in err


@pytest.mark.parametrize("argv, fragment", [
    (["train", "no-such-model"], "MODEL: unknown model 'no-such-model'"),
    (["train", "flatten,relu"], "MODEL: spec 'flatten,relu': unknown layer type 'relu'"),
    (["train", "softmax", "--out", ""], "--out: an empty path; name a file or folder"),
    (["evaluate", ""], "run_dir: an empty path"),
    (["train", "softmax", "--exclude", ""], "--exclude: an empty path; name a file or folder"),
    (["evaluate", "run", "--exclude", ""], "--exclude: an empty path; name a file or folder"),
    (["train", "conv:32"], "MODEL: layer 'conv' needs 'kernel'"),
    (["models", "no-such-model"], "MODEL: unknown model"),
    (["compare", "softmax", "nope"], "MODEL: unknown model 'nope'"),
    (["train", "softmax", "--epochs", "abc"], "--epochs: invalid int value 'abc'"),
    (["train", "softmax", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "softmax", "--optimizer", "lion"], "--optimizer: unknown optimizer 'lion'"),
    (["train", "sgd-logreg", "--optimizer", "adam"], "--optimizer adam: sgd-logreg is a scikit-learn model"),
    (["train", "sgd-logreg", "--epochs", "3", "--lr", "0.1"], "--epochs 3, --lr 0.1: sgd-logreg"),
    (["train", "sgd-logreg", "--checkpoint"], "--checkpoint: sgd-logreg is a scikit-learn model"),
    (["train", "softmax", "--optimizer", "adam", "--momentum", "0.9"], "--momentum 0.9: adam has no momentum"),
    (["train", "softmax", "--optimizer", "adagrad", "--momentum", "0.5"], "--momentum 0.5: adagrad has no"),
    (["train", "softmax", "--lr-gamma", "0.5"], "--lr-gamma 0.5 applies to --schedule step only"),
    (["train", "mlp-best", "--schedule", "none", "--pct-start", "0.2"], "--pct-start 0.2 applies to --schedule"),
    (["predict", "{tmp}/run", "{tmp}/x.npy", "--top-k", "0"], "--top-k must be at least 1, got 0"),
    (["evaluate", "{tmp}/run", "--split", "holdout"], "--split: invalid choice: 'holdout'"),
    (["train", "--resume", "{tmp}/run", "--overwrite"], "drop --overwrite"),
    (["predict", "{tmp}/run", "{tmp}/x.npy", "--data-dir", "d"], "unrecognized arguments: --data-dir d"),
    (["evaluate", "{tmp}/run", "--debug"], "(--debug goes before the command: fmnist --debug evaluate ...)"),
])
def test_usage_errors_are_one_line_exit_2(capsys, tiny_dir, tmp_path, argv, fragment):
    """No usage block, no traceback: `fmnist CMD: error: WHAT (see fmnist CMD --help)`, exit 2."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("train", "compare", "evaluate"):
        argv += ["--data-dir", str(tiny_dir), "--dataset", "custom"]
    if argv[0] == "predict":
        run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run", "--data-dir", tiny_dir,
            "--dataset", "custom")
        np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    code, _, err = run(capsys, *argv)
    command = f"fmnist {argv[0]}"
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"{command}: error: ") and fragment in err, err
    assert err.endswith(f"(see {command} --help)\n") and "usage:" not in err
    assert not re.search(r"\w=", err)  # the command line's words (--top-k 0), not Python's (top_k=0)


def test_missing_data_names_places_and_remedies(capsys, tmp_path):
    code, _, err = run(capsys, "data", "--data-dir", tmp_path / "empty")
    assert code == 1 and err.count("\n") == 1 and str(tmp_path / "empty") in err
    (tmp_path / "file").write_text("not a folder")
    code, _, err = run(capsys, "data", "--data-dir", tmp_path / "file")
    assert code == 1 and f"{tmp_path / 'file'} (--data-dir): a file, not a folder" in err
    # Said in the command line's words: --data-dir and --fetch, not data_dir / fetch=True.
    assert "--data-dir" in err and "--fetch" in err and "fetch=True" not in err and "data_dir" not in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "train", "softmax", "--epochs", "many")
    assert code == 2 and err == "fmnist train: error: --epochs: invalid int value 'many' (see fmnist train --help)\n"
    code, _, err = run(capsys, "train")
    assert code == 2 and "needs a MODEL" in err
    code, _, err = run(capsys, "--bogus")
    assert code == 2 and err == "fmnist: error: unrecognized arguments: --bogus; a COMMAND is required (see fmnist --help)\n"
    assert run(capsys, "--help")[0] == 0


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


def data_args(tiny_dir):
    return ["--data-dir", str(tiny_dir), "--dataset", "custom"]


def test_a_finished_run_is_never_replaced_without_overwrite(capsys, tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "train", "mlp-100", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))
    assert code == 1 and err.count("\n") == 1 and "already holds a finished run" in err
    assert "pass --overwrite" in err and "another --out" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not a byte changed
    code, text, _ = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, "--overwrite",
                        *data_args(tiny_dir))
    assert code == 0 and f"saved run to {out}" in text
    assert json.loads((out / "run.json").read_text())["model"] == "softmax"


def test_paths_that_are_written_are_printed_as_a_shell_reads_them(capsys, tiny_dir, tmp_path):
    out = tmp_path / "my runs" / "soft max"
    code, text, _ = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))
    assert code == 0 and f"saved run to '{out}'\n" in text
    code, text, _ = run(capsys, "export", out, "--onnx", "--out", out.parent / "model 1.onnx")
    assert code == 0 and f"wrote '{out.parent / 'model 1.onnx'}': input" in text


def test_an_interrupted_run_is_refused_with_the_way_to_resume(capsys, tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))[0] == 0
    (out / "run.json").unlink()  # as if interrupted after its last checkpoint
    code, _, err = run(capsys, "train", "softmax", "--quiet", "--out", out, *data_args(tiny_dir))
    assert code == 1 and f"interrupted run (continue it with fmnist train --resume {out})" in err
    code, _, err = run(capsys, "train", "--resume", out / "checkpoint.safetensors", "--quiet", *data_args(tiny_dir))
    assert code == 1 and err.count("\n") == 1 and f"a file of the run folder {out}; name the folder" in err
    (tmp_path / "notes.txt").write_text("")
    code, _, err = run(capsys, "train", "--resume", tmp_path / "notes.txt", "--quiet", *data_args(tiny_dir))
    assert code == 1 and "notes.txt: a file, not a run folder" in err
    code, text, _ = run(capsys, "train", "--resume", out, "--quiet", *data_args(tiny_dir))
    assert code == 0 and (out / "run.json").exists()


def test_default_outputs_get_fresh_readable_names(capsys, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for expected in ("runs/softmax", "runs/softmax-2"):
        code, out, _ = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", *data_args(tiny_dir))
        assert code == 0 and f"saved run to {expected}\n" in out
    code, out, _ = run(capsys, "train", "flatten,dense:16:tanh,dense:10", "--epochs", "1", "--quiet",
                       *data_args(tiny_dir))
    assert code == 0 and "saved run to runs/flatten-dense-16-tanh-dense-10\n" in out
    assert all((tmp_path / "runs" / name / "run.json").exists()
               for name in ("softmax", "softmax-2", "flatten-dense-16-tanh-dense-10"))
    # A command that fails leaves no empty folder behind to push the next run to NAME-3.
    code, _, _ = run(capsys, "train", "softmax", "--device", "cuda:99", "--quiet", *data_args(tiny_dir))
    assert code == 2 and not (tmp_path / "runs" / "softmax-3").exists()


def _command_line(capsys, tiny_dir, tmp_path, argv) -> list[str]:
    """``argv`` with {tmp} filled in and the tiny data's options; a trained run at {tmp}/run and
    an image at {tmp}/shoe.npy where it names them."""
    if "{tmp}/run" in argv:
        run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run", *data_args(tiny_dir))
        np.save(tmp_path / "shoe.npy", np.zeros((28, 28), np.uint8))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    return argv + (data_args(tiny_dir) if argv[0] not in ("export", "predict") else [])


@pytest.mark.parametrize("argv, precious", [
    (["explore", "--out", "{tmp}/out"], "out/samples.png"),
    (["compare", "softmax", "--out", "{tmp}/out"], "out/leaderboard.json"),
    (["compare", "softmax", "--out", "{tmp}/out"], "out/runs/softmax/notes.txt"),
    (["reproduce", "--out", "{tmp}/out"], "out/results.md"),
    (["report", "{tmp}/run", "--out", "{tmp}/out"], "out/report.html"),
    (["export", "{tmp}/run", "--onnx", "--out", "{tmp}/out/model.onnx"], "out/model.onnx"),
    (["predict", "{tmp}/run", "{tmp}/shoe.npy", "--plot", "{tmp}/out"], "out/shoe-proba.png"),
    (["predict", "{tmp}/run", "{tmp}/shoe.npy", "--save-preprocessed", "{tmp}/out"], "out/shoe.png"),
])
def test_every_command_refuses_to_replace_earlier_output(capsys, tiny_dir, tmp_path, argv, precious):
    """Checked before any work: one line naming the file and --overwrite, exit 1, nothing touched."""
    argv = _command_line(capsys, tiny_dir, tmp_path, argv)
    (tmp_path / precious).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / precious).write_text("someone's work")
    code, out, err = run(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and err.startswith("fmnist: error: ") and "--overwrite" in err, err
    assert (tmp_path / precious).read_text() == "someone's work"
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == [tmp_path / precious]  # nothing else written
    if argv[0] == "predict":  # with --overwrite the files are written, and the command says where
        code, out, _ = run(capsys, *argv, "--overwrite")
        assert code == 0 and f"wrote 1 {'probability chart' if '--plot' in argv else 'preprocessed 28x28 image'} " \
                             f"to {tmp_path / 'out'}" in out


@pytest.mark.parametrize("argv, option", [
    (["train", "softmax", "--out", "{tmp}/afile/run"], "--out"),
    (["train", "sgd-logreg", "--out", "{tmp}/afile/run"], "--out"),
    (["explore", "--out", "{tmp}/afile"], "--out"),
    (["compare", "softmax", "--out", "{tmp}/afile"], "--out"),
    (["reproduce", "--out", "{tmp}/afile"], "--out"),
    (["report", "{tmp}/run", "--out", "{tmp}/afile/report"], "--out"),
    (["export", "{tmp}/run", "--onnx", "--out", "{tmp}/afile/model.onnx"], "--out"),
    (["export", "{tmp}/run", "--onnx", "--out", "{tmp}/folder"], "--out"),
    (["predict", "{tmp}/run", "{tmp}/shoe.npy", "--plot", "{tmp}/afile"], "--plot"),
])
def test_every_command_refuses_a_place_it_cannot_write_before_any_work(capsys, tiny_dir, tmp_path, argv, option):
    """An output under a file (or a folder where a file goes): one line naming the option, exit 1, no training."""
    argv = _command_line(capsys, tiny_dir, tmp_path, argv)
    (tmp_path / "afile").write_text("someone's notes")
    (tmp_path / "folder").mkdir()
    code, out, err = run(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and err.startswith("fmnist: error: ") and option in err, err
    assert "Epoch" not in out and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "someone's notes" and not any((tmp_path / "folder").iterdir())


def test_a_file_system_error_during_work_is_one_line(capsys, tiny_dir, tmp_path, monkeypatch):
    from fmnist import runs

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "model.json"))

    monkeypatch.setattr(runs, "save_run", full)
    code, _, err = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run",
                       *data_args(tiny_dir))
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"fmnist: error: {tmp_path / 'run' / 'model.json'}: No space left on device"), err


def test_every_training_setting_is_a_train_option_and_an_estimator_parameter():
    import dataclasses
    import inspect

    from fmnist.cli.main import _TRAIN_KEYS
    from fmnist.estimators import _TRAIN_PARAMS, NetClassifier
    from fmnist.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(_TRAIN_KEYS) == fields
    # The estimator takes device as its own parameter; threads are the machine's, not the model's.
    assert set(_TRAIN_PARAMS) == fields - {"device", "threads"}
    assert set(_TRAIN_PARAMS) <= set(inspect.signature(NetClassifier).parameters)


@pytest.mark.parametrize("precision", ["bfloat16", "auto"])
@pytest.mark.parametrize("native", [True, False])
def test_precision_without_hardware_bfloat16(capsys, tiny_dir, tmp_path, monkeypatch, native, precision):
    # An explicit bfloat16 is honoured, with a note where it is emulated; auto takes float32 there.
    from fmnist.training import loop

    monkeypatch.setattr(loop, "bfloat16_native", lambda device: native)
    code, _, err = run(capsys, "train", "conv:4:3,maxpool:2,flatten,dense:10", "--precision", precision,
                       "--epochs", "1", "--quiet", "--data-dir", tiny_dir, "--dataset", "custom",
                       "--out", tmp_path / "run")
    assert code == 0
    assert ("no bfloat16 arithmetic in hardware" in err) is (precision == "bfloat16" and not native)
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config["precision"] == ("bfloat16" if native or precision == "bfloat16" else "float32")


def _custom_data(folder, y_train, y_test=None):
    folder.mkdir()
    y_test = y_train if y_test is None else y_test
    for part, y in (("train", y_train), ("t10k", y_test)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", learnable_images(np.asarray(y), 3))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.asarray(y, np.uint8))
    return ["--data-dir", str(folder), "--dataset", "custom"]


def test_data_with_fewer_classes_than_outputs_trains_saves_and_scores(capsys, tmp_path):
    data = _custom_data(tmp_path / "two", np.arange(60) % 2)
    code, _, err = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run", *data)
    assert code == 0, err
    names = json.loads((tmp_path / "run" / "model.json").read_text())["class_names"]
    assert names == [str(i) for i in range(10)]
    code, out, err = run(capsys, "evaluate", tmp_path / "run", "--split", "test", *data)
    assert code == 0 and "accuracy" in out, err


def test_data_with_more_classes_than_a_presets_outputs_gets_an_output_for_each(capsys, tmp_path):
    data = _custom_data(tmp_path / "fifteen", np.arange(150) % 15)
    code, _, err = run(capsys, "train", "mlp-200", "--epochs", "1", "--quiet", "--out", tmp_path / "run", *data)
    assert code == 0, err
    model = fmnist.load_model(tmp_path / "run")
    assert model.spec.num_classes == 15 and model.spec.layers[-1]["units"] == 15
    assert json.loads((tmp_path / "run" / "model.json").read_text())["class_names"] == [str(i) for i in range(15)]
    code, out, err = run(capsys, "evaluate", tmp_path / "run", *data)
    assert code == 0 and "accuracy" in out, err
    code, _, err = run(capsys, "audit", "--model", "mlp-200", "--folds", "2", "--epochs", "1", "--out",
                       tmp_path / "audit", *data)
    assert code == 0, err


def test_too_little_data_or_labels_past_the_model_are_one_line(capsys, tmp_path, tiny_dir):
    one = _custom_data(tmp_path / "one", [3])
    empty = _custom_data(tmp_path / "empty", np.zeros(0, np.uint8), [1, 2])
    for argv, words in ((["train", "softmax", "--out", tmp_path / "r1", *one], "too few to hold out"),
                        (["reproduce", "--out", tmp_path / "r2", *one], "too few for 5-fold"),
                        (["explore", "--out", tmp_path / "r3", *empty], "holds no images; the train set")):
        code, _, err = run(capsys, *argv)
        assert code == 1 and err.count("\n") == 1 and words in err, err
    run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run", *data_args(tiny_dir))
    twenty = _custom_data(tmp_path / "twenty", np.arange(40) % 20)
    code, _, err = run(capsys, "evaluate", tmp_path / "run", "--split", "test", *twenty)
    assert code == 1 and err.count("\n") == 1 and "labels 0..19 for a model of 10 classes" in err, err


@pytest.mark.parametrize("argv, fragment", [
    (["train", "softmax", "--seed", "-1"], "--seed: expected a whole number from 0 to 4294967295"),
    (["train", "sgd-logreg", "--seed", "99999999999999999999"], "--seed: expected a whole number from 0"),
    (["compare", "softmax", "mlp-100", "--seeds", "1,-2"], "--seeds: expected seeds from 0 to 4294967295"),
    (["compare", "softmax", "mlp-100", "--seeds", "-1,2"], "(a value starting with '-' is written --seeds=-1,2)"),
    (["train", "softmax", "--lr", "inf"], "--lr must be a positive number, got inf"),
    (["train", "mlp-100", "--threads", "100000"], "--threads 100000: this process may use "),
    (["models", "flatten,dense:100:softmax,dense:10"], "layer 2 (dense:100:softmax): softmax only ends a network"),
])
def test_out_of_range_settings_are_usage_errors(capsys, tiny_dir, tmp_path, argv, fragment):
    if argv[0] != "models":
        argv = [*argv, "--out", str(tmp_path / "out"), *data_args(tiny_dir)]
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("other", ["fashion-mnist", "same kind and size"])
def test_a_runs_own_split_is_scored_only_on_its_own_data(capsys, tiny_dir, tmp_path, monkeypatch, other):
    run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run", *data_args(tiny_dir))
    own = fmnist.load_dataset(tiny_dir, dataset="custom")
    if other == "fashion-mnist":  # as if Fashion-MNIST were found by default
        given = dataclasses.replace(own, dataset="fashion-mnist", x_train=own.x_train[::-1].copy())
    else:  # other custom data of the same size: its "validation split" would be images the run never held out
        given = dataclasses.replace(own, x_train=np.roll(own.x_train, 1, axis=2))
    monkeypatch.setattr("fmnist.cli.main._load", lambda args: given)
    for command in (["evaluate", tmp_path / "run"], ["report", tmp_path / "run", "--split", "val",
                                                     "--out", tmp_path / "report"]):
        code, _, err = run(capsys, *command)
        assert code == 1 and err.count("\n") == 1, err
        assert f"--dataset custom --data-dir {tiny_dir}" in err and "val split is not there" in err
    assert not (tmp_path / "report").exists()
    code, out, err = run(capsys, "evaluate", tmp_path / "run", "--split", "test")  # another test set: fair
    assert code == 0 and "on test (50 images)" in out, err


def test_a_terminal_without_utf8_gets_its_tables_and_files(tiny_dir, tmp_path):
    # LC_ALL=C with Python's UTF-8 fallbacks off: stdout is ASCII. The leaderboard's dashes
    # (a linear model has no optimizer: "–") are replaced on the terminal, and leaderboard.md is
    # UTF-8 whatever the locale.
    env = {**os.environ, "LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
           "FMNIST_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "fmnist", "compare", "sgd-logreg", "softmax", "--epochs", "1", "--quiet",
                           "--out",
                           str(out), "--dataset", "custom", "--data-dir", str(tiny_dir)],
                          env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert any(ord(c) > 127 for c in (out / "leaderboard.md").read_text(encoding="utf-8"))
    assert b"?" in proc.stdout and b"Traceback" not in proc.stderr


def test_ctrl_c_in_a_replacing_run_says_the_earlier_run_is_back(capsys, tiny_dir, tmp_path, monkeypatch):
    from fmnist.training import Trainer

    out = tmp_path / "run"
    assert run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))[0] == 0
    before = (out / "weights.safetensors").read_bytes()
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run(capsys, "train", "mlp-100", "--epochs", "1", "--quiet", "--out", out, "--overwrite",
                       *data_args(tiny_dir))
    assert code == 130 and f"interrupted; {out} holds the earlier run as it was (the replacement is discarded)" in err
    assert (out / "weights.safetensors").read_bytes() == before


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:99"])
def test_a_device_torch_names_but_fmnist_cannot_train_on_is_one_line_before_the_data(capsys, tmp_path, device):
    missing = tmp_path / "no-data"  # the device is refused before the data is looked for
    code, _, err = run(capsys, "train", "softmax", "--device", device, "--quiet", "--out", tmp_path / "r",
                       "--data-dir", missing, "--dataset", "custom")
    assert code == 2 and err.count("\n") == 1 and f"--device {device}:" in err, err
    assert not (tmp_path / "r").exists()


def test_a_layer_string_ends_in_one_output_per_class_of_the_data(capsys, tmp_path):
    from fmnist.data import write_idx
    from tests.conftest import learnable_images

    y_train, y_test = np.arange(120) % 12, np.arange(24) % 12  # 12 classes
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", learnable_images(y_train % 10, 0))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", learnable_images(y_test % 10, 1))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_test.astype(np.uint8))
    data = ["--dataset", "custom", "--data-dir", tmp_path]
    for spec in ("flatten,dense:12", "flatten,dense:10"):  # dense:10 is widened, as the presets are
        code, _, err = run(capsys, "train", spec, "--epochs", "1", "--quiet", "--out", tmp_path / spec, *data)
        assert code == 0, err
        assert json.loads((tmp_path / spec / "model.json").read_text())["spec"]["num_classes"] == 12


def test_evaluating_on_other_data_says_which_data(capsys, tiny_dir, tmp_path):
    from fmnist.data import write_idx
    from tests.conftest import learnable_images

    other = tmp_path / "other"
    other.mkdir()
    for split, n, seed in (("train", 200, 5), ("t10k", 50, 6)):
        labels = np.arange(n) % 10
        write_idx(other / f"{split}-images-idx3-ubyte.gz", 255 - learnable_images(labels, seed))
        write_idx(other / f"{split}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    out = tmp_path / "run"
    assert run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))[0] == 0
    code, text, err = run(capsys, "evaluate", out, "--split", "test", "--dataset", "custom", "--data-dir", other)
    assert code == 0 and f"note: test set of custom data from {other}, not the data the run trained on " \
                         f"(custom from {tiny_dir})" in err
    code, text, _ = run(capsys, "evaluate", out, "--split", "test", "--json", "--dataset", "custom", "--data-dir", other)
    assert json.loads(text)["other_data"]["trained_on"]["source"] == str(tiny_dir)
    code, text, err = run(capsys, "evaluate", out, "--split", "test", "--json", *data_args(tiny_dir))
    assert "other_data" not in json.loads(text) and "note:" not in err


def test_ctrl_c_in_resuming_a_killed_replacement_names_the_run_it_replaces(capsys, tiny_dir, tmp_path, monkeypatch):
    from fmnist.training import Callback, Trainer
    from tests.test_runs import _dead_pid

    class Killed(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    new, out = tmp_path / "new", tmp_path / "run"
    monkeypatch.setattr(Trainer, "__init__", lambda self, model, config=None, callbacks=(), init=Trainer.__init__:
                        init(self, model, config, [*callbacks, Killed()]))
    assert run(capsys, "train", "softmax", "--epochs", "3", "--quiet", "--out", new, *data_args(tiny_dir))[0] == 130
    monkeypatch.undo()
    assert run(capsys, "train", "mlp-100", "--epochs", "1", "--quiet", "--out", out, *data_args(tiny_dir))[0] == 0
    aside = out / f".replaced.{_dead_pid()}"  # as a kill -9 of train --overwrite leaves it after an epoch
    aside.mkdir()
    for path in list(out.iterdir()):
        if path.is_file():
            path.rename(aside / path.name)
    (out / "checkpoint.safetensors").write_bytes((new / "checkpoint.safetensors").read_bytes())
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run(capsys, "train", "--resume", out, "--quiet", *data_args(tiny_dir))
    assert code == 130 and f"continue with: fmnist train --resume {out}" in err
    assert f"was replacing the run kept in {aside}" in err
