"""The photo pipeline: a dataset image dressed up as a catalogue photo comes back as itself."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmnist.inference.preprocess import is_dataset_style, prepare_image
from tests.conftest import learnable_images


def garment(label: int = 3, seed: int = 5) -> np.ndarray:
    """A dataset-style uint8 (28, 28) image: light band (the class) on dark noise."""
    return learnable_images(np.array([label]), seed)[0]


def as_photo(image: np.ndarray, *, scale: int = 10, canvas=(430, 380), at=(37, 71), blur: float = 1.0,
             fmt: str = "JPEG") -> Image.Image:
    """Enlarge, invert to dark on white, paste off-centre on a white canvas, blur, save, reopen."""
    big = Image.fromarray(255 - image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    photo = Image.new("L", canvas, 255)
    photo.paste(big, at)
    photo = photo.filter(ImageFilter.GaussianBlur(blur)).convert("RGB")
    buf = io.BytesIO()
    photo.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    buf.seek(0)
    return Image.open(buf)


def closeness(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean absolute difference in grey levels, correlation) of two uint8 images."""
    a, b = a.astype(float), b.astype(float)
    return float(np.abs(a - b).mean()), float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_photo_comes_back_close_to_the_dataset_image():
    original = garment()
    out, how, _ = prepare_image(as_photo(original))
    assert how == "photo"
    assert out.shape == (28, 28) and out.dtype == np.uint8
    mad, r = closeness(out, original)
    assert mad < 20 and r > 0.9, (mad, r)
    # The class's band is where it was: rows 8..9 for class 3, light; the rest is darker.
    assert out[8:10, 6:22].mean() > 180 > out[14:, 6:22].mean()


def test_placement_and_canvas_size_do_not_matter():
    original = garment()
    a = prepare_image(as_photo(original, canvas=(300, 300), at=(10, 10))).image
    b = prepare_image(as_photo(original, canvas=(900, 500), at=(600, 200))).image
    mad, r = closeness(a, b)
    assert mad < 8 and r > 0.97, (mad, r)


def test_dataset_image_is_taken_as_is():
    original = garment()
    out, how, _ = prepare_image(Image.fromarray(original))
    assert how == "as-is"
    np.testing.assert_array_equal(out, original)
    assert is_dataset_style(Image.fromarray(original))
    assert not is_dataset_style(Image.fromarray(255 - original))


def test_28x28_dark_on_light_is_treated_as_a_photo():
    original = garment()
    out, how, _ = prepare_image(Image.fromarray(255 - original))
    assert how == "photo"
    assert closeness(out, original)[1] > 0.9


def test_large_light_on_dark_image_is_not_negated():
    original = garment()
    big = Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (400, 400), 0)
    canvas.paste(big, (60, 20))
    out, how, _ = prepare_image(canvas)
    assert how == "light-on-dark"
    assert closeness(out, original)[1] > 0.9


def test_grey_background_ends_up_black():
    """A studio-grey backdrop becomes the dataset's black, not grey."""
    original = garment()
    big = Image.fromarray(255 - original).resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (300, 500), 200)
    # Map the image's white to the backdrop's grey, as a photo on grey paper would be.
    canvas.paste(Image.fromarray((np.asarray(big) * (200 / 255)).astype(np.uint8)), (10, 100))
    out = prepare_image(canvas).image
    assert closeness(out, original)[1] > 0.9


def _rgba_on_transparent(original: np.ndarray) -> Image.Image:
    photo = as_photo(original, fmt="PNG").convert("RGBA")
    a = np.asarray(photo).copy()
    white = (a[..., :3] > 250).all(axis=2)
    a[white] = (0, 0, 0, 0)  # transparent, and black underneath: compositing must use white
    return Image.fromarray(a, mode="RGBA")


@pytest.mark.parametrize("mode", ["RGBA-transparent", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_pillow_mode_gives_the_same_result(mode):
    original = garment()
    reference = prepare_image(as_photo(original, fmt="PNG")).image
    photo = as_photo(original, fmt="PNG")
    if mode == "RGBA-transparent":
        image = _rgba_on_transparent(original)
    elif mode in ("I;16", "I"):
        image = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)  # 16-bit: 0..65535
        assert image.mode == "I;16"
        image = image if mode == "I;16" else image.convert("I")
    elif mode == "F":
        image = Image.fromarray(np.asarray(photo.convert("L")).astype(np.float32) / 255.0)
    elif mode == "1":
        image = photo.convert("1", dither=Image.Dither.NONE)
        # Thresholded, the noise turns white and only the band is left to trim to: compare
        # with the same black-and-white picture given as 8-bit grey.
        reference = prepare_image(image.convert("L")).image
    else:
        image = photo.convert(mode)
    out, how, _ = prepare_image(image)
    assert how == "photo"
    mad, r = closeness(out, reference)
    assert r > 0.97, (mode, mad, r)


def test_exif_orientation_is_applied():
    original = garment()
    upright = as_photo(original)
    # Stored rotated, with the EXIF tag saying "rotate 90 degrees clockwise to view" (6).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=90, exif=exif)
    buf.seek(0)
    out = prepare_image(Image.open(buf)).image
    assert closeness(out, prepare_image(upright).image)[1] > 0.95
