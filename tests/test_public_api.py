"""The chosen public API of ``import fmnist``: every name resolves, and the import itself is cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fmnist


@pytest.mark.parametrize("name", [n for n in fmnist.__all__ if n != "__version__"])
def test_public_names_resolve(name):
    assert getattr(fmnist, name) is not None
    assert name in dir(fmnist)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'train_everything'"):
        fmnist.train_everything  # noqa: B018


def test_import_does_not_load_torch_or_sklearn():
    src = Path(fmnist.__file__).parents[1]
    code = "import sys, fmnist; print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(src), "PATH": ""}).stdout
    assert out.strip() == "[]"


def test_dir_shows_only_the_public_api():
    assert dir(fmnist) == sorted(fmnist.__all__)
    for leaked in ("importlib", "annotations"):  # helpers of the module itself, not API
        assert not hasattr(fmnist, leaked)
