"""Start-up stays light: the commands that need no model import no torch, scikit-learn or matplotlib.

Each case runs in a fresh interpreter and reports which heavy libraries it imported; no timing
(the CI machine's speed is not ours to assert), only what was loaded.
"""

from __future__ import annotations

import json
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


def test_predicting_one_photo_with_a_cnn_needs_torch_and_the_photo_pipeline_only(tmp_path):
    """The network needs torch; a photo's segmentation needs scikit-image's thresholds and
    scipy.ndimage. Nothing else (no numba compile, scikit-learn or matplotlib), nor the parts of
    scikit-image and scipy that cost start-up time and that one photo does not use."""
    from PIL import Image

    model = fmnist.create_model("cnn-book")
    fmnist.save_model(model, tmp_path / "model", class_names=fmnist.CLASS_NAMES)
    photo = Image.new("RGB", (60, 80), "white")  # a garment to find: dark on white, room all round
    photo.paste((120, 20, 20), (15, 10, 45, 70))
    photo.save(tmp_path / "photo.jpg")
    predict = cli("predict", str(tmp_path / "model"), str(tmp_path / "photo.jpg"))
    assert loaded_after(predict) == ["scipy", "torch"]
    unused = ("skimage.morphology", "skimage.measure", "scipy.spatial", "scipy.linalg", "scipy.sparse",
              "scipy.stats", "scipy.optimize")
    assert loaded_after(predict, watch=unused) == []
