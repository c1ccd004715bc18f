"""ONNX export: onnxruntime gives our probabilities (to 1e-5) for dense, conv+batchnorm+dropout
and linear models, at any batch size, and the file describes its own interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fmnist
from fmnist.errors import ModelError
from fmnist.evaluation import predict_proba
from fmnist.models import create_model
from tests.conftest import learnable_images

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from fmnist.export import export_run, run_onnx, to_onnx

SPECS = ["flatten,dense:32:relu,dense:10",
         "flatten,dense:24:sigmoid,dropout:0.3,dense:16:tanh,batchnorm,dense:10",
         "conv:4:3,batchnorm,maxpool:2,conv:6:3:valid:gelu,avgpool:2,flatten,dense:16:relu,dropout:0.4,dense:10",
         "conv:4:5:same:relu,globalavgpool,dense:10",
         "residual:4,maxpool:2,residual:6,flatten,dense:10"]


def _trained(spec: str):
    """Trained a little so batch-norm statistics are not the defaults; returned in train mode
    on purpose: the export must use eval behaviour (no dropout, running statistics)."""
    torch.manual_seed(0)
    model = create_model(spec)
    y = np.arange(60) % 10
    from fmnist.training import TrainConfig, fit

    fit(model, learnable_images(y), y, config=TrainConfig(epochs=2, batch_size=16, device="cpu"))
    return model.train()


@pytest.mark.parametrize("spec", SPECS)
def test_torch_parity(tmp_path, spec):
    model = _trained(spec)
    path = to_onnx(model, tmp_path / "m.onnx", class_names=fmnist.CLASS_NAMES, name="tiny", check=False)
    assert model.training  # the user's model is left as it was
    for n in (1, 5, 33):  # the batch axis is dynamic
        images = learnable_images(np.arange(n) % 10, seed=n)
        out = run_onnx(path, images)
        model.eval()
        logits = model(torch.from_numpy(images).float() / 255).detach().numpy()
        np.testing.assert_allclose(out["logits"], logits, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["probabilities"], predict_proba(model, images), atol=1e-5, rtol=0)
        assert out["probabilities"].shape == (n, 10)


def test_metadata_describes_the_interface(tmp_path):
    import onnx

    path = to_onnx(_trained(SPECS[0]), tmp_path / "m.onnx", class_names=fmnist.CLASS_NAMES, name="tiny")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["class_names"]) == list(fmnist.CLASS_NAMES)
    assert props["format"] == "fmnist-onnx" and props["name"] == "tiny"
    assert props["model"] == SPECS[0] and "[0, 1]" in props["input"]
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]


def test_metadata_and_the_command_describe_the_models_own_input_and_flip(tmp_path, capsys):
    import onnx

    from fmnist.cli.main import main
    from fmnist.export import interface
    from fmnist.models.io import save_model

    small = create_model("flatten,dense:10", input_shape=(8, 8))
    props = {p.key: p.value for p in onnx.load(to_onnx(small, tmp_path / "s.onnx")).metadata_props}
    assert props["input"].startswith("images: float32 (N, 8, 8)") and "(N, C), raw scores" in props["outputs"]
    flipped = create_model("conv:4:3,maxpool:2,flatten,dense:10", tta="flip").eval()
    save_model(flipped, tmp_path / "flip")
    assert main(["export", str(tmp_path / "flip"), "--onnx"]) == 0
    said = capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(tmp_path / "flip" / "model.onnx").metadata_props}
    assert props["model"].endswith(", predicting with the test-time flip")
    assert "mirror's log-probabilities" in props["outputs"] and "), raw scores" not in props["outputs"]
    assert interface(tmp_path / "flip" / "model.onnx") == {"input": props["input"], "outputs": props["outputs"]}
    assert said.strip().endswith(f"input {props['input']}; outputs {props['outputs']}")


@pytest.mark.parametrize("classes", [10, 2])
def test_linear_parity(tmp_path, classes):
    from sklearn.linear_model import SGDClassifier

    y = np.arange(200) % classes
    x = learnable_images(y)
    est = SGDClassifier(loss="log_loss", max_iter=20, tol=None, random_state=0).fit(x.reshape(len(x), -1) / 255, y)
    path = to_onnx(est, tmp_path / "lin.onnx", check=False)
    images = learnable_images(np.arange(40) % classes, seed=9)
    out = run_onnx(path, images)
    np.testing.assert_allclose(out["probabilities"], predict_proba(est, images), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["logits"].reshape(40, -1),
                               est.decision_function(images.reshape(40, -1) / 255).reshape(40, -1), rtol=1e-5)


def _extreme_linear(classes: int = 10):
    """A log-loss SGDClassifier barely regularised, so its weights are large: on a blank image
    every decision is below -745 (every sigmoid underflows to 0 in float64), on the others far
    below -37 for some (where onnxruntime's own float64 Sigmoid already returns 0)."""
    from sklearn.linear_model import SGDClassifier

    y = np.arange(200) % classes
    x = learnable_images(y)
    return SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=20, tol=None, random_state=0).fit(
        x.reshape(len(x), -1) / 255, y)


@pytest.mark.parametrize("classes", [10, 2])
def test_linear_probabilities_equal_scikit_learns_where_scores_are_extreme(tmp_path, classes):
    from fmnist.evaluation.metrics import probe_images

    est = _extreme_linear(classes)
    images = np.concatenate([probe_images((28, 28)), learnable_images(np.arange(20) % classes, seed=3) / 255])
    features = images.reshape(len(images), -1).astype(np.float64)
    top = est.decision_function(features).reshape(len(images), -1).max(1)
    assert (top < -745).any() and ((top < -37) & (top > -745)).any()  # both regimes are checked
    out = run_onnx(to_onnx(est, tmp_path / "lin.onnx"), images.astype(np.float32))["probabilities"]
    expected = est.predict_proba(features)
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


def test_parity_check_includes_mostly_black_images(tmp_path):
    """A graph that is right on uniform noise and wrong on what real images look like is refused:
    here the export with onnxruntime's Sigmoid, which returns 0 below about -37, for a model whose
    scores are about +400 on noise (every sigmoid is 1 either way) and -600 on a blank image."""
    from onnx import helper
    from sklearn.linear_model import SGDClassifier

    from fmnist import export

    y = np.arange(30) % 3
    est = SGDClassifier(loss="log_loss", max_iter=3, tol=None).fit(np.random.default_rng(0).random((30, 784)), y)
    est.coef_ = np.full((3, 784), 2.6)  # uniform noise sums to ~392 pixels
    est.intercept_ = np.array([-600.0, -601.0, -602.0])
    proto = export._linear_graph(est)
    sigmoid_by_parts = {"minus", "odds_against", "one_plus", "positive"}
    kept = [n for n in proto.graph.node if n.output[0] not in sigmoid_by_parts]
    at = next(i for i, n in enumerate(kept) if n.output[0] == "logits") + 1
    kept.insert(at, helper.make_node("Sigmoid", ["decision"], ["positive"]))
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    with pytest.raises(ModelError, match="differs from the model"):
        export._check_parity(est, proto)
    export._check_parity(est, export._linear_graph(est))  # the graph as exported passes


def test_linear_without_probabilities_is_refused(tmp_path):
    from sklearn.linear_model import SGDClassifier

    y = np.arange(30) % 3
    est = SGDClassifier(loss="hinge", max_iter=3, tol=None).fit(np.random.default_rng(0).random((30, 784)), y)
    with pytest.raises(ModelError, match="only log_loss"):
        to_onnx(est, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_export_run_via_cli(tmp_path, tiny_dir, capsys):
    from fmnist.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "flatten,dense:16:relu,dense:10", "--epochs", "1", "--data-dir", str(tiny_dir),
                 "--dataset", "custom", "--out", str(run), "--quiet"]) == 0
    assert main(["export", str(run), "--onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    images = learnable_images(np.arange(12) % 10, seed=2)
    out = run_onnx(run / "model.onnx", images)
    np.testing.assert_allclose(out["probabilities"], predict_proba(fmnist.load_model(run), images), atol=1e-5)
    assert main(["export", str(run), "--onnx", "--out", str(tmp_path / "elsewhere" / "m.onnx")]) == 0
    assert (tmp_path / "elsewhere" / "m.onnx").is_file()
    assert main(["export", str(run)]) == 2  # a format must be chosen
    assert "--onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--onnx"]) == 1


@pytest.mark.parametrize("name", ["model.json", "model.textproto", "model.onnxtxt", "model.ort"])
def test_any_out_name_is_written_and_read_as_onnx(tmp_path, capsys, name):
    """onnx and onnxruntime guess a format from the extension; what we write is always protobuf."""
    from fmnist.cli.main import main

    folder = fmnist.save_model(_trained(SPECS[0]), tmp_path / "m")
    out = tmp_path / "ext" / name
    assert main(["export", str(folder), "--onnx", "--out", str(out)]) == 0, capsys.readouterr().err
    assert "pixels / 255" in capsys.readouterr().out  # the interface, read back from the file
    images = learnable_images(np.arange(4) % 10)
    np.testing.assert_allclose(run_onnx(out, images)["probabilities"], predict_proba(fmnist.load_model(folder), images),
                               atol=1e-5)


@pytest.mark.parametrize("name", ["run.json", "model.json", "weights.safetensors", "checkpoint.safetensors",
                                  "metrics.json", "history.json"])
def test_out_never_replaces_one_of_the_runs_own_files(tmp_path, capsys, name):
    from fmnist.cli.main import main

    run = fmnist.save_model(_trained(SPECS[0]), tmp_path / "run")
    for file in ("run.json", "checkpoint.safetensors", "metrics.json", "history.json"):
        (run / file).write_text("{}")  # the run's other files, as train writes them
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for given in (run, run / "model.json"):
        for out in (run / name, tmp_path / "elsewhere" / ".." / "run" / name):
            assert main(["export", str(given), "--onnx", "--out", str(out), "--overwrite"]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "among the run's own files" in err and f"--out {out}:" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert main(["export", str(run), "--onnx", "--out", str(run / "mine.onnx")]) == 0  # an export's name is fine


def test_export_run_function(tmp_path):
    folder = fmnist.save_model(_trained(SPECS[0]), tmp_path / "m", name="mine", class_names=fmnist.CLASS_NAMES)
    path = export_run(folder)
    assert path == folder / "model.onnx"
    import onnx

    assert {p.key: p.value for p in onnx.load(path).metadata_props}["name"] == "mine"


@pytest.mark.parametrize("name", [n for n in fmnist.list_models()
                                  if fmnist.models.get_preset(n).family == "torch"])
def test_every_torch_preset_exports_with_parity(tmp_path, name):
    """Each registered network exports; to_onnx itself runs onnxruntime and refuses a mismatch."""
    torch.manual_seed(0)
    path = to_onnx(create_model(name), tmp_path / f"{name}.onnx", class_names=fmnist.CLASS_NAMES, name=name)
    assert run_onnx(path, learnable_images(np.arange(3)))["probabilities"].shape == (3, 10)


def test_parity_check_catches_a_wrong_graph(monkeypatch, tmp_path):
    """The built-in check is real: a graph that computes something else is refused, nothing written."""
    from fmnist import export

    monkeypatch.setattr(export, "_our_probabilities", lambda model, images: np.full((len(images), 10), 0.1))
    with pytest.raises(ModelError, match="differs from the model"):
        to_onnx(create_model(SPECS[0]), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_a_model_whose_outputs_are_not_numbers_is_not_exported(tmp_path):
    """NaN on both sides is no agreement: the export is refused, with the model's fault named."""
    from tests.evaluation.test_metrics import _overflowing

    with pytest.raises(ModelError, match=r"outputs are not numbers \(NaN\) for \d+ of \d+ images"):
        to_onnx(_overflowing(), tmp_path / "nan.onnx")
    assert not (tmp_path / "nan.onnx").exists()


def test_fitted_estimator_exports_with_its_labels(tmp_path):
    import onnx

    from fmnist.estimators import NetClassifier

    y = np.arange(60) % 3 + 7
    x = learnable_images(y % 10)
    clf = NetClassifier("flatten,dense:8:relu,dense:10", epochs=1, device="cpu").fit(x, y)
    path = to_onnx(clf, tmp_path / "clf.onnx")
    np.testing.assert_allclose(run_onnx(path, x)["probabilities"], clf.predict_proba(x), atol=1e-5)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["class_names"]) == ["7", "8", "9"]


def test_a_run_folder_that_cannot_take_the_export_is_refused_before_the_work(tmp_path, monkeypatch):
    import errno
    import tempfile

    import fmnist.export
    from fmnist.errors import FmnistError

    fmnist.save_model(create_model("softmax"), tmp_path / "run")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(fmnist.export, "load_model", lambda *a, **k: pytest.fail("loaded before the check"))
    with pytest.raises(FmnistError, match="model.onnx: cannot be written: .*Read-only file system; choose another"):
        export_run(tmp_path / "run")


def test_an_export_started_while_another_writes_the_run_folder_is_refused(tmp_path, monkeypatch):
    """Two exports at once with the default name would both find model.onnx free and write it:
    the second, started while the first exports, is refused, and the first's file is whole."""
    import fmnist.export
    from fmnist.errors import OutputExistsError

    folder = fmnist.save_model(_trained(SPECS[0]), tmp_path / "run")
    real, seen = fmnist.export._torch_graph, []

    def second_starts_meanwhile(model):  # the export's slow part, once its file's name is chosen
        if not seen:
            seen.append("first")
            with pytest.raises(OutputExistsError, match="another fmnist command is writing there now"):
                seen.append(export_run(folder))
        return real(model)

    monkeypatch.setattr(fmnist.export, "_torch_graph", second_starts_meanwhile)
    assert export_run(folder) == folder / "model.onnx" and seen == ["first"]
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]
    assert run_onnx(folder / "model.onnx", learnable_images(np.arange(2)))["probabilities"].shape == (2, 10)
    assert export_run(folder) == folder / "model-2.onnx"  # one after the other: a name each


def test_to_onnx_replaces_an_existing_file_only_with_overwrite(tmp_path):
    from fmnist.errors import OutputExistsError

    model = create_model("softmax")
    (tmp_path / "mine.onnx").write_bytes(b"someone's file")
    with pytest.raises(OutputExistsError, match=r"mine.onnx: already exists; pass overwrite=True to replace it"):
        to_onnx(model, tmp_path / "mine.onnx")
    assert (tmp_path / "mine.onnx").read_bytes() == b"someone's file"
    to_onnx(model, tmp_path / "mine.onnx", overwrite=True)
    assert run_onnx(tmp_path / "mine.onnx", learnable_images(np.arange(2)))["probabilities"].shape == (2, 10)


def test_a_net_classifiers_input_is_described_as_it_was_fitted(tmp_path):
    """A NetClassifier fitted on floats takes them unscaled (only integer pixels are divided by
    255): the file must not tell its users to divide by 255, whether exported from the estimator
    or from its saved folder."""
    from fmnist.estimators import NetClassifier
    from fmnist.export import interface

    y = np.arange(60) % 10
    x = learnable_images(y).astype(np.float32)  # 0..255, as floats
    clf = NetClassifier("flatten,dense:8:relu,dense:10", epochs=1, device="cpu").fit(x, y)
    folder = fmnist.save_model(clf, tmp_path / "clf")
    for path in (to_onnx(clf, tmp_path / "clf.onnx"), export_run(folder)):
        said = interface(path)["input"]
        assert "the floats themselves (unscaled) where it was fitted on floats" in said, said
        np.testing.assert_allclose(run_onnx(path, x[:4])["probabilities"], clf.predict_proba(x[:4]), atol=1e-5)
    plain = fmnist.save_model(_trained(SPECS[0]), tmp_path / "net")
    assert interface(export_run(plain))["input"] == "images: float32 (N, 28, 28), pixels / 255 in [0, 1]; N is dynamic"


@pytest.mark.parametrize("classes", [10, 2])
def test_a_linear_models_description_names_the_output_that_is_its_prediction(tmp_path, classes):
    """Where one-vs-rest probabilities saturate they tie, and their argmax is not the model's
    prediction; the decision (logits) is, and the file says so."""
    from fmnist.evaluation.metrics import predictions
    from fmnist.export import interface

    est = _extreme_linear(classes)
    path = to_onnx(est, tmp_path / "lin.onnx")
    # Two classes' bands lit in one image: both their decisions large, both sigmoids 1.
    images = np.maximum(learnable_images(np.arange(200) % classes, seed=5),
                        learnable_images(np.arange(200) // classes % classes, seed=6))
    out = run_onnx(path, images)
    predicted = predictions(est, images)[1]
    said = interface(path)["outputs"]
    if classes == 2:
        assert "class 1 where it is above 0" in said, said
        np.testing.assert_array_equal((out["logits"][:, 0] > 0).astype(int), predicted)
    else:
        assert "its argmax is the prediction" in said, said
        np.testing.assert_array_equal(out["logits"].argmax(1), predicted)
        assert (out["probabilities"].argmax(1) != predicted).any()  # what the description warns of


def test_every_graph_names_its_batch_axis_as_the_description_does(tmp_path):
    import onnx

    from sklearn.linear_model import SGDClassifier

    y = np.arange(40) % 2
    models = [create_model(SPECS[0]), create_model(SPECS[2]), create_model("conv:4:3,flatten,dense:10", tta="flip"),
              SGDClassifier(loss="log_loss", max_iter=5, tol=None).fit(learnable_images(y).reshape(40, -1) / 255, y),
              _extreme_linear()]
    for i, model in enumerate(models):
        proto = onnx.load(to_onnx(model, tmp_path / f"{i}.onnx"))
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["input"].startswith("images: float32 (N, ") and "N is dynamic" in props["input"]
        for value in [*proto.graph.input, *proto.graph.output]:
            assert value.type.tensor_type.shape.dim[0].dim_param == "N", (i, value.name)
