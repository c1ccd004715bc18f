"""Turn a photo into a Fashion-MNIST image: 28x28 uint8, the garment light on black.

Fashion-MNIST was made from catalogue thumbnails by seven steps (Xiao, Rasul & Vollgraf 2017,
arXiv:1708.07747, section 2), which :func:`photo_to_dataset` follows:

1. trim the edges whose colour is within 5% of the corner colour (Euclidean distance in RGB,
   5% of the largest possible distance);
2. resize so the longest edge is 28 pixels;
3. sharpen with a Gaussian of radius and standard deviation 1.0;
4. extend the shortest edge to 28, the image centred;
5. negate the intensities;
6. convert to 8-bit grayscale.

Where a user's photo differs from a 51x73 catalogue thumbnail, we differ from the paper on
purpose, and say so here:

- step 2: the paper subsampled (kept every k-th pixel) from thumbnails a few pixels larger
  than 28; subsampling a 3000-pixel photo would keep one pixel in a hundred and alias badly,
  so we resize with an area-averaging filter, which for a thumbnail is close to subsampling;
- step 1: isolated pixels (JPEG speckle, dust) do not stop the trim: the difference mask
  is median-filtered before its bounding box is taken;
- after step 6: a background that is not white (a grey studio sweep) would come out grey
  instead of black, so the intensities are stretched to put the background at 0. For a
  white background this changes nothing.

Before all that: EXIF orientation is applied, any transparency is composited on white, and
every Pillow mode (palette, 16-bit, CMYK, ...) is brought to 8-bit RGB.

Which way round an image is (see :func:`is_dataset_style`): the four-pixel-wide border of
a Fashion-MNIST image is almost all black, of a catalogue photo almost all white. An image
whose border is mostly dark is taken as already light-on-dark: a 28x28 one is used as it is,
a larger one goes through the steps above without the negation.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

__all__ = ["SIZE", "FUZZ", "prepare_image", "photo_to_dataset", "is_dataset_style", "to_rgb"]

SIZE = 28
# The paper's trim tolerance: 5% of the largest distance between two RGB colours.
FUZZ = 0.05 * float(np.sqrt(3.0)) * 255.0


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF orientation applied, transparency composited on white.

    16-bit and 32-bit grayscale (modes ``I;16``, ``I``) are scaled down by their range rather
    than clipped at 255 as Pillow's own ``convert`` does; float images (``F``) are taken as
    [0, 1] when they fit there, else as 0..255.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and a.size and np.nanmax(a) <= 1.0 else (255.0 if a.size and np.nanmax(a) <= 255 else 65535.0)
        a = np.clip(np.nan_to_num(a) / top * 255.0, 0, 255)
        return Image.fromarray(np.round(a).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info) or (
        image.mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, as Pillow's ``convert("L")``: float (..., 3) -> float (...)."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def _corner_colour(a: np.ndarray) -> np.ndarray:
    """The background colour: the per-channel median of the four corner pixels."""
    corners = np.stack([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]).astype(np.float64)
    return np.median(corners, axis=0)


def is_dataset_style(image: Image.Image) -> bool:
    """True when ``image`` is light on dark like Fashion-MNIST, False when dark on light like a photo.

    Decided by the border: the outer ring, 1/7 of the side wide (4 pixels of 28), is mostly
    dark (median luma below 128) in a Fashion-MNIST image and mostly light in a catalogue photo.
    """
    a = _gray(np.asarray(to_rgb(image), dtype=np.float64))
    h, w = a.shape
    b = max(1, min(h, w) // 7)
    ring = np.concatenate([a[:b].ravel(), a[-b:].ravel(), a[b:-b, :b].ravel(), a[b:-b, -b:].ravel()])
    return float(np.median(ring)) < 128.0


def _trim(rgb: Image.Image, background: np.ndarray) -> Image.Image:
    """Step 1: crop to the box of pixels farther than FUZZ from the background colour."""
    a = np.asarray(rgb, dtype=np.float64)
    far = np.sqrt(((a - background) ** 2).sum(axis=2)) > FUZZ
    # Median 3x3: a lone speckle vanishes, an edge of the garment stays.
    mask = np.asarray(Image.fromarray(far.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))) > 0
    if not mask.any():
        mask = far
    if not mask.any():
        return rgb  # a blank image: nothing to trim to
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rgb.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def photo_to_dataset(image: Image.Image, negate: bool = True) -> np.ndarray:
    """The paper's steps (module docstring) on any Pillow image: uint8 (28, 28), garment light on black.

    ``negate=False`` is for an image that is already light on dark (see
    :func:`is_dataset_style`): trimmed, resized, sharpened and centred, not inverted.
    """
    rgb = to_rgb(image)
    background = _corner_colour(np.asarray(rgb))
    rgb = _trim(rgb, background)
    # Step 2. BOX averages every source pixel into the one it lands in; reduce() first makes
    # huge photos cheap without changing the result much.
    w, h = rgb.size
    scale = SIZE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    factor = int(1 / scale) // 2
    if factor >= 2:
        rgb = rgb.reduce(factor)
    small = rgb.resize(size, Image.Resampling.BOX)
    # Step 3. Unsharp masking with percent=100 is out = 2*image - blur: ImageMagick's
    # -sharpen 1x1, which the paper's "Gaussian operator of radius and sigma 1.0" names.
    small = small.filter(ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0))
    # Step 4, padding with the background colour so the padding disappears like the background.
    canvas = Image.new("RGB", (SIZE, SIZE), tuple(int(round(c)) for c in background))
    canvas.paste(small, ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
    # Steps 5 and 6: grayscale (luma), negated so the garment is light on black.
    gray = np.asarray(canvas.convert("L"), dtype=np.float64)
    bg = float(_gray(background))
    if negate:
        gray, bg = 255.0 - gray, 255.0 - bg
    # Put the background at 0 (no-op for a white photo / black dataset-style background).
    if bg > 0:
        gray = (gray - bg) * 255.0 / max(255.0 - bg, 1.0)
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)


def prepare_image(image: Image.Image) -> tuple[np.ndarray, str]:
    """Any image as the model's input: (uint8 (28, 28), how it was prepared).

    How: ``"as-is"`` (a 28x28 light-on-dark image: only converted to grayscale),
    ``"photo"`` (dark on light: the paper's steps, negated) or ``"light-on-dark"`` (a larger
    light-on-dark image: the steps without negation). See :func:`is_dataset_style`.
    """
    dataset_style = is_dataset_style(image)
    if dataset_style and image.size == (SIZE, SIZE):
        return np.asarray(to_rgb(image).convert("L"), dtype=np.uint8).copy(), "as-is"
    if dataset_style:
        return photo_to_dataset(image, negate=False), "light-on-dark"
    return photo_to_dataset(image, negate=True), "photo"
