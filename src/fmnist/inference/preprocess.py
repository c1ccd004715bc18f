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

A phone photo is not a catalogue thumbnail: its background is a table or a bed of any
colour, lit unevenly, with soft shadows on it, and the garment is seldom straight. So step 1
finds the garment rather than trimming by the corner's colour: the light is estimated from
the frame's border and from everything that has no sharp edge (:func:`_segment`), the
garment is what is darker than that light (Otsu's threshold and hysteresis, scikit-image),
and a garment turned by up to 10 degrees is set upright (:func:`_tilt`) before its box is
taken. Where the crop is doubtful (nothing stands out, the garment touches the frame's edge,
several objects) :func:`prepare_image` says why.

Before all that: EXIF orientation is applied, any transparency is composited on white (on
black when what is opaque is light: a white garment cut out), and
every Pillow mode (palette, 16-bit, CMYK, ...) is brought to 8-bit RGB.

Which way round an image is (see :func:`is_dataset_style`): the corners of a Fashion-MNIST
image are black, of a catalogue photo white. An image whose corners are mostly dark is taken
as already light-on-dark: a 28x28 one is used as it is, a larger one goes through the steps
above without the negation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter, ImageOps

__all__ = ["SIZE", "Prepared", "prepare_image", "photo_to_dataset", "is_dataset_style", "to_rgb"]

SIZE = 28
# The box around a garment takes in the pixels at least this much darker than the light
# falling there: twice the paper's 5 %, so that a garment's soft shadow on the table (a few
# percent darker) does not widen it. Chosen on photos of validation images.
TRIM = 0.10
# Photos are segmented at about this many pixels a side (at least 2x fewer are averaged
# into one): enough for a 28-pixel result, cheap for a 48-megapixel one.
WORK_SIDE = 320


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF orientation applied, transparency composited on white
    (on black when what is opaque is light).

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
        # On white, as a catalogue shows a cut-out, unless what is opaque is light itself (a
        # white shirt cut out): on white it would vanish, on black it is a light-on-dark image.
        # Judged at about the working size: the full image as float64 took gigabytes for a 64
        # megapixel cut-out (a few hundred kB as a PNG).
        a = np.asarray(rgba.reduce(max(1, max(rgba.size) // WORK_SIDE)), dtype=np.float64)
        opaque = a[..., 3] > 127
        light = opaque.any() and float(np.median(_gray(a[..., :3][opaque]))) >= 160.0
        back = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light else (255, 255, 255, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return image.convert("RGB")


def _gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, as Pillow's ``convert("L")``: float (..., 3) -> float (...)."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def _lighter_than_background(image: Image.Image) -> bool:
    """True when what stands out from a photo's border is lighter than it (light on dark).

    A phone photo on a dim table has a dark border and a darker garment: the border's own
    brightness cannot say which way round the picture is, what differs from it can. Looked
    at: the tenth of the pixels farthest from the border's median.
    """
    small = to_rgb(image)
    small = small.reduce(max(1, max(small.size) // WORK_SIDE))
    a = _gray(np.asarray(small, dtype=np.float64))
    diff = a - float(np.median(a[_ring(a.shape)]))
    far = np.abs(diff) >= np.quantile(np.abs(diff), 0.9)
    return float(diff[far].mean()) > 0


def is_dataset_style(image: Image.Image) -> bool:
    """True when ``image`` is light on dark like Fashion-MNIST, False when dark on light like a photo.

    Decided by the corners: squares of a tenth of the side (2 pixels of 28) at the four corners
    are mostly dark (median luma below 128) in a Fashion-MNIST image and mostly light in a
    catalogue photo. Not the whole border: a bag or a pullover that fills the frame lights up
    the middle of its edges, and a 4-pixel ring took such dataset images for photos and
    inverted them; no garment of the dataset reaches all four corners.
    """
    a = _gray(np.asarray(to_rgb(image), dtype=np.float64))
    h, w = a.shape
    b = max(1, min(h, w) // 10)
    corners = np.concatenate([a[:b, :b].ravel(), a[:b, -b:].ravel(), a[-b:, :b].ravel(), a[-b:, -b:].ravel()])
    return float(np.median(corners)) < 128.0


def _surface(gray: np.ndarray, use: np.ndarray, degree: int = 2) -> np.ndarray:
    """A smooth polynomial surface (degree 2) fitted to ``gray`` where ``use`` is True; float (h, w).

    The fit is robust to the garment reaching into ``use``: pixels much darker than the fit
    (more than three robust standard deviations) are dropped and the fit repeated.
    """
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w]
    yy = yy / max(h - 1, 1) * 2 - 1
    xx = xx / max(w - 1, 1) * 2 - 1
    terms = np.stack([xx ** i * yy ** j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=-1)
    keep = use.copy()
    for _ in range(3):
        coef = np.linalg.lstsq(terms[keep], gray[keep], rcond=None)[0]
        fit = terms @ coef
        resid = gray[use] - fit[use]
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-6
        new = use & (gray - fit > -3.0 * sigma)
        if new.sum() < terms.shape[-1] or np.array_equal(new, keep):
            break
        keep = new
    return fit


def _ring(shape: tuple[int, int]) -> np.ndarray:
    """The outer ring of a frame, 1/50 of its shorter side wide (at least a pixel): bool (h, w).

    Thin, because people frame garments tightly: a margin of a few percent is common.
    """
    h, w = shape
    b = max(1, min(h, w) // 50)
    ring = np.zeros(shape, bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    return ring


def _darkness(gray: np.ndarray, background: np.ndarray) -> np.ndarray:
    """How much darker than the background each pixel is, as a fraction of it: float in [0, 1].

    Dividing by the background's own brightness flattens the light: a garment in the dim
    corner of a photo comes out as dark as the same garment in its bright middle.
    """
    return np.clip(1.0 - gray / np.maximum(background, 1.0), 0.0, 1.0)


class _Segmentation(NamedTuple):
    darkness: np.ndarray  # float (h, w) in [0, 1]: the garment light on black
    mask: np.ndarray      # bool (h, w): the garment
    contrast: float       # Otsu's threshold: how far the garment stands out
    low: float = 0.05     # the darkness the background's noise stays under


def _segment(gray: np.ndarray) -> _Segmentation:
    """Find the garment, dark on a lighter background, in a grey image (float (h, w), 0..255).

    1. the background's light is a smooth surface fitted to the frame's border;
    2. the garment's core: Otsu's threshold on the darkness of the surfaces once the light is
       taken out (:func:`_reflectance`: only sharp edges are kept, so a soft shadow, however
       dark, is not mistaken for a faint garment);
    3. the light is estimated again from everything away from that core, smoothed
       (normalised convolution), the border's surface filling in under the garment: soft
       shadows and uneven light anywhere in the frame are then part of the light, not of the
       garment;
    4. the garment: hysteresis from the background's noise level (at least the paper's 5 %)
       to Otsu's threshold, so that faint parts touching the core stay while noise and
       shadows apart from it go; holes filled; specks dropped.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter
    from skimage.filters import threshold_otsu

    h, w = gray.shape
    pixel = max(h, w) / SIZE  # one output pixel, in working pixels
    ring = _ring(gray.shape)
    first = _surface(gray, ring)
    log_surface = _reflectance(gray, pixel)
    dark = gaussian_filter(np.clip(1.0 - np.exp(log_surface - np.median(log_surface[ring])), 0.0, 1.0), 0.5 * pixel)
    if np.ptp(dark) <= 1e-6:
        return _Segmentation(dark, np.zeros_like(ring), 0.0)
    core = dark > threshold_otsu(dark)
    outside = distance_transform_edt(~core) > max(1, round(2 * pixel))
    if outside.sum() > 0.05 * outside.size:
        sigma = max(h, w) / 16
        weight = _blur_wide(outside.astype(np.float64), sigma)
        light = (_blur_wide(gray * outside, sigma) + 0.05 * first) / (weight + 0.05)
    else:
        light = first
    raw = _darkness(gray, light)
    dark = gaussian_filter(raw, 0.5 * pixel)
    mask, low = _garment(dark, dark[outside] if outside.any() else dark[ring])
    return _Segmentation(raw, mask, float(threshold_otsu(dark)), low)




def _reflectance(gray: np.ndarray, pixel: float, edge: float = 0.1) -> np.ndarray:
    """The log reflectance of a grey photo (float (h, w)): what is left when the light is taken out.

    Light changes slowly across a photo (gradients, vignetting, soft shadows); a garment's
    edges are sharp. In the log image, light and surface add up; the gradients weaker than
    ``edge`` (log units per output pixel, 0.1: a 10 % change within one of the 28 pixels)
    are taken as light and dropped, the rest are integrated again (the Poisson equation,
    solved with a cosine transform, no flux across the frame's edge): Land's retinex.
    ``pixel``: working pixels per output pixel.
    """
    from scipy.fft import dctn, idctn
    from scipy.ndimage import gaussian_filter

    log = gaussian_filter(np.log(np.maximum(gray, 1.0)), 0.1 * pixel)
    gx, gy = np.zeros_like(log), np.zeros_like(log)
    gx[:, :-1], gy[:-1] = np.diff(log, axis=1), np.diff(log, axis=0)
    weak = edge / pixel
    gx[np.abs(gx) < weak] = 0.0
    gy[np.abs(gy) < weak] = 0.0
    div = gx + gy
    div[:, 1:] -= gx[:, :-1]
    div[1:] -= gy[:-1]
    h, w = log.shape
    eigen = (2 * np.cos(np.pi * np.arange(h) / h) - 2)[:, None] + (2 * np.cos(np.pi * np.arange(w) / w) - 2)[None, :]
    eigen[0, 0] = 1.0
    coef = dctn(div, type=2, norm="ortho") / eigen
    coef[0, 0] = 0.0
    return idctn(coef, type=2, norm="ortho")

def _blur_wide(a: np.ndarray, sigma: float) -> np.ndarray:
    """``a`` (float (h, w)) blurred by a Gaussian of ``sigma`` pixels, for a wide ``sigma``.

    Blurred at a quarter of the size and enlarged again: what is left after a wide blur
    is smooth, and the full-size blur would cost most of a photo's preparation.
    """
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    h, w = a.shape
    f = int(sigma // 4)
    if f < 2:
        return gaussian_filter(a, sigma)
    small = Image.fromarray(a.astype(np.float32), mode="F").reduce(f)
    small = gaussian_filter(np.asarray(small, dtype=np.float64), sigma / f, mode="nearest")
    return np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR),
                      dtype=np.float64)

def _garment(dark: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, float]:
    """The garment in a darkness image: hysteresis from the background's noise to Otsu's threshold.

    Low: four robust standard deviations above the background's median, at least the paper's
    5 % trim tolerance. High: Otsu's threshold. Holes are filled; parts under 5 % of the
    largest are dropped (dust, a speck of shadow). Returns the mask (bool, the shape of
    ``dark``) and the low threshold.
    """
    from scipy.ndimage import binary_fill_holes
    from skimage.filters import apply_hysteresis_threshold, threshold_otsu

    noise = 1.4826 * float(np.median(np.abs(background - np.median(background))))
    high = float(threshold_otsu(dark))
    low = min(max(0.05, float(np.median(background)) + 4.0 * noise), high)
    mask = binary_fill_holes(apply_hysteresis_threshold(dark, low, high))
    labels = _components(mask)
    if labels.max() > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
    return mask, low


def _components(mask: np.ndarray) -> np.ndarray:
    """The connected parts of a bool mask, pixels touching by an edge or a corner: int labels, 0 outside.

    scipy's labelling with the full 3x3 neighbourhood is scikit-image's ``measure.label`` with
    its default connectivity, label for label; scikit-image's would also import its morphology
    package and scipy.spatial, a quarter of a second before a single photo is predicted.
    """
    from scipy.ndimage import label

    return label(mask, structure=np.ones((3, 3), bool))[0]


def _doubt(seg: _Segmentation, framed: bool) -> str | None:
    """Why the crop may be wrong, in words for the user, or None when it looks right.

    ``framed``: the picture was a photo with room around the garment, not a tight crop.
    """
    mask = seg.mask
    if not mask.any() or seg.contrast < 0.1:
        return "nothing stands out from the background; photograph the garment on a plain, contrasting background"
    area = mask.mean()
    if area < 0.01:
        return ("the garment is tiny in the photo; go closer or crop it so that it fills most of the frame")
    # The garment's own pixels, not the mask (found on a smoothed image, it reaches a few pixels
    # beyond them): a garment close to the edge but whole is no cause for doubt.
    own = mask & (seg.darkness > max(seg.low, TRIM))
    if framed and (own[0].any() or own[-1].any() or own[:, 0].any() or own[:, -1].any()):
        return ("the garment (or a shadow) touches the photo's edge: it may be cut off; leave some plain "
                "background all round it")
    sizes = np.sort(np.bincount(_components(mask).ravel())[1:])
    if len(sizes) > 1 and sizes[-2] > 0.3 * sizes[-1]:
        return "several separate objects found; photograph one garment at a time"
    return None

# A garment turned by more than this is not straightened: catalogue garments stand upright,
# and the bounding box of an irregular one (a sandal) may be smallest at some angle.
MAX_TILT = 10.0


def _tilt(mask: np.ndarray) -> float:
    """The turn (degrees, as :func:`scipy.ndimage.rotate` takes it) that sets the garment in ``mask`` upright, or 0.0.

    Catalogue garments stand upright, framed by their smallest upright box: the turn is the
    one within +-10 degrees after which the box around the garment is smallest,
    taken only when that box is at least 1 % smaller than the upright one (a shape like a
    sandal's has no clear best angle, and is better left as photographed).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) < 2:
        return 0.0
    # Each row's leftmost and rightmost pixel: they hold the garment's extreme point in every
    # direction, so their box at any angle is the garment's (and they are few).
    left = mask[rows].argmax(axis=1)
    right = mask.shape[1] - 1 - mask[rows][:, ::-1].argmax(axis=1)
    hull = np.concatenate([np.stack([rows, left], 1), np.stack([rows, right], 1)]).astype(np.float64)
    angles = np.arange(-MAX_TILT, MAX_TILT + 0.25, 0.5)
    rad = np.deg2rad(angles)
    # Each point (row, col) in a frame turned by each angle: (angles, points).
    rows = hull[:, 0][None] * np.cos(rad)[:, None] - hull[:, 1][None] * np.sin(rad)[:, None]
    cols = hull[:, 0][None] * np.sin(rad)[:, None] + hull[:, 1][None] * np.cos(rad)[:, None]
    areas = np.ptp(rows, axis=1) * np.ptp(cols, axis=1)
    best = int(areas.argmin())
    upright = int(np.flatnonzero(angles == 0.0)[0])
    return float(angles[best]) if areas[best] < 0.99 * areas[upright] else 0.0


def _rotate(darkness: np.ndarray, mask: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``darkness`` and ``mask`` turned by ``angle`` degrees (the frame enlarged to hold them)."""
    from scipy.ndimage import rotate

    turned = rotate(darkness, angle, reshape=True, order=1, mode="constant", cval=0.0)
    inside = rotate(mask.astype(np.float64), angle, reshape=True, order=1, mode="constant", cval=0.0) > 0.5
    return np.clip(turned, 0.0, 1.0), inside


def _photo(image: Image.Image, negate: bool) -> tuple[np.ndarray, str | None]:
    """:func:`photo_to_dataset`'s image and the reason its crop is doubtful (None when it is not)."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    rgb = to_rgb(image)
    # The segmentation needs no more than a few hundred pixels a side: the result has 28.
    factor = max(rgb.size) // WORK_SIDE
    if factor >= 2:
        rgb = rgb.reduce(factor)
    gray = _gray(np.asarray(rgb, dtype=np.float64))
    if not negate:
        gray = 255.0 - gray  # light on dark: the same steps, the other way round
    seg = _segment(gray)
    warning = _doubt(seg, framed=max(gray.shape) > SIZE)
    mask = seg.mask
    if not mask.any():
        return np.zeros((SIZE, SIZE), np.uint8), warning
    darkness = seg.darkness
    # Catalogue garments stand upright; a phone photo's is often turned a little.
    angle = _tilt(mask)
    if angle:
        darkness, mask = _rotate(darkness, mask, angle)
    h, w = mask.shape
    pixel = max(h, w) / SIZE
    # Keep the garment and a pixel of its surroundings (its soft edge); the rest is background.
    keep = gaussian_filter(binary_dilation(mask, iterations=max(1, round(pixel))).astype(np.float64), 0.5 * pixel)
    # The box: the mask was found on a smoothed image, which widens it; trim it back to the
    # pixels that are themselves clearly darker than the background (the paper's trim, with
    # TRIM rather than its 5 %: a garment's own soft shadow on the table stays outside).
    tight = mask & (darkness > max(seg.low, TRIM))
    tight = tight if tight.any() else mask
    rows, cols = np.flatnonzero(tight.any(axis=1)), np.flatnonzero(tight.any(axis=0))
    crop = (darkness * keep)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # Step 2: area-averaging resize of the trimmed garment, longest side 28.
    ch, cw = crop.shape
    scale = SIZE / max(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
    # Nearly every Fashion-MNIST image reaches 255 (its darkest catalogue pixel was black):
    # stretch so that the garment's darkest part does too, whatever the exposure.
    small = small * (255.0 / max(float(small.max()), 1e-6))
    # Step 3, unsharp masking with percent=100: out = 2*image - blur, ImageMagick's -sharpen 1x1.
    sharp = Image.fromarray(np.clip(np.round(small), 0, 255).astype(np.uint8), mode="L").filter(
        ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0))
    # Step 4: centred on a black square, as the trimmed box was in the dataset, where an odd
    # pixel to spare goes to the left or the top (so in 99 % of its training images).
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(sharp, ((SIZE - size[0] + 1) // 2, (SIZE - size[1] + 1) // 2))
    return np.asarray(canvas, dtype=np.uint8).copy(), warning


def photo_to_dataset(image: Image.Image, negate: bool = True) -> np.ndarray:
    """The steps of the module docstring on any Pillow image: uint8 (28, 28), garment light on black.

    ``negate=False`` is for an image that is already light on dark (see
    :func:`is_dataset_style`): the same steps, the result not inverted.
    """
    return _photo(image, negate)[0]


class Prepared(NamedTuple):
    """What :func:`prepare_image` made of an image.

    ``image``: uint8 (28, 28), light on black, what the model sees; ``how``: ``"as-is"``,
    ``"photo"`` or ``"light-on-dark"``; ``warning``: why the garment may have been found
    wrongly (one sentence for the user), or None.
    """

    image: np.ndarray
    how: str
    warning: str | None = None


def prepare_image(image: Image.Image) -> Prepared:
    """Any image as the model's input, with how it was prepared and any doubt about the crop.

    How: ``"as-is"`` (a 28x28 light-on-dark image: only converted to grayscale),
    ``"photo"`` (dark on light: the steps of the module docstring, negated) or
    ``"light-on-dark"`` (a larger light-on-dark image: the steps without negation).
    See :func:`is_dataset_style`.
    """
    if image.size == (SIZE, SIZE):
        # Already the model's size: only turned the dataset's way round, never cropped again.
        gray = np.asarray(to_rgb(image).convert("L"), dtype=np.uint8)
        return Prepared(gray.copy(), "as-is") if is_dataset_style(image) else Prepared(255 - gray, "photo")
    dataset_style = _lighter_than_background(image)
    pixels, warning = _photo(image, negate=not dataset_style)
    return Prepared(pixels, "light-on-dark" if dataset_style else "photo", warning)
