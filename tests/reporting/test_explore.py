import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from fmnist.plots import CLASS_NAMES
from fmnist.reporting.explore import FIGURES, explore, format_explore

STUDY_FIRST_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    y_train = np.array(STUDY_FIRST_LABELS + [1, 1, 4, 6, 8] * 8, dtype=np.uint8)  # 50 labels
    x_train = rng.integers(0, 256, size=(len(y_train), 28, 28), dtype=np.uint8)
    y_test = np.arange(20, dtype=np.uint8) % 10
    x_test = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    return x_train, y_train, x_test, y_test


def test_explore_writes_the_four_figures(data, tmp_path):
    out = tmp_path / "new" / "explore"
    result = explore(*data, out, dpi=40)
    assert result.files == [str(out / name) for name in FIGURES]
    for f in result.files:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        width, height = Image.open(f).size
        assert width > 0 and height > 0
    assert Image.open(out / "samples.png").size == (400, 60)  # 10 x 1.5 inches at 40 dpi (titled images)


def test_the_sample_row_is_labelled_as_the_study_prints_it(data, tmp_path, monkeypatch):
    import fmnist.reporting.explore as module

    seen = {}
    real = module.sample_row

    def spy(images, n=10, labels=None, class_names=CLASS_NAMES):
        seen.update(labels=labels, class_names=class_names)
        return real(images, n=n, labels=labels, class_names=class_names)

    monkeypatch.setattr(module, "sample_row", spy)
    explore(*data, tmp_path / "e", dpi=20, class_names=CLASS_NAMES)
    assert list(seen["labels"][:10]) == STUDY_FIRST_LABELS and list(seen["class_names"]) == list(CLASS_NAMES)


def test_earlier_figures_are_kept_unless_overwrite(data, tmp_path):
    from fmnist.errors import OutputExistsError

    (tmp_path / "samples.png").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="samples.png: already holds an earlier exploration"):
        explore(*data, tmp_path, dpi=20)
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"] and (tmp_path / "samples.png").read_bytes() == b"mine"
    assert len(explore(*data, tmp_path, dpi=20, overwrite=True).files) == 4


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_exploration_into_the_folder_of_one_being_drawn_is_refused(data, tmp_path, monkeypatch, overwrite):
    import os

    import fmnist.reporting.explore as module
    from fmnist.errors import OutputExistsError

    out = tmp_path / "e"
    draw, second = module.class_counts, []

    def and_a_second_exploration(*args, **kwargs):  # started while the first is drawing, two figures done
        if not second:
            second.append(None)
            with pytest.raises(OutputExistsError, match=rf"e: another fmnist command is writing there now \(process "
                                                        rf"{os.getpid()}\)"):
                explore(*data, out, dpi=20, overwrite=overwrite)
        return draw(*args, **kwargs)

    monkeypatch.setattr(module, "class_counts", and_a_second_exploration)
    assert len(explore(*data, out, dpi=20).files) == 4 and second


@pytest.fixture(scope="module")
def result(data, tmp_path_factory):
    """One exploration shared by the tests that only read its result: rendering takes ~1 s."""
    return explore(*data, tmp_path_factory.mktemp("explore"))


def test_explore_facts_are_what_the_study_prints(data, result):
    x_train, y_train, _, _ = data
    classes, counts = np.unique(y_train, return_counts=True)
    assert result.classes == classes.tolist() and result.counts == counts.tolist()
    assert result.first_labels == STUDY_FIRST_LABELS
    assert result.shapes == {
        "train_input": (50, 28, 28),
        "train_target": (50,),
        "test_input": (20, 28, 28),
        "test_target": (20,),
    }
    assert set(result.dtypes.values()) == {"uint8"}
    assert result.class_names == list(CLASS_NAMES)
    assert json.loads(json.dumps(result.to_dict()))["shapes"]["train_input"] == [50, 28, 28]


def test_format_explore_mirrors_the_study_output(result):
    text = format_explore(result)
    lines = text.splitlines()
    assert lines[0] == "train_input  (50, 28, 28) uint8"
    assert lines[1] == "train_target (50,) uint8"
    assert "np.unique(train_target, return_counts=True)" in lines
    assert "(array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=uint8), array([3, 16, 2, 1, 8, 2, 8, 1, 8, 1]))" in lines
    assert "first ten labels: [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]" in lines
    assert "  9 Ankle boot" in lines
    assert lines[-5] == "wrote 4 figures:"
    assert lines[-4:] == [f"  {f}" for f in result.files]
    assert lines[-1].endswith("class_means.png")


def test_format_explore_omits_default_int_dtype(result):
    # numpy prints no dtype for its default int; an int64-labelled dataset reads the same way.
    dtypes = {**result.dtypes, "train_target": "int64"}
    text = format_explore(dataclasses.replace(result, dtypes=dtypes))
    assert "(array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), array(" in text


def test_an_exploration_interrupted_over_an_earlier_one_leaves_that_one_whole(data, tmp_path, monkeypatch):
    import fmnist.reporting.explore as module

    out = tmp_path / "e"
    explore(*data, out, dpi=20)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):  # Ctrl-C at the third figure, two drawn
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "class_counts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        explore(*data, out, dpi=30, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
