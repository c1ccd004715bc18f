"""Save and load: round trips, a fresh process, and refusal of foreign or tampered files."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import fmnist
from fmnist.errors import ModelError, OutputExistsError
from fmnist.evaluation import predict_proba
from fmnist.models import create_model
from fmnist.models.io import MODEL_JSON, WEIGHTS, load_model, save_model
from tests.conftest import learnable_images

SPECS = ["flatten,dense:32:relu,dense:10",
         "conv:4:3,batchnorm,maxpool:2,flatten,dense:16:relu,dropout:0.4,dense:10"]


def _trained(spec: str) -> torch.nn.Module:
    """A network whose weights (and batch-norm statistics) are not the initial ones."""
    torch.manual_seed(0)
    model = create_model(spec)
    y = np.arange(40) % 10
    from fmnist.training import TrainConfig, fit

    fit(model, learnable_images(y), y, config=TrainConfig(epochs=1, batch_size=8, device="cpu"))
    return model.eval()


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_model(_trained(SPECS[0]), tmp_path / "m", name="tiny", class_names=fmnist.CLASS_NAMES)


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip_predicts_identically(tmp_path, spec):
    model = _trained(spec)
    images = learnable_images(np.arange(30) % 10, seed=3)
    folder = save_model(model, tmp_path / "m", class_names=fmnist.CLASS_NAMES)
    loaded = fmnist.load_model(folder)
    assert not loaded.training
    np.testing.assert_array_equal(predict_proba(loaded, images), predict_proba(model, images))
    # the file paths inside the folder name the same model
    for path in (folder / MODEL_JSON, folder / WEIGHTS):
        np.testing.assert_array_equal(predict_proba(load_model(path), images), predict_proba(model, images))


def test_fresh_process_predicts_identically(tmp_path):
    """A process that never saw the training (or this test's imports) gets the same probabilities."""
    model = _trained(SPECS[1])
    images = learnable_images(np.arange(30) % 10, seed=4)
    np.save(tmp_path / "images.npy", images)
    save_model(model, tmp_path / "m", class_names=fmnist.CLASS_NAMES)
    code = ("import sys, numpy as np, fmnist; m = fmnist.load_model(sys.argv[1]); "
            "np.save(sys.argv[3], fmnist.predict_proba(m, np.load(sys.argv[2])))")
    src = Path(fmnist.__file__).parents[1]
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "m"), str(tmp_path / "images.npy"),
                    str(tmp_path / "out.npy")], check=True, env={"PYTHONPATH": str(src), "PATH": ""}, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), predict_proba(model, images))


def test_sklearn_round_trip(tmp_path):
    from sklearn.linear_model import SGDClassifier

    y = np.arange(60) % 3 + 5  # labels need not start at 0
    images = learnable_images(y % 10)
    est = SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0).fit(images.reshape(60, -1) / 255, y)
    loaded = load_model(save_model(est, tmp_path / "m"))
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    np.testing.assert_array_equal(predict_proba(loaded, images), predict_proba(est, images))


def test_save_refuses_wrong_number_of_class_names(tmp_path):
    with pytest.raises(ModelError, match="3 class names for a model with 10 outputs"):
        save_model(create_model("mlp-100"), tmp_path / "m", class_names=("a", "b", "c"))
    with pytest.raises(ModelError, match="a list of names, one per class, not one string"):
        save_model(create_model("mlp-100"), tmp_path / "m", class_names="abcdefghij")  # ten letters, ten outputs
    assert not (tmp_path / "m").exists()


# --- refusals: each is one line naming the file and what is wrong -------------------------

def _refused(path, match: str) -> str:
    with pytest.raises(ModelError, match=match) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_pickle_renamed_to_safetensors_is_refused_without_unpickling(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (saved / WEIGHTS).write_bytes(pickle.dumps(Evil()))
    _refused(saved, "is a pickle file, not safetensors")
    assert not marker.exists()


def test_torch_save_renamed_to_safetensors_is_refused(saved):
    torch.save(create_model("flatten,dense:32:relu,dense:10").state_dict(), saved / WEIGHTS)
    _refused(saved, "zip archive")


@pytest.mark.parametrize("name", ["model.pt", "model.pkl"])
def test_pickle_model_file_is_refused(tmp_path, name):
    torch.save(create_model("mlp-100").state_dict(), tmp_path / name)
    msg = _refused(tmp_path / name, "pickle-based model file")
    assert str(tmp_path / name) in msg


def test_truncated_safetensors_is_refused(saved):
    data = (saved / WEIGHTS).read_bytes()
    (saved / WEIGHTS).write_bytes(data[: len(data) // 2])
    _refused(saved, "truncated")


def test_truncated_to_a_few_bytes_is_refused(saved):
    (saved / WEIGHTS).write_bytes(b"\x05\x00")
    _refused(saved, "too short")


def test_header_claiming_huge_sizes_is_refused(saved):
    weights = saved / WEIGHTS
    data = weights.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [2**31, 2**31]
    header[key]["data_offsets"] = [0, 2**62 * 4]
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    _refused(saved, "claims bytes")


def test_header_length_field_claiming_huge_size_is_refused(saved):
    weights = saved / WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(struct.pack("<Q", 2**60) + data[8:])
    _refused(saved, "header claims")


def test_spec_not_matching_tensors_is_refused(saved):
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta["spec"]["layers"][1]["units"] = 64  # weights hold 32 units
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    _refused(saved, "model.json needs")


def test_weights_of_another_model_are_refused(saved, tmp_path):
    other = save_model(create_model("conv:4:3,flatten,dense:10"), tmp_path / "other")
    (saved / WEIGHTS).write_bytes((other / WEIGHTS).read_bytes())
    _refused(saved, "tensors do not match model.json")


def test_malformed_spec_is_refused(saved):
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta["spec"]["layers"][1]["type"] = "transformer"
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    msg = _refused(saved, "unknown layer type")
    assert MODEL_JSON in msg


def test_nan_weights_are_refused(saved):
    state = load_file(saved / WEIGHTS)
    key = next(iter(state))
    state[key][0] = float("nan")
    save_file(state, saved / WEIGHTS)
    _refused(saved, "NaN or infinite")


def test_nan_sklearn_weights_are_refused(tmp_path):
    from safetensors.numpy import load_file as load_np
    from safetensors.numpy import save_file as save_np
    from sklearn.linear_model import SGDClassifier

    y = np.arange(30) % 3
    est = SGDClassifier(loss="log_loss", max_iter=3, tol=None).fit(np.random.default_rng(0).random((30, 784)), y)
    folder = save_model(est, tmp_path / "m")
    arrays = load_np(folder / WEIGHTS)
    arrays["coef_"][0, 0] = np.inf
    save_np(arrays, folder / WEIGHTS)
    _refused(folder, "NaN or infinite")


def test_finite_weights_that_overflow_are_refused_on_load(saved, tmp_path, capsys):
    """Weights all 3e38 are finite, so every check of the files passes; the outputs are NaN."""
    from fmnist.cli.main import main

    model = load_model(saved)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3e38)
    huge = save_model(model, tmp_path / "huge", class_names=fmnist.CLASS_NAMES)
    msg = _refused(huge, r"its outputs are not numbers \(NaN\) for 21 of 21 images tried on loading")
    assert msg.startswith(f"{huge}: ") and "weights overflow" in msg
    png = tmp_path / "one.png"
    from PIL import Image

    Image.fromarray(learnable_images(np.array([3]))[0]).save(png)
    capsys.readouterr()
    assert main(["predict", str(huge), str(png), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "NaN" not in out and err.count("\n") == 1 and "not numbers (NaN)" in err


@pytest.mark.parametrize("change, match", [
    (lambda a, meta: a.update(coef_=a["coef_"][:, :100].copy()), "coef_ has 100 features; a model of 28x28"),
    (lambda a, meta: a.update(classes_=a["classes_"][::-1].copy()), "classes_ must be distinct numbers in increasing"),
    (lambda a, meta: a.update(classes_=a["classes_"][::-1].astype(np.uint8)),
     "classes_ must be distinct numbers in increasing"),  # np.diff of uint8 [2, 1, 0] wraps to [255, 255]
    (lambda a, meta: meta["params"].update(loss="hinge"), "loss 'hinge' gives no probabilities"),
])
def test_a_tampered_linear_model_is_refused_on_load_not_at_prediction(tmp_path, change, match):
    from safetensors.numpy import load_file as load_np
    from safetensors.numpy import save_file as save_np
    from sklearn.linear_model import SGDClassifier

    y = np.arange(30) % 3
    est = SGDClassifier(loss="log_loss", max_iter=3, tol=None).fit(np.random.default_rng(0).random((30, 784)), y)
    folder = save_model(est, tmp_path / "m")
    arrays, meta = load_np(folder / WEIGHTS), json.loads((folder / MODEL_JSON).read_text())
    change(arrays, meta)
    save_np(arrays, folder / WEIGHTS)
    (folder / MODEL_JSON).write_text(json.dumps(meta))
    _refused(folder, match)


@pytest.mark.parametrize("field, value, match", [
    ("format", "keras-model", "not an fmnist model"),
    ("format", None, "not an fmnist model"),
    ("format_version", 99, "newer fmnist"),
    ("format_version", "1", "format_version must be"),
    ("family", "jax", "unknown model family"),
    ("class_names", ["a", "b"], "2 class names for a model with 10 outputs"),
    ("class_names", "abc", "class_names must be a list"),
    ("name", {"x": 1}, "name must be a string, got dict"),
])
def test_model_json_fields_are_checked(saved, field, value, match):
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta[field] = value
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    _refused(saved, match)


def test_model_json_not_json_is_refused(saved):
    (saved / MODEL_JSON).write_text("{not json")
    _refused(saved, "not a readable")


def test_model_json_nested_past_the_parsers_stack_is_refused(saved):
    (saved / MODEL_JSON).write_text("[" * 200_000 + "]" * 200_000)
    _refused(saved, "not a readable")


def test_a_number_past_pythons_digit_limit_is_refused_in_one_line(saved):
    (saved / MODEL_JSON).write_text((saved / MODEL_JSON).read_text().replace(
        '"format_version": 1', '"format_version": ' + "1" * 5000))
    _refused(saved, "model.json: not a readable .* a number of more than 4,300 digits")


def test_a_header_number_past_pythons_digit_limit_is_refused_in_one_line(saved):
    raw = (saved / WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8:8 + n].decode().rstrip()
    header = header[:-1] + ', "__metadata__": {"x": ' + "9" * 5000 + "}}"
    (saved / WEIGHTS).write_bytes(struct.pack("<Q", len(header)) + header.encode() + raw[8 + n:])
    _refused(saved, "weights.safetensors: header holds a number of more than 4,300 digits")


def test_missing_weights_is_refused(saved):
    (saved / WEIGHTS).unlink()
    _refused(saved, "missing; the model folder is incomplete")


def test_missing_model_json_is_refused(saved):
    (saved / MODEL_JSON).unlink()
    _refused(saved, "model.json: missing")


def test_folder_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"\x89PNG")
    _refused(tmp_path / "photos", "not an fmnist model folder")
    _refused(tmp_path / "photos" / "cat.png", "not an fmnist model")


def test_missing_path_is_refused(tmp_path):
    _refused(tmp_path / "nowhere", "no such file or folder")


def test_weights_that_are_a_folder_are_refused(saved):
    (saved / WEIGHTS).unlink()
    (saved / WEIGHTS).mkdir()
    _refused(saved, r"weights.safetensors: not a regular file \(a folder\)")


@pytest.mark.parametrize("name", [MODEL_JSON, WEIGHTS])
@pytest.mark.parametrize("make, kind", [
    (lambda p: p.symlink_to("/dev/zero"), "a device"),  # reading it would never end
    (lambda p: __import__("os").mkfifo(p), "a named pipe"),  # nor would opening it
    (lambda p: p.symlink_to(p), "a link that cannot be followed"),
    (lambda p: p.symlink_to(p.parent / "elsewhere"), "a link to nothing"),
])
def test_a_model_file_that_is_not_a_regular_file_is_named_so(saved, name, make, kind):
    (saved / name).unlink()
    make(saved / name)
    for given in (saved, saved / name):
        msg = _refused(given, f"not a regular file \\({kind}")
        assert msg.startswith(f"{saved / name}: ") and "missing" not in msg


@pytest.mark.parametrize("mutate, match", [
    # the most units a layer may have: refused by comparing shapes, without allocating them first
    (lambda spec: spec["layers"][1].update(units=2**16), r"needs \(65536, 784\)"),
    # sizes past any network's: refused before torch is asked to build them (it overflows or hangs)
    (lambda spec: spec["layers"][1].update(units=10**30), "units must be at most 65,536, got a number of about 31"),
    (lambda spec: spec.update(num_classes=10**30), "num_classes must be from 1 to 65,536"),
    (lambda spec: spec["layers"].insert(0, {"type": "conv", "filters": 10**9, "kernel": 3}),
     "filters must be at most 65,536, got 1,000,000,000"),
    (lambda spec: spec.update(layers=[{"type": "flatten"}] * 360_000 + spec["layers"]),
     "360,003 layers; a model has at most 1,000"),
    (lambda spec: spec.update(input_shape=[-3, 28]), "input_shape must be"),
    (lambda spec: spec.update(input_shape=[784]), "input_shape must be"),
    (lambda spec: spec.update(layers="flatten"), "malformed"),
    (lambda spec: spec["layers"].insert(1, {"type": "dropout", "rate": 2}), "rate must be in"),
])
def test_forged_spec_is_refused(saved, mutate, match):
    meta = json.loads((saved / MODEL_JSON).read_text())
    mutate(meta["spec"])
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    _refused(saved, match)


def test_an_image_size_past_any_models_is_refused_where_the_weights_do_not_depend_on_it(tmp_path):
    """The weights of conv + global pooling fit any image size: only the bound stops a 10^10-pixel
    input, which export and serve would try to allocate."""
    folder = save_model(create_model("conv:4:3,globalavgpool,dense:10"), tmp_path / "m")
    meta = json.loads((folder / MODEL_JSON).read_text())
    meta["spec"]["input_shape"] = [100_000, 100_000]
    (folder / MODEL_JSON).write_text(json.dumps(meta))
    msg = _refused(folder, r"input_shape 100,000 x 100,000: an image has at most 1,048,576 pixels")
    assert msg.startswith(str(folder / MODEL_JSON))
    meta["spec"]["input_shape"] = [1, 5000]  # a NetClassifier reads 5,000 features as a 1 x 5,000 image
    (folder / MODEL_JSON).write_text(json.dumps(meta))
    assert load_model(folder).spec.input_shape == (1, 5000)


def test_spec_that_is_not_an_object_is_refused(saved):
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta["spec"] = [1, 2]
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    _refused(saved, "'spec' must be a JSON object")


def test_test_time_flip_is_saved_with_the_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("conv:4:3,maxpool:2,flatten,dense:10", tta="flip").eval()
    folder = save_model(model, tmp_path / "m", class_names=fmnist.CLASS_NAMES)
    loaded = fmnist.load_model(folder)
    assert loaded.spec.tta == "flip"
    images = learnable_images(np.arange(20) % 10, seed=3)
    np.testing.assert_array_equal(predict_proba(loaded, images), predict_proba(model, images))
    # A mirrored image gets the same prediction, as only the flip average gives.
    np.testing.assert_allclose(predict_proba(loaded, images[:, :, ::-1].copy()), predict_proba(loaded, images),
                               rtol=1e-5, atol=1e-6)


def test_a_changed_weight_is_refused_by_the_recorded_digest(saved, tmp_path):
    data = bytearray((saved / WEIGHTS).read_bytes())
    data[-3] ^= 0x01  # a low bit of the last weight: still a finite float, the structure untouched
    (saved / WEIGHTS).write_bytes(bytes(data))
    _refused(saved, "SHA-256 is not the one model.json recorded")
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta["weights_sha256"] = "not a digest"
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    _refused(saved, "weights_sha256 must be 64 hexadecimal digits")
    del meta["weights_sha256"]  # a model saved before digests were recorded still loads
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    load_model(saved)
    again = save_model(load_model(saved), tmp_path / "again")  # saving records the digest again
    assert len(json.loads((again / MODEL_JSON).read_text())["weights_sha256"]) == 64


def test_a_saved_model_is_never_replaced_without_overwrite(saved, tmp_path):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    other = create_model("flatten,dense:10")
    with pytest.raises(OutputExistsError, match="already holds a saved model; pass overwrite=True"):
        save_model(other, saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    save_model(other, saved, overwrite=True)
    assert load_model(saved).spec == other.spec


def test_a_runs_model_is_not_replaced_even_with_overwrite(tiny_run, tmp_path):
    """A run's record and scores describe its model: another model saved there would contradict them."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(OutputExistsError, match=r"run: holds a run \(fmnist train\) \(run.json\)"):
        save_model(create_model("flatten,dense:10"), run, overwrite=True)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_file_where_the_folder_goes_is_refused_and_kept(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=r"notes.txt: is a file, and a model is saved as a folder"):
            save_model(create_model("flatten,dense:10"), tmp_path / "notes.txt", overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_replacement_leaves_the_saved_model_whole(saved, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def interrupted(*args, **kwargs):  # the new weights are on disk; model.json is being written
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(create_model("flatten,dense:10"), saved, overwrite=True)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before  # no temporary left either
    monkeypatch.undo()
    assert load_model(saved).spec.layers == _trained(SPECS[0]).spec.layers


@pytest.mark.parametrize("family", ["torch", "sklearn"])
def test_a_full_disk_is_the_os_error_it_is_and_the_saved_model_stays(saved, monkeypatch, family):
    from safetensors import SafetensorError
    from sklearn.linear_model import SGDClassifier

    from fmnist.models import io

    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(io, "save_torch" if family == "torch" else "save_numpy", disk_full)
    model = create_model("flatten,dense:10") if family == "torch" else SGDClassifier(
        loss="log_loss", max_iter=3, tol=None).fit(np.random.default_rng(0).random((30, 784)), np.arange(30) % 3)
    with pytest.raises(OSError) as info:
        save_model(model, saved, overwrite=True)
    assert info.value.errno == 28 and info.value.filename == str(saved / WEIGHTS)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


@pytest.mark.parametrize("make, match", [
    (lambda X, y: __import__("sklearn.linear_model").linear_model.SGDClassifier(loss="hinge", max_iter=5).fit(X, y),
     r"its loss 'hinge' gives no probabilities"),
    (lambda X, y: __import__("sklearn.linear_model").linear_model.LogisticRegression(max_iter=5).fit(X, y),
     r"cannot save a LogisticRegression: the linear models fmnist saves are SGDClassifier"),
    (lambda X, y: __import__("sklearn.linear_model").linear_model.SGDClassifier(loss="log_loss", max_iter=5)
     .fit(X, np.array(fmnist.CLASS_NAMES)[y]), r"its labels are <U\d+ .*labels are numbers"),
    (lambda X, y: __import__("sklearn.linear_model").linear_model.SGDClassifier(loss="log_loss", max_iter=5)
     .fit(X[:, :100], y), r"it takes 100 features"),
])
def test_a_linear_model_load_model_would_refuse_is_not_saved(tmp_path, make, match):
    import warnings

    y = np.arange(60) % 3
    X = learnable_images(y).reshape(60, -1) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make(X, y)
    with pytest.raises(ModelError, match=match):
        save_model(est, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_numpy_numbers_in_a_net_classifiers_parameters_save_and_load(tmp_path):
    from fmnist.estimators import NetClassifier

    y = np.arange(40) % 10
    clf = NetClassifier("flatten,dense:10", epochs=np.int64(2), lr=np.float32(0.01), batch_size=np.int32(8),
                        seed=0).fit(learnable_images(y), y)
    assert type(clf.config_.epochs) is int and type(clf.config_.lr) is float
    back = NetClassifier.load(save_model(clf, tmp_path / "m"))
    assert back.get_params()["epochs"] == 2 and back.get_params()["batch_size"] == 8
    np.testing.assert_array_equal(back.predict_proba(learnable_images(y)), clf.predict_proba(learnable_images(y)))
