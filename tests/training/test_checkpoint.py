"""Checkpoints: one atomic safetensors file, loadable without pickle; interrupt -> resume gives
the uninterrupted run's weights exactly (CPU)."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors import safe_open

import fmnist.training.checkpoint as ckpt_mod
from fmnist.cli.main import main
from fmnist.errors import RunError, TrainingError
from fmnist.models import create_model
from fmnist.models.io import load_model
from fmnist.runs import load_checkpoint_model, resume_run, train_run
from fmnist.training import Callback, TrainConfig, Trainer
from fmnist.training.callbacks import EarlyStopping, ModelCheckpoint
from fmnist.training.checkpoint import decode, encode, load_checkpoint, save_checkpoint
from tests.conftest import learnable_images

MODEL = "flatten,dense:32:relu,dropout:0.3,dense:10"
# Everything random that a resume must restore: dropout (global RNG), shuffling, augmentation,
# Adam's moments and step counts, the per-step schedule, early stopping's best weights.
CONFIG = {"epochs": 4, "batch_size": 32, "optimizer": "adam", "schedule": "onecycle", "patience": 3,
              "shift": 2, "flip": True, "erase": 0.3, "seed": 5}


def test_encode_decode_round_trip_keeps_types():
    state = {"a": torch.arange(3), "nested": {0: {"t": torch.ones(2)}, 1: "x"}, "tup": (0.9, 0.999),
             "list": [1, None, True, torch.zeros(1, dtype=torch.uint8)], "__odd": 1.5}
    tensors = {}
    header = encode(state, "s", tensors)
    json.dumps(header)  # the header is plain JSON
    back = decode(json.loads(json.dumps(header)), tensors)
    assert set(back["nested"]) == {0, 1} and back["tup"] == (0.9, 0.999) and back["__odd"] == 1.5
    assert torch.equal(back["a"], state["a"]) and back["list"][3].dtype == torch.uint8


def test_checkpoint_file_is_safetensors_with_a_json_header(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"epoch": 3, "w": torch.ones(2, 2)})
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["format"] == "fmnist-checkpoint"
        assert json.loads(f.metadata()["fmnist"])["epoch"] == 3
    assert load_checkpoint(path)["w"].shape == (2, 2)


def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "save_file", half_written)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no temporary left behind


def _disk_full(tensors, filename, metadata=None):
    """safetensors' save_file on a full disk: part of the file written, then its own error type."""
    from safetensors import SafetensorError

    with open(filename, "wb") as f:
        f.write(b"\x00" * 10)
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_a_full_disk_is_the_os_error_it_is_naming_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    monkeypatch.setattr(ckpt_mod, "save_file", _disk_full)
    with pytest.raises(OSError) as info:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert info.value.errno == 28 and info.value.filename == str(path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]


def test_cli_reports_a_full_disk_in_one_line(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ckpt_mod, "save_file", _disk_full)
    code = main(["train", "flatten,dense:8:relu,dense:10", "--epochs", "1", "--quiet", "--data-dir", str(tiny_dir),
                 "--dataset", "custom", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith(f"fmnist: error: {tmp_path / 'r' / 'checkpoint.safetensors'}: No space left on device")


def test_foreign_or_corrupt_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "checkpoint.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        load_checkpoint(bad)
    from safetensors.torch import save_file
    save_file({"x": torch.ones(1)}, str(bad))
    with pytest.raises(TrainingError, match="not an fmnist checkpoint"):
        load_checkpoint(bad)


def test_a_checkpoint_whose_tensors_changed_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"epoch": 3, "w": torch.arange(6.0),
                                                        "h": torch.ones(2, dtype=torch.bfloat16)})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor's bytes: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match=r"c\.safetensors: its tensors changed after it was written"):
        load_checkpoint(path)
    # A checkpoint without the digest (written before it was recorded) is read as it is.
    from safetensors.torch import save_file
    tensors = {}
    header = encode({"epoch": 3, "w": torch.ones(2)}, "s", tensors)
    save_file(tensors, str(path), metadata={"format": "fmnist-checkpoint", "format_version": "1",
                                            "fmnist": json.dumps(header)})
    assert load_checkpoint(path)["epoch"] == 3


class Interrupt(Callback):
    """Raises KeyboardInterrupt at (epoch, batch); batch 0 means at the start of the epoch."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, trainer, epoch):
        if (epoch, 0) == (self.epoch, self.batch):
            raise KeyboardInterrupt

    def on_batch_end(self, trainer, batch, num_batches):
        if (trainer.epoch, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


@pytest.mark.parametrize("epoch, batch", [(3, 0), (3, 2)], ids=["after-epoch-2", "inside-epoch-3"])
def test_interrupt_then_resume_equals_uninterrupted_run(tiny_data, tmp_path, epoch, batch):
    full = train_run(MODEL, tiny_data, config=TrainConfig(**CONFIG), out_dir=tmp_path / "full", checkpoint_best=True)
    run_dir = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_run(MODEL, tiny_data, config=TrainConfig(**CONFIG), out_dir=run_dir,
                  callbacks=[Interrupt(epoch, batch)], checkpoint_best=True)
    assert not (run_dir / "run.json").exists()  # not a finished run
    assert load_checkpoint(run_dir / "checkpoint.safetensors")["epoch"] == 2
    resumed = resume_run(run_dir, tiny_data)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in e.items() if k != "time"} for e in h]
    assert strip(full.history) == strip(resumed.history) and len(resumed.history) == 4
    assert resumed.metrics["val"] == full.metrics["val"]
    # The finished folder is a normal run: it loads in isolation and predicts like the run's model.
    loaded = load_model(run_dir)
    assert all(torch.equal(v, b[k]) for k, v in loaded.state_dict().items())
    best = load_checkpoint(run_dir / "best.safetensors")
    full_best = load_checkpoint(tmp_path / "full" / "best.safetensors")
    assert best["epoch"] == full_best["epoch"]
    assert all(torch.equal(best["model"][k], full_best["model"][k]) for k in a)
    best_model = load_checkpoint_model(run_dir / "best.safetensors")
    assert not best_model.training and all(torch.equal(v, best["model"][k]) for k, v in best_model.state_dict().items())


def test_resume_refuses_finished_missing_and_other_data(tiny_data, tmp_path):
    train_run(MODEL, tiny_data, config=TrainConfig(epochs=1), out_dir=tmp_path / "done")
    with pytest.raises(RunError, match="finished already"):
        resume_run(tmp_path / "done", tiny_data)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint.safetensors"):
        resume_run(tmp_path / "empty", tiny_data)
    (tmp_path / "done" / "run.json").unlink()
    other = type(tiny_data)(**{**tiny_data.__dict__, "x_train": 255 - tiny_data.x_train})
    with pytest.raises(RunError) as refused:
        resume_run(tmp_path / "done", other)
    # It names the data the run trained on, in the words that load it.
    source = str(tiny_data.source)
    assert f"other data (custom, {source}); resume it with its own: load_dataset({source!r}, dataset='custom')" \
        in str(refused.value)
    assert f"--dataset custom --data-dir {source}" in refused.value.cli_message


def test_cli_ctrl_c_says_how_to_resume_and_resume_finishes_the_run(tiny_dir, tmp_path, monkeypatch, capsys):
    data = ["--data-dir", str(tiny_dir), "--dataset", "custom"]
    args = ["train", MODEL, "--epochs", "3", "--optimizer", "adam", "--flip", "--quiet", *data]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    calls = {"n": 0}
    real = Trainer.run_epoch

    def interrupted_in_epoch_2(self, xs, ys):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, xs, ys)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted_in_epoch_2)
    out = tmp_path / "cut"
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    # The data options are part of the command: a resume checks that it has the run's data.
    assert err.count("\n") == 0 and "checkpoint.safetensors" in err
    assert err.endswith(f"continue with: fmnist train --resume {out} --dataset custom --data-dir {tiny_dir}")
    monkeypatch.setattr(Trainer, "run_epoch", real)
    assert main(["train", "--resume", str(out), "--lr", "0.1", *data]) == 2  # its own config only
    assert "drop --lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--quiet", *data]) == 0
    a, b = load_model(tmp_path / "full").state_dict(), load_model(out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_termination_stops_a_run_as_ctrl_c_does(tiny_dir, tmp_path, monkeypatch, capsys, signum):
    # timeout, kill, a batch scheduler (SIGTERM) or a closed terminal (SIGHUP): the same
    # checkpoint, message and resume hint as Ctrl-C, not a process ended mid-write with no word.
    real = Trainer.run_epoch
    calls = {"n": 0}

    def signalled_in_epoch_2(self, xs, ys):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signum)
        return real(self, xs, ys)

    monkeypatch.setattr(Trainer, "run_epoch", signalled_in_epoch_2)
    before = signal.getsignal(signum)
    out = tmp_path / "my runs" / "cut"
    assert main(["train", MODEL, "--epochs", "3", "--quiet", "--out", str(out), "--data-dir", str(tiny_dir),
                 "--dataset", "custom"]) == 128 + signum
    assert f"continue with: fmnist train --resume '{out}'" in capsys.readouterr().err  # as a shell reads it
    assert (out / "checkpoint.safetensors").exists() and not (out / "run.json").exists()
    assert signal.getsignal(signum) == before  # the process's own handler is put back


def test_cli_reports_divergence_in_one_line(tiny_dir, tmp_path, capsys):
    code = main(["train", "mlp-100", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "10", "--quiet",
                 "--data-dir", str(tiny_dir), "--dataset", "custom", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("fmnist: error: training diverged") and "\n" not in err


class ScriptedValLoss(Callback):
    """Sets val_loss from a script and keeps each epoch's weights (it has no state to resume)."""

    def __init__(self, losses):
        self.losses, self.weights = losses, {}

    def on_epoch_end(self, trainer, epoch, logs):
        logs["val_loss"] = self.losses[epoch - 1]
        self.weights[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resume_keeps_early_stopping_and_best_checkpoint_state(tmp_path):
    """Best epoch 2, then worse: a run cut after epoch 3 must still stop at 4 and restore epoch 2."""
    y = np.arange(60) % 10
    x = learnable_images(y)
    losses = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]

    def trainer(folder, *extra):
        torch.manual_seed(0)
        callbacks = [ScriptedValLoss(losses), EarlyStopping(patience=2), ModelCheckpoint(folder, save_best_only=True),
                     ModelCheckpoint(folder), *extra]
        return Trainer(create_model("mlp-100"), TrainConfig(epochs=6, batch_size=16), callbacks)

    full = trainer(tmp_path / "full")
    full.fit(x, y, validation_data=(x, y))
    cut = trainer(tmp_path / "cut", Interrupt(4, 0))
    with pytest.raises(KeyboardInterrupt):
        cut.fit(x, y, validation_data=(x, y))
    resumed = trainer(tmp_path / "cut")
    resumed.load_state_dict(load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors"))
    resumed.fit(x, y, validation_data=(x, y))
    assert len(full.history) == len(resumed.history) == 4  # patience 2 after the best epoch, 2
    assert resumed.weights_epoch == full.weights_epoch == 2 and resumed.stop_reason == full.stop_reason
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(b[k], full.callbacks[0].weights[2][k]) for k in b)
    assert load_checkpoint(tmp_path / "cut" / "best.safetensors")["epoch"] == 2
