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


def framed_garment(label: int = 3, seed: int = 5) -> np.ndarray:
    """:func:`garment` with its noise lifted clear of the background (at least 90).

    Photographed, the whole square is then the garment, so the band (the class) stays where it
    was in the square; with the noise as faint as a shadow, only the band would be found.
    """
    return np.maximum(garment(label, seed), 90).astype(np.uint8)


def shirt() -> np.ndarray:
    """A dataset-style garment: a T-shirt silhouette, light and textured on exact black, as in Fashion-MNIST."""
    a = np.zeros((28, 28), np.uint8)         # the longest side fills the 28 pixels, as in the dataset
    a[0:28, 8:20] = 200                      # body
    a[0:8, 2:26] = 200                       # sleeves
    a[0:2, 12:16] = 0                        # neckline
    a[12:14, 8:20] = 120                     # a stripe
    a[0:28, 8:20] += (np.arange(12) % 3 * 15).astype(np.uint8)  # weave
    return a


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
    original = shirt()
    out, how, _ = prepare_image(as_photo(original))
    assert how == "photo"
    assert out.shape == (28, 28) and out.dtype == np.uint8
    mad, r = closeness(out, original)
    assert mad < 25 and r > 0.9, (mad, r)
    # The stripe is where it was, darker than the body around it; the background is black.
    assert out[12:14, 9:19].mean() < out[16:24, 9:19].mean() - 40
    assert out[20:, :5].max() < 30


def test_placement_and_canvas_size_do_not_matter():
    """Beyond the rounding of the garment's box to whole pixels (one pixel at most), they change nothing."""
    original = shirt()
    a = prepare_image(as_photo(original, canvas=(300, 300), at=(10, 10))).image
    b = prepare_image(as_photo(original, canvas=(900, 500), at=(600, 200))).image
    assert np.abs(np.array(_bbox(a)) - np.array(_bbox(b))).max() <= 1, (_bbox(a), _bbox(b))
    for out in (a, b):
        assert closeness(out, original)[1] > 0.94


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
    original = shirt()
    big = Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (400, 400), 0)
    canvas.paste(big, (60, 20))
    out, how, _ = prepare_image(canvas)
    assert how == "light-on-dark"
    assert closeness(out, original)[1] > 0.9


def test_grey_background_ends_up_black():
    """A studio-grey backdrop becomes the dataset's black, not grey."""
    original = shirt()
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


def test_a_light_garment_cut_out_on_transparency_is_found():
    # A white shirt cut out (a product photo's PNG): on white it would vanish; it is the garment.
    original = shirt()
    big = np.asarray(Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC))
    a = np.zeros((400, 360, 4), np.uint8)
    a[60:340, 40:320, :3] = 255
    a[60:340, 40:320, 3] = np.where(big > 40, 255, 0)
    out, how, warning = prepare_image(Image.fromarray(a, mode="RGBA"))
    assert how == "light-on-dark" and warning is None
    assert closeness(out, prepare_image(as_photo(original)).image)[1] > 0.9


@pytest.mark.parametrize("mode", ["RGBA-transparent", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_pillow_mode_gives_the_same_result(mode):
    original = shirt()
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
    assert r > (0.95 if mode == "P" else 0.97), (mode, mad, r)  # P: Pillow's web palette quantises the greys


def test_exif_orientation_is_applied():
    original = shirt()
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


def _bbox(image: np.ndarray, level: int = 30) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((image > level).any(1)), np.flatnonzero((image > level).any(0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def test_phone_photos_come_back_like_the_dataset_image():
    """Tinted background, uneven light, a shadow, noise, a tilt, JPEG: the garment is found and framed."""
    from fmnist.inference.photos import phone_photo

    original = shirt()
    rs = []
    for seed in range(8):
        out, how, warning = prepare_image(Image.open(io.BytesIO(phone_photo(original, seed))))
        assert how == "photo"
        top, bottom, left, right = _bbox(out)
        # Up to 6 degrees of tilt make the upright box taller than the garment itself.
        assert bottom - top >= 22 and (left + right) / 2 == pytest.approx(13.5, abs=1.5), (seed, _bbox(out))
        rs.append(closeness(out, original)[1])
    assert np.median(rs) > 0.7, rs  # a tilt of up to 6 degrees alone costs some correlation


def test_beige_background_with_a_light_gradient():
    """A garment on beige, the light 5% stronger on one side, mild noise: framed as on white."""
    original = shirt()
    big = np.asarray(Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC), dtype=float) / 255
    h, w = 600, 500
    reflect = np.ones((h, w, 3)) * np.array([0.93, 0.85, 0.72])      # beige
    reflect[150:430, 110:390] *= 1 - big[..., None]
    light = 1 + 0.05 * np.linspace(-1, 1, w)[None, :, None]
    rgb = 255 * reflect * light + np.random.default_rng(0).normal(0, 3, (h, w, 3))
    out, _, warning = prepare_image(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)))
    assert warning is None
    assert closeness(out, original)[1] > 0.9
    assert _bbox(out)[:2] == (0, 27) or _bbox(out)[1] - _bbox(out)[0] >= 26


def test_clean_photo_has_no_warning():
    assert prepare_image(as_photo(shirt())).warning is None


@pytest.mark.parametrize("case, words", [
    ("blank", "nothing stands out"),
    ("cut off", "edge"),
    ("two garments", "several"),
    ("tiny", "tiny"),
])
def test_doubtful_crops_are_flagged(case, words):
    photo = np.full((400, 400), 235.0)
    garment = 255.0 - np.asarray(Image.fromarray(shirt()).resize((140, 140), Image.Resampling.BICUBIC), dtype=float)
    if case == "cut off":
        photo[-100:, 100:240] = garment[:100]
    elif case == "two garments":
        photo[20:160, 20:160] = garment
        photo[220:360, 230:370] = garment
    elif case == "tiny":
        small = 255.0 - np.asarray(Image.fromarray(shirt()).resize((20, 20)), dtype=float)
        photo[200:220, 200:220] = small * (235 / 255)
    photo += np.random.default_rng(1).normal(0, 2, photo.shape)
    result = prepare_image(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)))
    assert result.warning is not None and words in result.warning, (case, result.warning)


def test_parts_of_a_mask_touch_by_edges_and_corners_as_scikit_image_labels_them():
    """The garment's parts (specks dropped, "several objects" warned) are scikit-image's
    ``measure.label`` components, label for label: diagonal neighbours belong together."""
    from skimage.measure import label

    from fmnist.inference.preprocess import _components

    diagonal = np.eye(4, dtype=bool)
    assert _components(diagonal).max() == 1
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.7):
        mask = rng.random((40, 37)) < density
        np.testing.assert_array_equal(_components(mask), label(mask))


def _lit(original: np.ndarray, light: np.ndarray, angle: float = 0.0, seed: int = 0) -> Image.Image:
    """A 600 x 500 photo of ``original`` (enlarged to 280 pixels, turned by ``angle`` degrees) on grey, under ``light``."""
    big = Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC)
    big = np.asarray(big.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True), dtype=float) / 255
    h, w = 600, 500
    reflect = np.full((h, w), 0.8)
    top, left = (h - big.shape[0]) // 2, (w - big.shape[1]) // 2
    reflect[top:top + big.shape[0], left:left + big.shape[1]] *= 1 - 0.95 * big
    gray = 255 * reflect * light + np.random.default_rng(seed).normal(0, 2, (h, w))
    return Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).convert("RGB")


def test_a_tilted_garment_is_set_upright():
    original = shirt()
    for angle in (-6, 5):
        out, _, warning = prepare_image(_lit(original, np.ones((600, 500)), angle))
        assert warning is None
        assert closeness(out, original)[1] > 0.93, angle
        top, bottom, left, right = _bbox(out)
        assert bottom - top >= 26 and right - left <= 24, (angle, _bbox(out))   # as tall and narrow as upright


def test_a_soft_shadow_beside_a_faint_garment_is_light_not_garment():
    """A shadow as dark as the garment itself, but soft-edged: taken out with the light."""
    from scipy.ndimage import gaussian_filter

    original = (shirt() * 0.4).astype(np.uint8)   # a pale garment: about 30 % darker than the table
    blob = np.zeros((600, 500))
    yy, xx = np.mgrid[0:600, 0:500]
    blob[((yy - 300) / 170) ** 2 + ((xx - 420) / 150) ** 2 <= 1] = 1   # touching the garment's right side
    light = 1 - 0.3 * gaussian_filter(blob, 50)
    out, _, warning = prepare_image(_lit(original, light))
    assert warning is None
    top, bottom, left, right = _bbox(out)
    assert (top, bottom) == (0, 27) and right - left <= 25, _bbox(out)
    assert closeness(out, original)[1] > 0.93


def test_a_whole_garment_close_to_the_edge_is_not_doubted():
    """A few pixels of background below it: not cut off, whatever the smoothing of its mask."""
    photo = np.full((400, 400), 235.0)
    garment = 255.0 - np.asarray(Image.fromarray(shirt()).resize((140, 140), Image.Resampling.BICUBIC), dtype=float)
    photo[-144:-4, 100:240] = np.minimum(garment, 235.0)
    photo += np.random.default_rng(1).normal(0, 2, photo.shape)
    result = prepare_image(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)))
    assert result.warning is None, result.warning


def test_an_odd_pixel_to_spare_goes_left_and_top_as_in_the_dataset():
    """A garment 28 pixels tall and 23 wide: 3 columns of black on its left, 2 on its right."""
    narrow = np.zeros((28, 28), np.uint8)
    narrow[:, 3:26] = 180
    narrow[:, 3:26] += (np.arange(23) % 4 * 10).astype(np.uint8)   # some texture
    out = prepare_image(as_photo(narrow)).image
    assert _bbox(out, level=60) == (0, 27, 3, 25), _bbox(out, level=60)
    wide = prepare_image(as_photo(narrow.T.copy())).image
    assert _bbox(wide, level=60) == (3, 25, 0, 27), _bbox(wide, level=60)


def test_every_dataset_image_is_taken_as_is_and_its_negative_as_a_photo(real_data):
    # Bags and pullovers that fill the frame light up the middle of its edges: still dataset images.
    images = np.concatenate([real_data.x_train, real_data.x_test])
    taken = np.array([is_dataset_style(Image.fromarray(a)) for a in images])
    assert taken.all(), f"{(~taken).sum()} dataset images taken for photos, e.g. index {np.flatnonzero(~taken)[:5]}"
    assert not any(is_dataset_style(Image.fromarray(255 - a)) for a in images[::50])
