import json
import re

import numpy as np
import pytest

from fmnist.errors import ModelError, OutputExistsError, RunError, UsageError
from fmnist.evaluation import predict_proba
from fmnist.models import get_preset
from fmnist.models.io import load_model
from fmnist.runs import default_run_dir, evaluate_run, load_run, resolve_config, run_name, train_run
from fmnist.training.loop import resolve_device


@pytest.mark.parametrize("name", ["softmax", "sgd-logreg"])
def test_run_folder_describes_itself_and_reloads(tiny_data, tmp_path, name):
    config = resolve_config(get_preset(name), epochs=2) if name != "sgd-logreg" else None
    result = train_run(name, tiny_data, config=config, out_dir=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    expected = {"run.json", "model.json", "weights.safetensors", "history.json", "metrics.json"}
    # Torch runs also keep the last epoch's checkpoint, for --resume.
    assert files == expected | ({"checkpoint.safetensors"} if name != "sgd-logreg" else set())
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["model"] == name and info["versions"]["torch"] and info["data"]["split"]["random_state"] == 42
    # The thread counts actually used: softmax's small steps run on one of the trainer's threads.
    assert info["threads"] == ({"threads": result.threads["threads"], "step_threads": 1} if name != "sgd-logreg"
                               else None)
    assert name == "sgd-logreg" or result.threads["threads"] >= 1
    run = load_run(tmp_path / "run")
    np.testing.assert_allclose(predict_proba(run.model, tiny_data.x_test),
                               predict_proba(result.model, tiny_data.x_test), rtol=1e-6)
    again = evaluate_run(tmp_path / "run", tiny_data, split="val")
    assert again["accuracy"] == result.metrics["val"]["accuracy"] and again["n"] == 40
    assert evaluate_run(tmp_path / "run", tiny_data, split="test")["n"] == 50


def test_sgd_convergence_warning_is_recorded_not_raised(tiny_data, tmp_path):
    result = train_run("sgd-logreg", tiny_data, out_dir=tmp_path / "run")
    assert any("ConvergenceWarning" in w for w in result.metrics["warnings"])


def test_history_has_one_record_per_epoch(tiny_data, tmp_path):
    result = train_run("mlp-100", tiny_data, config=resolve_config(get_preset("mlp-100"), epochs=3),
                       out_dir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in saved] == [1, 2, 3] and saved == json.loads(json.dumps(result.history))


def test_missing_and_foreign_folders_are_refused(tmp_path, tiny_data):
    with pytest.raises(RunError, match="no such run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text('{"format": "something-else"}')
    with pytest.raises(RunError, match="not an fmnist run"):
        load_run(tmp_path / "other")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable"):
        load_model(tmp_path / "broken")


def test_unknown_split(tiny_data, tmp_path):
    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=tmp_path / "r")
    with pytest.raises(UsageError, match="split"):
        evaluate_run(tmp_path / "r", tiny_data, split="holdout")


def test_metrics_name_the_epoch_whose_weights_were_kept(tiny_data, tmp_path):
    config = resolve_config(get_preset("mlp-100"), epochs=3)
    result = train_run("mlp-100", tiny_data, config=config, out_dir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.metrics["weights_epoch"] == saved["weights_epoch"] == 3


def test_a_run_folder_that_holds_work_is_refused_unless_overwrite(tiny_data, tmp_path):
    one_epoch = resolve_config(get_preset("softmax"), epochs=1)
    train_run("mlp-100", tiny_data, config=one_epoch, out_dir=tmp_path / "run", checkpoint_best=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    for model in ("softmax", "sgd-logreg"):
        with pytest.raises(OutputExistsError, match="already holds a finished run .run.json.; pass overwrite=True"):
            train_run(model, tiny_data, out_dir=tmp_path / "run",
                      config=one_epoch if model == "softmax" else None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already holds other files"):
        train_run("softmax", tiny_data, config=one_epoch, out_dir=tmp_path / "notes")
    # Replacing: the new run, and none of the old one's checkpoints (they would describe mlp-100).
    train_run("softmax", tiny_data, config=one_epoch, out_dir=tmp_path / "run", overwrite=True)
    assert load_run(tmp_path / "run").info["model"] == "softmax"
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_an_interrupted_replacement_puts_the_old_run_back_whole(tiny_data, tmp_path):
    from fmnist.training import Callback

    class Interrupt(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    train_run("mlp-100", tiny_data, config=resolve_config(get_preset("mlp-100"), epochs=1), out_dir=tmp_path / "run")
    (tmp_path / "run" / "model.onnx").write_bytes(b"the old model's export")
    (tmp_path / "run" / "model-2.onnx").write_bytes(b"and another")
    (tmp_path / "run" / "notes.txt").write_text("the user's own")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(KeyboardInterrupt):
        train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=2),
                  out_dir=tmp_path / "run", overwrite=True, observers=[Interrupt()])
    # No checkpoint of the replacement to mix with it: the old run, its exports and the user's file.
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert load_model(tmp_path / "run").spec == get_preset("mlp-100").spec


def test_run_names_are_readable_and_default_folders_fresh(tmp_path):
    assert run_name("mlp-200") == "mlp-200"
    assert run_name("conv:8:3,maxpool:2,flatten,dropout:0.5,dense:10") == "conv-8-3-maxpool-2-flatten-dropout-0.5-dense-10"
    assert default_run_dir("softmax", tmp_path) == tmp_path / "softmax"
    assert default_run_dir("softmax", tmp_path) == tmp_path / "softmax-2"


def test_run_json_records_the_resolved_config(tiny_data, tmp_path):
    def recorded(**overrides):
        config = resolve_config(get_preset("softmax"), epochs=1, **overrides)
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        train_run("softmax", tiny_data, config=config, out_dir=out)
        return json.loads((out / "run.json").read_text())["config"]

    plain = recorded()
    assert (plain["lr"], plain["momentum"], plain["weight_decay"]) == (0.001, 0.0, 0.0)
    assert plain["device"] == str(resolve_device("auto")) != "auto"  # where it ran
    adamw = recorded(optimizer="adamw", schedule="step")
    assert (adamw["weight_decay"], adamw["momentum"], adamw["lr_step_epochs"], adamw["lr_gamma"]) == (
        0.004, None, 10, 0.1)
    assert recorded(optimizer="adamw", weight_decay=0.0)["weight_decay"] == 0.0  # an explicit 0 is honoured


def test_scikit_learn_presets_refuse_torch_settings(tiny_data):
    with pytest.raises(UsageError) as exc:
        resolve_config(get_preset("sgd-logreg"), optimizer="adam", seed=3)
    assert str(exc.value).startswith("optimizer='adam': sgd-logreg is a scikit-learn model")
    assert resolve_config(get_preset("sgd-logreg"), seed=3).seed == 3
    with pytest.raises(UsageError, match="checkpoint_best=True"):
        train_run("sgd-logreg", tiny_data, checkpoint_best=True)


def test_observers_see_the_epoch_on_disk_and_a_stopped_run_is_completed_from_it(tiny_data, tmp_path, monkeypatch):
    """A sweep's scheduler ends a trial inside its report (SystemExit, from an observer); the run
    folder is then written from the checkpoint of the epoch that was judged, training no more
    (by the sweep's driver, which may use more threads than the trial had)."""
    from fmnist.runs import CHECKPOINT, resume_run
    from fmnist.training import Callback
    from fmnist.training.checkpoint import load_checkpoint

    run_dir = tmp_path / "run"

    class StopAtTwo(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            assert load_checkpoint(run_dir / CHECKPOINT)["epoch"] == epoch  # already on disk
            if epoch == 2:
                raise SystemExit(0)

    config = resolve_config(get_preset("softmax"), epochs=5)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as a trial of --cpus-per-trial 1 runs
    with pytest.raises(SystemExit):
        train_run("softmax", tiny_data, config=config, out_dir=run_dir, observers=[StopAtTwo()])
    assert not (run_dir / "run.json").exists()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    result = resume_run(run_dir, tiny_data, evaluate_test=False, stop="stopped early by the asha scheduler")
    assert len(result.history) == 2 and result.metrics["stopped"] == "stopped early by the asha scheduler"
    assert result.metrics["weights_epoch"] == 2  # the weights it holds are epoch 2's, as metrics.json says
    # Its training time is its two epochs', nothing for the completion, which trained no more.
    assert result.metrics["train_time_s"] == pytest.approx(sum(h["time"] for h in result.history), abs=1e-9)
    assert json.loads((run_dir / "metrics.json").read_text())["stopped"].startswith("stopped early")
    assert json.loads((run_dir / "run.json").read_text())["threads"] == {"threads": 1, "step_threads": 1}
    assert evaluate_run(run_dir, tiny_data)["accuracy"] == result.metrics["val"]["accuracy"]


def test_excluded_training_images_leave_both_sides_of_the_same_split(tiny_data, tmp_path):
    from fmnist.auditing.exclude import Exclusion
    from fmnist.data import split_indices

    tr, val = split_indices(200)
    drop = np.array(sorted([*tr[:7], *val[:3]]))
    exclusion = Exclusion("audit.json", ("label_issues",), "train", drop)
    config = resolve_config(get_preset("softmax"), epochs=1)
    result = train_run("softmax", tiny_data, config=config, out_dir=tmp_path / "run", exclude=exclusion)
    assert result.metrics["val"]["n"] == 40 - 3
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["exclude"]["indices"] == drop.tolist() and info["data"]["exclude"]["kinds"] == ["label_issues"]
    # The run's own split, read back, is the split it trained and was scored on.
    again = evaluate_run(tmp_path / "run", tiny_data, split="val")
    assert again["n"] == 37 and again["accuracy"] == result.metrics["val"]["accuracy"]
    assert evaluate_run(tmp_path / "run", tiny_data, split="train")["n"] == 160 - 7


def test_evaluate_reports_the_cleaned_split_beside_the_full_one(tiny_data, tmp_path):
    from fmnist.auditing.exclude import Exclusion
    from fmnist.evaluation import evaluate

    result = train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1),
                       out_dir=tmp_path / "run")
    drop = np.array([0, 3, 10, 49])
    scores = evaluate_run(tmp_path / "run", tiny_data, split="test",
                          exclude=Exclusion("a.json", ("outliers",), "test", drop))
    keep = np.setdiff1d(np.arange(50), drop)
    assert scores["n"] == 50 and scores["accuracy"] == result.metrics["test"]["accuracy"]
    assert scores["cleaned"]["n"] == 46 and scores["cleaned"]["excluded"] == 4
    assert scores["cleaned"]["accuracy"] == evaluate(result.model, tiny_data.x_test[keep],
                                                     tiny_data.y_test[keep])["accuracy"]


def test_a_run_without_holdout_trains_on_every_training_image_and_resumes_so(tiny_data, tmp_path):
    from fmnist.runs import resume_run
    from fmnist.training import Callback

    seen = []

    class Batches(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append((trainer.num_batches, "val_loss" in logs))
            if epoch == 1 and len(seen) == 1:
                raise SystemExit(0)  # interrupted after its first epoch

    run_dir = tmp_path / "run"
    config = resolve_config(get_preset("softmax"), epochs=2, batch_size=10)
    with pytest.raises(SystemExit):
        train_run("softmax", tiny_data, config=config, out_dir=run_dir, holdout=False, observers=[Batches()])
    result = resume_run(run_dir, tiny_data, observers=[Batches()])
    # All 200 training images in batches of 10, before and after the resume; no validation pass.
    assert seen == [(20, False), (20, False)] and len(result.history) == 2
    assert "val" not in result.metrics and result.metrics["test"]["n"] == 50
    assert json.loads((run_dir / "run.json").read_text())["data"]["split"] is None
    with pytest.raises(RunError, match="no validation split"):
        evaluate_run(run_dir, tiny_data, split="val")
    assert evaluate_run(run_dir, tiny_data, split="train")["n"] == 200
    assert evaluate_run(run_dir, tiny_data, split="test")["accuracy"] == result.metrics["test"]["accuracy"]


def test_without_holdout_a_scikit_learn_model_fits_every_image_and_validation_watchers_are_refused(tiny_data):
    result = train_run("sgd-logreg", tiny_data, holdout=False)
    assert "val" not in result.metrics and "test" in result.metrics
    assert result.model.t_ == pytest.approx(1 + result.model.n_iter_ * 200)  # SGD's step count: 200 rows a pass
    with pytest.raises(UsageError, match="early stopping"):
        train_run("mlp-100-dropout", tiny_data, holdout=False)
    with pytest.raises(UsageError, match="checkpoint_best=True"):
        train_run("softmax", tiny_data, holdout=False, checkpoint_best=True)


def test_a_linear_run_on_labels_that_skip_the_first_classes_saves_and_scores(tiny_data, tmp_path):
    import dataclasses

    data = dataclasses.replace(tiny_data, y_train=tiny_data.y_train % 5 + 5, y_test=tiny_data.y_test % 5 + 5)
    result = train_run("sgd-logreg", data, out_dir=tmp_path / "run")
    model = load_model(tmp_path / "run")
    assert list(model.classes_) == [5, 6, 7, 8, 9]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["class_names"] == [data.class_names[c] for c in range(5, 10)]
    predicted = model.classes_[predict_proba(model, data.x_test).argmax(1)]
    assert evaluate_run(tmp_path / "run", data, split="test")["accuracy"] == pytest.approx(
        np.mean(predicted == data.y_test)) == pytest.approx(result.metrics["test"]["accuracy"])


def test_a_folder_that_is_no_finished_run_says_what_to_do(tiny_data, tmp_path):
    from fmnist.training import Callback

    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"empty: not a run folder \(no run.json\); .*fmnist train MODEL --out"):
        load_run(tmp_path / "empty")

    class Interrupt(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run("softmax", tiny_data, out_dir=tmp_path / "half", observers=[Interrupt()])
    with pytest.raises(RunError, match=r"half: an interrupted run \(no run.json yet\); finish it with resume_run\("):
        load_run(tmp_path / "half")


def test_a_history_with_a_number_past_pythons_digits_is_one_line(tiny_data, tmp_path):
    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=tmp_path / "run")
    (tmp_path / "run" / "history.json").write_text("[" + "9" * 5000 + "]")
    with pytest.raises(RunError, match="history.json: unreadable"):
        load_run(tmp_path / "run")


def _run_bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_overwrite_replaces_a_run_only_with_a_finished_one(tiny_data, tmp_path):
    from fmnist.errors import TrainingError
    from fmnist.training import Callback

    run_dir = tmp_path / "run"
    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=run_dir)
    (run_dir / "model.onnx").write_bytes(b"its export")
    before = _run_bytes(run_dir)
    diverging = resolve_config(get_preset("softmax"), epochs=2, weight_decay=1e9)
    with pytest.raises(TrainingError, match="diverged"):
        train_run("softmax", tiny_data, config=diverging, out_dir=run_dir, overwrite=True)
    assert _run_bytes(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(before)

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    config = resolve_config(get_preset("mlp-100"), epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_run("mlp-100", tiny_data, config=config, out_dir=run_dir, overwrite=True, callbacks=[CtrlC()])
    assert _run_bytes(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(before)
    result = train_run("mlp-100", tiny_data, config=config, out_dir=run_dir, overwrite=True)
    assert json.loads((run_dir / "run.json").read_text())["model"] == "mlp-100" and len(result.history) == 3
    assert not (run_dir / "model.onnx").exists() and not list(run_dir.glob(".replaced.*"))


def test_a_run_a_killed_replacement_set_aside_is_put_back_by_the_next_training(tiny_data, tmp_path):
    import subprocess
    import sys

    from fmnist.runs import CHECKPOINT

    run_dir = tmp_path / "run"
    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=run_dir)
    before = _run_bytes(run_dir)
    # As a kill -9 of `train --overwrite` in its first epochs leaves it: the run aside, a checkpoint.
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    aside = run_dir / f".replaced.{dead}"
    aside.mkdir()
    for name in before:
        (run_dir / name).rename(aside / name)
    (run_dir / CHECKPOINT).write_bytes(b"the replacement's first epoch")
    from fmnist.errors import TrainingError

    diverging = resolve_config(get_preset("softmax"), epochs=2, weight_decay=1e9)
    with pytest.raises(TrainingError, match="diverged"):
        train_run("softmax", tiny_data, config=diverging, out_dir=run_dir, overwrite=True)
    assert _run_bytes(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(before)


@pytest.mark.parametrize(("train", "test", "words"), [
    (np.zeros(200, np.uint8), np.zeros(50, np.uint8), "the training images hold one class only (0)"),
    (np.arange(200) % 9, np.arange(50) % 10, "test label 9 (and 4 more) is the class of no training image"),
])
def test_labels_a_scikit_learn_model_cannot_learn_are_one_line_before_fitting(tmp_path, monkeypatch, train, test,
                                                                             words):
    from fmnist.data import load_dataset, write_idx
    from fmnist.errors import DataError
    from tests.conftest import learnable_images

    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "d"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", learnable_images(train % 10, 0))
    write_idx(folder / "train-labels-idx1-ubyte.gz", train.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", learnable_images(test % 10, 1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test.astype(np.uint8))
    data = load_dataset(folder, dataset="custom")
    with pytest.raises(DataError, match=re.escape(words)) as refused:
        train_run("sgd-logreg", data, out_dir=tmp_path / "run")
    assert str(folder) in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_file_of_a_run_folder_given_for_the_run_names_the_folder(tiny_data, tmp_path):
    from fmnist.runs import BEST_CHECKPOINT, load_run

    run_dir = tmp_path / "run"
    config = resolve_config(get_preset("softmax"), epochs=1)
    train_run("softmax", tiny_data, config=config, out_dir=run_dir, checkpoint_best=True)
    with pytest.raises(RunError, match=re.escape(f"{run_dir / BEST_CHECKPOINT}: a file of the run folder {run_dir}")):
        load_run(run_dir / BEST_CHECKPOINT)  # evaluate, report
    with pytest.raises(ModelError, match=re.escape(f"a file of the model folder {run_dir}; pass that folder")):
        load_model(run_dir / BEST_CHECKPOINT)  # predict, export, serve


def test_another_commands_folder_given_for_a_run_says_what_it_holds(tmp_path):
    from fmnist.runs import load_run

    (tmp_path / "aud").mkdir()
    (tmp_path / "aud" / "audit.json").write_text("{}")
    with pytest.raises(RunError, match=re.escape(f"{tmp_path / 'aud'}: holds an audit (fmnist audit) (audit.json), "
                                                 "not a run")):
        load_run(tmp_path / "aud")


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def _killed_replacement(run_dir, checkpoint: bytes | None):
    """As a kill -9 of `train --overwrite` leaves the run: its files aside, and the replacement's
    checkpoint if it finished an epoch."""
    from fmnist.runs import CHECKPOINT

    aside = run_dir / f".replaced.{_dead_pid()}"
    aside.mkdir()
    for path in list(run_dir.iterdir()):
        if path.is_file():
            path.rename(aside / path.name)
    if checkpoint is not None:
        (run_dir / CHECKPOINT).write_bytes(checkpoint)
    return aside


def test_a_replacement_killed_after_an_epoch_is_told_and_resuming_it_removes_the_run_it_replaced(tiny_data, tmp_path):
    from fmnist.runs import CHECKPOINT, resume_run
    from fmnist.training import Callback

    class Killed(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the replacement's state after its first epoch
        train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=2),
                  out_dir=tmp_path / "new", observers=[Killed()])
    run_dir = tmp_path / "run"
    train_run("mlp-100", tiny_data, config=resolve_config(get_preset("mlp-100"), epochs=1), out_dir=run_dir)
    aside = _killed_replacement(run_dir, (tmp_path / "new" / CHECKPOINT).read_bytes())
    for read in (lambda: load_run(run_dir), lambda: load_model(run_dir)):
        with pytest.raises((RunError, ModelError)) as err:
            read()
        said = str(err.value)
        assert f"the run kept in {aside}" in said and "finishes the replacement and removes that run" in said, said
        assert f"to get that run back instead, delete {run_dir / CHECKPOINT} and run resume_run" in said, said
    kept = re.escape(str(aside))
    with pytest.raises(OutputExistsError, match=f"an interrupted run replacing the run kept in {kept}"):
        train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=run_dir)
    resume_run(run_dir, tiny_data)
    assert load_run(run_dir).info["model"] == "softmax" and not aside.exists()


def test_a_replacement_killed_before_its_first_epoch_is_told_and_undone(tiny_data, tmp_path):
    from fmnist.runs import resume_run

    run_dir = tmp_path / "run"
    train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=run_dir)
    before = _run_bytes(run_dir)
    aside = _killed_replacement(run_dir, None)
    for read in (lambda: load_run(run_dir), lambda: load_model(run_dir)):
        with pytest.raises((RunError, ModelError), match=f"kept in {re.escape(str(aside))}, and resume_run.* puts"):
            read()
    with pytest.raises(RunError, match="nothing to resume: .* killed and left no epoch to continue from, so the run it "
                                       "was replacing is back in place"):
        resume_run(run_dir, tiny_data)
    assert _run_bytes(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(before)
    aside = _killed_replacement(run_dir, None)
    # fmnist train checks its --out before it claims the folder (and puts the run back): its refusal names the run.
    from fmnist.runs import check_run_dir

    kept = f"a run that a killed train --overwrite set aside in {re.escape(str(aside))} \\(resume_run.* puts it back\\)"
    with pytest.raises(OutputExistsError, match=kept):
        check_run_dir(run_dir)
    # A train into the folder puts it back too, then refuses to replace it.
    with pytest.raises(OutputExistsError, match="already holds a finished run"):
        train_run("softmax", tiny_data, config=resolve_config(get_preset("softmax"), epochs=1), out_dir=run_dir)
    assert _run_bytes(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == sorted(before)
