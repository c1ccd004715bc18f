import pytest

from fmnist._threads import torch_threads
from fmnist.models import _batches


@pytest.fixture(params=["one slice", "slices"])
def slices(request, monkeypatch):
    """The compiled kernels on the whole batch at once, and on slices of it on two threads."""
    if request.param == "slices":
        monkeypatch.setattr(_batches, "min_slice_images", 1)
    with torch_threads(2):
        yield request.param
