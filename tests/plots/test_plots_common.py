import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fmnist.plots import CLASS_NAMES, save_figure
from fmnist.plots._common import as_images, pixel_limits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure():
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_class_names_fallback_has_ten_names():
    assert len(CLASS_NAMES) == 10
    assert CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[9] == "Ankle boot"


def test_save_figure_writes_png_of_figsize_times_dpi(tmp_path):
    path = save_figure(_figure(), tmp_path / "sub" / "fig.png", dpi=50)
    assert path == tmp_path / "sub" / "fig.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert Image.open(path).size == (150, 100)
    assert os.listdir(path.parent) == ["fig.png"]  # no temporary file left behind


def test_save_figure_replaces_existing_file(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    save_figure(_figure(), target)
    assert target.read_bytes()[:8] == PNG_SIGNATURE


def test_save_figure_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    fig = _figure()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["fig.png"]


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 784), (5, 1, 28, 28)])
def test_as_images_accepts_study_and_torch_layouts(shape):
    assert as_images(np.zeros(shape, np.uint8)).shape == (5, 28, 28)


@pytest.mark.parametrize("shape", [(5, 783), (28, 28, 3, 2), (784,)])
def test_as_images_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="images of shape"):
        as_images(np.zeros(shape))


def test_pixel_limits_by_dtype_and_unscaled_floats_rejected():
    assert pixel_limits(np.zeros(3, np.uint8)) == (0.0, 255.0)
    assert pixel_limits(np.ones(3)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="divide by 255"):
        pixel_limits(np.full(3, 255.0))


def test_library_never_touches_pyplot(tmp_path):
    # In a fresh interpreter: pytest or another test may have imported pyplot already.
    code = (
        "import sys, numpy as np\n"
        "from fmnist.plots import sample_row, save_figure\n"
        "from fmnist.reporting.explore import explore\n"
        "x = np.zeros((20, 28, 28), np.uint8); y = np.arange(20) % 10\n"
        f"explore(x, y, x, y, {str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_a_title_the_font_cannot_draw_saves_without_a_warning(tmp_path):
    import warnings

    fig = Figure()
    fig.suptitle("靴.png")  # a file named in a script DejaVu Sans lacks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_figure(fig, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0
