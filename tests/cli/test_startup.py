"""Start-up stays light: the commands that need no model import no torch, scikit-learn or matplotlib.

Each case runs in a fresh interpreter and reports which heavy libraries it imported; no timing
(the CI machine's speed is not ours to assert), only what was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fmnist

SRC = Path(fmnist.__file__).parents[1]
HEAVY = ("torch", "sklearn", "matplotlib", "numba", "scipy", "ray", "fastapi", "cleanlab", "onnx")


def loaded_after(code: str, env: dict | None = None, watch: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``watch`` (packages, or modules with their submodules) are in sys.modules after
    ``code`` ran in a fresh interpreter."""
    probe = (f"{code}\nimport sys, json\nprint(json.dumps(sorted(w for w in {list(watch)!r} "
             "if any(m == w or m.startswith(w + '.') for m in sys.modules))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "", **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli(*argv: str) -> str:
    """Code that runs ``fmnist ARGV`` quietly and fails unless it succeeds."""
    return ("import contextlib, io\nfrom fmnist.cli.main import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        assert main({list(argv)!r}) == 0\n    except SystemExit as exc:\n"
            "        assert exc.code == 0")


@pytest.mark.parametrize("argv", [("--help",), ("models",), ("models", "conv:8:3,maxpool:2,flatten,dense:10"),
                                  ("train", "--help")], ids=" ".join)
def test_commands_without_a_model_import_no_heavy_library(argv):
    assert loaded_after(cli(*argv)) == []


def test_describing_every_preset_imports_no_heavy_library():
    """`fmnist models NAME` prints a network's recipe (TrainConfig, the optimizers' defaults) and
    a scikit-learn preset's parameters without importing either library."""
    code = "\n".join(cli("models", name) for name in fmnist.list_models())
    assert len(fmnist.list_models()) >= 10 and loaded_after(code) == []


def test_import_fmnist_and_its_light_names_import_no_heavy_library():
    assert loaded_after("import fmnist\nfmnist.CLASS_NAMES\nfmnist.list_models()\nfmnist.__version__") == []


def _model_and_photo(tmp_path, preset="cnn-book"):
    from PIL import Image

    fmnist.save_model(fmnist.create_model(preset), tmp_path / "model", class_names=fmnist.CLASS_NAMES)
    photo = Image.new("RGB", (60, 80), "white")  # a garment to find: dark on white, room all round
    photo.paste((120, 20, 20), (15, 10, 45, 70))
    photo.save(tmp_path / "photo.jpg")
    return tmp_path / "model", tmp_path / "photo.jpg"


def test_predicting_one_photo_with_a_cnn_needs_torch_only_here(tmp_path):
    """The network needs torch; the photo is read and segmented in a forked process meanwhile
    (see test_a_photo_is_prepared_beside_the_model_load), so this process imports nothing else:
    no numba compile, scikit-learn or matplotlib, and not even the photo pipeline's scipy."""
    model, photo = _model_and_photo(tmp_path)
    expected = ["torch"] if len(os.sched_getaffinity(0)) > 1 else ["scipy", "torch"]
    assert loaded_after(cli("predict", str(model), str(photo))) == expected


def test_preparing_a_photo_needs_the_photo_pipeline_only(tmp_path):
    """A photo's segmentation needs scikit-image's thresholds and scipy.ndimage, not the parts of
    scikit-image and scipy that cost start-up time and that one photo does not use."""
    _, photo = _model_and_photo(tmp_path)
    prepare = f"from fmnist.inference.predict import load_inputs\nassert load_inputs([{str(photo)!r}])[0]"
    assert loaded_after(prepare) == ["scipy"]
    unused = ("skimage.morphology", "skimage.measure", "scipy.spatial", "scipy.linalg", "scipy.sparse",
              "scipy.stats", "scipy.optimize")
    assert loaded_after(prepare, watch=unused) == []


# In a fresh interpreter: which process read the images, and what was predicted. A child that
# dies before answering (FAIL_IN_CHILD) must leave the parent to read them itself.
_WHO_READ = """
import os, sys, json
import fmnist.inference.predict as P
parent, read_in, original = os.getpid(), [], P.load_inputs
def load_inputs(paths):
    if os.getpid() != parent and os.environ.get("FAIL_IN_CHILD"):
        os._exit(3)
    read_in.append("child" if os.getpid() != parent else "parent")
    return original(paths)
P.load_inputs = load_inputs
r = P.predict_files({model!r}, [{photo!r}, "missing.png"])
print(json.dumps({{"parent_read": read_in, "labels": [p.class_name for p in r.predictions],
                   "failures": [str(f) for f in r.failures], "torch": "torch" in sys.modules}}))
"""


def _who_read(model, photo, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", _WHO_READ.format(model=str(model), photo=str(photo))],
                         capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the overlap needs a second CPU")
def test_a_photo_is_prepared_beside_the_model_load(tmp_path):
    """`fmnist predict RUN one.jpg` spends most of its time importing torch on one core: the
    images are read in a forked child meanwhile, and come back to the parent whole (failures too)."""
    model, photo = _model_and_photo(tmp_path, "mlp-200")
    beside = _who_read(model, photo)
    assert beside["parent_read"] == [] and beside["torch"]  # read in the child, not here
    assert len(beside["labels"]) == 1 and beside["failures"] == ["missing.png: no such file"]
    # The same answer when the child dies: the parent reads the images itself.
    fallback = _who_read(model, photo, FAIL_IN_CHILD="1")
    assert fallback["parent_read"] == ["parent"]
    assert (fallback["labels"], fallback["failures"]) == (beside["labels"], beside["failures"])
