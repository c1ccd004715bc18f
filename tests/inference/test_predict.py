"""`fmnist predict`: photos, batches, bad files, JSON, exit codes, with a model trained on tiny data."""

import io
import json
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.cli.main import main
from fmnist.data import write_idx
from fmnist.errors import UsageError
from fmnist.inference import predict as predict_mod
from fmnist.inference.predict import load_inputs, predict_files
from tests.conftest import learnable_images
from tests.inference.test_preprocess import as_photo, framed_garment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run


@pytest.fixture
def photos(tmp_path):
    """Catalogue-style JPEG photos of classes 3 and 7, and a PNG one of class 5."""
    paths = {}
    for label, fmt in ((3, "JPEG"), (7, "JPEG"), (5, "PNG")):
        path = tmp_path / f"class{label}.{'jpg' if fmt == 'JPEG' else 'png'}"
        as_photo(framed_garment(label, seed=10 + label), fmt=fmt).save(path)
        paths[label] = path
    return paths


def test_photos_are_predicted_as_their_class(run_dir, photos):
    result = predict_files(run_dir, list(photos.values()), top_k=3)
    assert not result.failures
    assert [p.label for p in result.predictions] == list(photos)
    for p in result.predictions:
        assert p.input.how == "photo"
        assert len(p.top_k) == 3
        probs = [t["probability"] for t in p.top_k]
        assert probs == sorted(probs, reverse=True) and p.probability == probs[0]
        assert abs(p.proba.sum() - 1) < 1e-5


def test_json_schema_and_batches(run_dir, photos, tmp_path, capsys):
    batch = learnable_images(np.array([1, 2, 8]), seed=3)
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "one.npy", batch[0])
    write_idx(tmp_path / "images-idx3-ubyte", batch)
    files = [photos[3], tmp_path / "batch.npy", tmp_path / "one.npy", tmp_path / "images-idx3-ubyte"]
    code = main(["predict", str(run_dir), *map(str, files), "--json", "--top-k", "2"])
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["errors"] == []
    out = answer["predictions"]
    assert len(out) == 1 + 3 + 1 + 3
    for item in out:
        assert set(item) - {"index"} == {"file", "label", "class_name", "probability", "top_k", "prepared"}
        assert len(item["top_k"]) == 2
        assert set(item["top_k"][0]) == {"label", "class_name", "probability"}
        assert item["top_k"][0]["label"] == item["label"] and item["probability"] == item["top_k"][0]["probability"]
        assert isinstance(item["label"], int) and 0 <= item["probability"] <= 1
    assert [o.get("index") for o in out] == [None, 0, 1, 2, None, 0, 1, 2]
    assert [o["prepared"] for o in out] == ["photo"] + ["batch"] * 7  # what the text output shows in brackets
    assert [o["label"] for o in out] == [3, 1, 2, 8, 1, 1, 2, 8]
    assert out[1]["file"] == str(tmp_path / "batch.npy")


def test_text_output(run_dir, photos, capsys):
    assert main(["predict", str(run_dir), str(photos[7]), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{photos[7]} (photo): ") and len(lines) == 4


def _png_header_only(width: int, height: int) -> bytes:
    """A 100-byte PNG claiming width x height pixels: a header, one tiny IDAT chunk, the end."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _tiff_with_a_page_without_width() -> bytes:
    """A good 28x28 TIFF page, then a second page with its height but no width (Pillow: TypeError)
    and a tag whose data lies past the end of the file (Pillow warns, and logs as it reads)."""
    buf = io.BytesIO()
    Image.new("L", (28, 28), 128).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    if len(data) % 2:
        data += b"\0"  # an IFD starts on a word boundary
    ifd = struct.unpack_from("<I", data, 4)[0]
    struct.pack_into("<I", data, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], len(data))
    entries = struct.pack("<HHII", 257, 3, 1, 10) + struct.pack("<HHII", 339, 3, 1000, 0xFFFFFF)
    return bytes(data + struct.pack("<H", 2) + entries + struct.pack("<I", 0))


def _bad_files(tmp_path, photos) -> dict[str, tuple]:
    """name -> (path, words the one-line reason must contain)."""
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("these are not pixels\n")
    good_png = photos[5].read_bytes()
    (tmp_path / "cut.png").write_bytes(good_png[: len(good_png) // 2])
    good_jpg = photos[3].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good_jpg[: len(good_jpg) // 2])
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 32, 32), np.uint8))
    write_idx(tmp_path / "labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "pages.tiff").write_bytes(_tiff_with_a_page_without_width())
    np.save(tmp_path / "text.npy", np.full((28, 28), "a"))
    # The start of an iPhone photo: an ISO media file of brand heic (Pillow has no HEIF reader).
    (tmp_path / "IMG_0001.HEIC").write_bytes(struct.pack(">I", 24) + b"ftypheic" + b"\0" * 4 + b"mif1heic" + b"\0" * 64)
    return {
        "empty": (tmp_path / "empty.png", "empty"),
        "not an image": (tmp_path / "notes.jpg", "not an image"),
        "truncated png": (tmp_path / "cut.png", "truncated"),
        "truncated jpeg": (tmp_path / "cut.jpg", "truncated"),
        "absurd size": (tmp_path / "bomb.png", "large"),
        "wrong npy shape": (tmp_path / "wrong.npy", "(3, 32, 32)"),
        "idx labels": (tmp_path / "labels-idx1-ubyte", "(5,)"),
        "missing": (tmp_path / "nope.png", "no such file"),
        "folder": (tmp_path / "folder.png", "folder"),
        "tiff page without dimensions": (tmp_path / "pages.tiff", "damaged"),
        "npy of strings": (tmp_path / "text.npy", "dtype <U1"),
        "HEIC photo": (tmp_path / "IMG_0001.HEIC", "HEIC/HEIF photo, which Pillow cannot read: save it as JPEG"),
    }


def test_each_bad_file_gets_one_line_and_the_others_are_predicted(run_dir, photos, tmp_path, capsys):
    bad = _bad_files(tmp_path, photos)
    args = [str(photos[3])] + [str(p) for p, _ in bad.values()] + [str(photos[7])]
    code = main(["predict", str(run_dir), *args, "--json"])
    captured = capsys.readouterr()
    assert code == 1
    answer = json.loads(captured.out)
    out = answer["predictions"]
    assert [o["file"] for o in out] == [str(photos[3]), str(photos[7])]
    # The failures are in the JSON too, in the API's shape, one per bad file with its line's reason.
    assert [e["file"] for e in answer["errors"]] == [str(path) for path, _ in bad.values()]
    assert [f"fmnist: error: {e['file']}: {e['error']}" for e in answer["errors"]] == captured.err.strip().splitlines()
    assert [o["label"] for o in out] == [3, 7]
    err = captured.err.strip().splitlines()
    assert len(err) == len(bad)
    for line, (case, (path, words)) in zip(err, bad.items()):
        assert line.startswith(f"fmnist: error: {path}: "), case
        assert words in line, (case, line)


def test_own_pixel_limit(run_dir, photos, monkeypatch):
    monkeypatch.setattr(predict_mod, "MAX_PIXELS", 1000)
    inputs, failures = load_inputs([photos[3]])
    assert not inputs and "megapixel limit" in failures[0].reason


def test_a_phone_photo_over_pillows_pixel_limit_is_decoded_small(tmp_path):
    from PIL import ImageDraw

    # 108 megapixels, as some phones take: over Pillow's ~89, and a JPEG decoder reads it at 1/8.
    photo = Image.new("L", (12_000, 9_000), 235)
    ImageDraw.Draw(photo).rectangle((4_000, 2_000, 8_000, 7_000), fill=30)
    photo.save(tmp_path / "phone.jpg", quality=50)
    photo.resize((1_200, 900)).save(tmp_path / "small.jpg", quality=50)
    (big,), bad = load_inputs([tmp_path / "phone.jpg"])
    (small,), _ = load_inputs([tmp_path / "small.jpg"])
    assert not bad and big.how == "photo" and np.abs(big.image.astype(int) - small.image).mean() < 8
    # A JPEG that would still be too large at an eighth of its size is refused before decoding.
    data = bytearray((tmp_path / "small.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 65_000, 65_000)
    (tmp_path / "claims.jpg").write_bytes(bytes(data))
    _, (failure,) = load_inputs([tmp_path / "claims.jpg"])
    assert "absurdly large image (65000 x 65000 pixels)" in failure.reason
    assert "even decoded at an eighth of its size" in failure.reason


def test_all_files_bad_exits_1(run_dir, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["predict", str(run_dir), str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().out == ""


def test_bad_model_is_one_line(tmp_path, photos, capsys):
    assert main(["predict", str(tmp_path), str(photos[3])]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.json" in err


def test_save_preprocessed_and_plot(run_dir, photos, tmp_path, capsys):
    np.save(tmp_path / "batch.npy", learnable_images(np.array([0, 9]), seed=2))
    prep, plots = tmp_path / "prep", tmp_path / "plots"
    code = main(["predict", str(run_dir), str(photos[3]), str(tmp_path / "batch.npy"),
                 "--save-preprocessed", str(prep), "--plot", str(plots)])
    assert code == 0
    assert sorted(p.name for p in prep.iterdir()) == ["batch-0.png", "batch-1.png", "class3.png"]
    with Image.open(prep / "class3.png") as im:
        assert im.size == (28, 28) and im.mode == "L"
        saved = np.asarray(im)
    assert saved[8:10, 6:22].mean() > 180  # class 3's band, light on dark
    assert sorted(p.name for p in plots.iterdir()) == ["batch-0-proba.png", "batch-1-proba.png", "class3-proba.png"]
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_top_k_must_be_positive(run_dir, photos, capsys):
    assert main(["predict", str(run_dir), str(photos[3]), "--top-k", "0"]) == 2  # a usage error
    assert "--top-k must be at least 1" in capsys.readouterr().err


@pytest.mark.integration
def test_real_photos_predicted_like_the_originals(real_data, tmp_path):
    """A softmax trained briefly on real data gives a dressed-up test image the original's class."""
    import torch

    from fmnist.models import create_model
    from fmnist.models.io import save_model
    from fmnist.training import TrainConfig, Trainer

    torch.manual_seed(0)
    model = create_model("softmax")
    Trainer(model, TrainConfig(epochs=2, batch_size=128)).fit(real_data.x_train[:20000], real_data.y_train[:20000])
    save_model(model, tmp_path / "model", name="softmax", class_names=real_data.class_names)

    x, y = real_data.x_test[:60], real_data.y_test[:60]
    paths = []
    for i, image in enumerate(x):
        as_photo(image, at=(20 + 3 * i, 40), blur=1.5).save(tmp_path / f"{i}.jpg")
        paths.append(tmp_path / f"{i}.jpg")
    result = predict_files(tmp_path / "model", paths, top_k=1)
    from fmnist.evaluation import predict_proba

    original = predict_proba(model, x).argmax(1)
    photo = np.array([p.label for p in result.predictions])
    agree = (photo == original).mean()
    assert agree >= 0.8, agree
    # Barely trained, the softmax is right ~75% of the time; photos may cost little of that.
    assert (photo == y).mean() >= (original == y).mean() - 0.1
    # And each came back looking like its original (up to the garment's 1-pixel re-centring).
    rs = [max(np.corrcoef(np.roll(p.input.image, (dy, dx), (0, 1)).ravel().astype(float),
                          image.ravel().astype(float))[0, 1] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
          for p, image in zip(result.predictions, x)]
    assert np.median(rs) > 0.9, np.median(rs)


def test_plot_limit_caps_the_charts(run_dir, tmp_path, capsys):
    np.save(tmp_path / "batch.npy", learnable_images(np.arange(5) % 10, seed=3))
    plots = tmp_path / "plots"
    assert main(["predict", str(run_dir), str(tmp_path / "batch.npy"), "--plot", str(plots), "--plot-limit", "2"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["batch-0-proba.png", "batch-1-proba.png"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "first 2 of 5 images" in err and "skipped 3" in err and "--plot-limit" in err


def test_plot_limit_default_is_100(run_dir, tmp_path, capsys, monkeypatch):
    """50,000 images must not mean 50,000 PNGs: by default only the first 100 are charted."""
    import fmnist.plots

    drawn = []
    monkeypatch.setattr(fmnist.plots, "probability_bars", lambda proba, names, title: title)
    monkeypatch.setattr(fmnist.plots, "save_figure", lambda fig, path, dpi: drawn.append(path) or path)
    np.save(tmp_path / "batch.npy", learnable_images(np.arange(130) % 10, seed=4))
    assert main(["predict", str(run_dir), str(tmp_path / "batch.npy"), "--plot", str(tmp_path / "plots"),
                 "--json"]) == 0
    assert [p.name for p in drawn] == [f"batch-{i}-proba.png" for i in range(100)]
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["predictions"]) == 130  # every image is still predicted and printed
    assert "first 100 of 130 images" in captured.err and "skipped 30" in captured.err


def test_plot_limit_must_be_positive(run_dir, photos, tmp_path, capsys):
    assert main(["predict", str(run_dir), str(photos[3]), "--plot", str(tmp_path / "p"), "--plot-limit", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "fmnist predict: error: --plot-limit must be at least 1, got 0 (see fmnist predict --help)\n"
    assert not (tmp_path / "p").exists()
    with pytest.raises(UsageError, match="at least 1"):
        predict_mod.save_plots([], tmp_path / "p", [], limit=0)


def test_stems_never_collide_with_another_input(run_dir, photos, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "class3.png").write_bytes(photos[5].read_bytes())
    (tmp_path / "class3-2.png").write_bytes(photos[5].read_bytes())
    np.save(tmp_path / "b.npy", learnable_images(np.array([0, 9]), seed=2))
    (tmp_path / "b-1.png").write_bytes(photos[5].read_bytes())
    files = [photos[3], tmp_path / "a" / "class3.png", tmp_path / "class3-2.png", tmp_path / "b.npy",
             tmp_path / "b-1.png"]
    result = predict_files(run_dir, files)
    stems = predict_mod._stems(result.predictions)
    assert stems == ["class3", "class3-3", "class3-2", "b-0", "b-1", "b-1-2"]
    written = predict_mod.save_preprocessed(result.predictions, tmp_path / "prep")
    assert len({p.name for p in written}) == len(written) == 6


def test_both_output_places_are_checked_before_either_is_written(run_dir, photos, tmp_path, capsys):
    prep, plots = tmp_path / "prep", tmp_path / "plots"
    plots.mkdir()
    (plots / "class3-proba.png").write_bytes(b"someone's chart")
    code = main(["predict", str(run_dir), str(photos[3]), "--save-preprocessed", str(prep), "--plot", str(plots)])
    assert code == 1 and not prep.exists()
    assert (plots / "class3-proba.png").read_bytes() == b"someone's chart"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plot" in err
    (tmp_path / "afile").write_text("mine")
    assert main(["predict", str(run_dir), str(photos[3]), "--save-preprocessed", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and "--save-preprocessed" in err


def test_text_output_carries_the_crop_warning(run_dir, tmp_path, capsys):
    Image.new("RGB", (300, 400), (255, 255, 255)).save(tmp_path / "blank.png")
    assert main(["predict", str(run_dir), str(tmp_path / "blank.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("    warning: nothing stands out"), lines


def test_pillows_own_complaints_about_a_damaged_file_stay_quiet(tmp_path, caplog):
    """The file's one line is all: no warning of Pillow's, no log line of its TIFF reader."""
    (tmp_path / "pages.tiff").write_bytes(_tiff_with_a_page_without_width())
    caplog.set_level(logging.DEBUG, logger="PIL")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        inputs, failures = load_inputs([tmp_path / "pages.tiff"])
    assert not inputs and "damaged" in failures[0].reason
    assert [str(w.message) for w in seen] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("PIL")] == []


def test_a_folder_or_a_quoted_pattern_stands_for_its_images(photos, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in (3, 5):
        (folder / f"g{i}.jpg").write_bytes(photos[i].read_bytes())
    (folder / "notes.txt").write_text("not read: not an image's ending")
    (folder / "sub").mkdir()
    inputs, failures = load_inputs([folder])
    assert [i.file for i in inputs] == [str(folder / "g3.jpg"), str(folder / "g5.jpg")] and not failures
    inputs, failures = load_inputs([tmp_path / "shots" / "*.jpg", tmp_path / "none" / "*.png", tmp_path / "sub"])
    assert [i.file for i in inputs] == [str(folder / "g3.jpg"), str(folder / "g5.jpg")]
    assert [(f.file, f.reason.split(" no ")[0]) for f in failures] == [
        (str(tmp_path / "none" / "*.png"), "this pattern matches"), (str(tmp_path / "sub"), "no such file")]
    (folder / "sub" / "x.txt").write_text("")
    _, (failure,) = load_inputs([folder / "sub"])
    assert failure.reason.startswith("this folder holds no images")


def test_arrays_with_a_channel_axis_are_images_and_floats_of_0_to_255_get_a_hint(tmp_path):
    batch = learnable_images(np.array([1, 4, 8]), seed=3)
    np.save(tmp_path / "plain.npy", batch)
    np.save(tmp_path / "keras.npy", batch[..., None])  # (N, 28, 28, 1), as the book's CNN chapter reshapes
    np.save(tmp_path / "torch.npy", batch[:, None])  # (N, 1, 28, 28)
    np.save(tmp_path / "one.npy", batch[0][..., None])  # (28, 28, 1)
    np.save(tmp_path / "floats.npy", batch.astype(np.float32))  # 0..255, not divided
    inputs, failures = load_inputs([tmp_path / n for n in ("plain.npy", "keras.npy", "torch.npy", "one.npy")])
    assert not failures and len(inputs) == 10
    for k in (1, 2):
        for i in range(3):
            np.testing.assert_array_equal(inputs[3 * k + i].image, inputs[i].image)
    np.testing.assert_array_equal(inputs[9].image, inputs[0].image)
    _, (failure,) = load_inputs([tmp_path / "floats.npy"])
    assert failure.reason.endswith("floats of 0..255: divide them by 255, or save them as uint8")


def test_a_datasets_folder_stands_for_its_images_not_its_labels(tiny_dir):
    # An MNIST-format folder: two image files (idx3) and two label files (idx1), which are no images.
    inputs, failures = load_inputs([tiny_dir])
    assert not failures and len(inputs) == 250
    assert {Path(i.file).name for i in inputs} == {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"}


def test_a_label_is_the_models_label_value_not_its_column(tmp_path):
    """A scikit-learn model fitted on data labelled 3 and 7 has columns 0 and 1: 'label' says 3 or 7."""
    from sklearn.linear_model import SGDClassifier

    from fmnist.models.io import save_model

    y = np.where(np.arange(60) % 2, 7, 3)
    x = learnable_images(y)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x.reshape(60, -1) / 255.0, y)
    save_model(model, tmp_path / "m")
    np.save(tmp_path / "x.npy", x[:6])
    result = predict_files(tmp_path / "m", [tmp_path / "x.npy"], top_k=2)
    assert [p.label for p in result.predictions] == y[:6].tolist()
    assert [p.class_name for p in result.predictions] == [str(v) for v in y[:6]]
    assert all({t["label"] for t in p.top_k} == {3, 7} for p in result.predictions)
