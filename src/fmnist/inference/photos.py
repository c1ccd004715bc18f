"""Photos made from dataset images, to measure the photo pipeline on something like real use.

Fashion-MNIST images are negated catalogue thumbnails, so a dataset image can be turned back
into a photo of the same garment whose true class is known:

- :func:`catalogue_photo`: the garment dark on a flat white background, enlarged, placed
  anywhere with margins, saved as a good JPEG: what the dataset was made from;
- :func:`phone_photo`: the same garment as a phone would see it on a table or a bed: a tinted
  background, light falling off across the frame, a soft shadow, sensor noise, a slight tilt,
  a little blur and a rougher JPEG.

The garment is modelled as a surface that reflects ``1 - a * v / 255`` of the light that
reaches it (``v`` the dataset pixel, ``a`` up to 1 per colour channel, a garment's colour)
laid on a background of its own colour; the light is the same for both. Every photo depends
only on its image and its seed, so a set can be rebuilt anywhere.

    >>> from fmnist.inference.photos import phone_photo
    >>> jpeg = phone_photo(x_test[0], seed=0)     # bytes of a JPEG, about 640 x 480
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["EFFECTS", "KINDS", "catalogue_photo", "phone_photo", "photo"]

KINDS = ("catalogue", "phone")


def _garment_layer(image: np.ndarray, side: int, angle: float):
    """The dataset image enlarged to ``side`` pixels and turned by ``angle`` degrees: float in [0, 1]."""
    from PIL import Image

    big = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    if angle:
        big = big.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    return np.asarray(big, dtype=np.float64) / 255.0


def _place(layer: np.ndarray, canvas: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``layer`` pasted at a random place of a zero canvas (h, w), wholly inside it."""
    h, w = canvas
    out = np.zeros((h, w))
    lh, lw = layer.shape
    top = int(rng.integers(0, h - lh + 1))
    left = int(rng.integers(0, w - lw + 1))
    out[top:top + lh, left:left + lw] = layer
    return out


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), mode="RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def catalogue_photo(image: np.ndarray, seed: int) -> bytes:
    """A clean catalogue photo of a dataset image (uint8 (28, 28)): JPEG bytes, garment dark on white.

    The garment fills 40-80 % of the shorter side of a 480 x 480 to 640 x 480 frame, anywhere in it.
    """
    rng = np.random.default_rng(seed)
    h, w = 480, int(rng.integers(480, 641))
    side = int(h * rng.uniform(0.4, 0.8))
    v = _place(_garment_layer(image, side, 0.0), (h, w), rng)
    rgb = np.repeat((255.0 * (1.0 - v))[..., None], 3, axis=2)
    return _jpeg(rgb, 90)


# What a phone adds to a catalogue photo, each of which :func:`phone_photo` can leave out
# (``without=``) to see what it alone costs; the random draws stay the same either way.
EFFECTS = ("tint", "gradient", "vignette", "shadow", "drop_shadow", "tilt", "exposure", "blur", "noise", "jpeg")


def phone_photo(image: np.ndarray, seed: int, without: tuple[str, ...] = ()) -> bytes:
    """A phone-like photo of a dataset image (uint8 (28, 28)): JPEG bytes, 640 x 480 either way round.

    Each effect (see :data:`EFFECTS`), drawn uniformly from its range:

    - ``tint``: a background of any hue, saturation up to 0.25, luma 0.55-0.95 of white
      (grey, beige, blue-grey, pink...: a table, a bed, a floor); without it, white;
    - ``gradient``: light falling off by 10-30 % across the frame, in any direction;
    - ``vignette``: 5-15 % darker towards the corners;
    - ``shadow``: a soft shadow (the photographer, a lamp) darkening an ellipse 15-40 % of
      the frame across by 10-30 %, anywhere;
    - ``drop_shadow``: the garment's own soft shadow, 3-10 pixels below it, 5-15 % dark;
    - ``tilt``: the garment turned by up to 6 degrees either way;
    - ``exposure``: the whole frame 0.85-1.05 as bright;
    - ``blur``: focus blur of 0.5-1.2 pixels;
    - ``noise``: sensor noise of 2-6 grey levels;
    - ``jpeg``: JPEG quality 60-85 (without it: 95).

    The garment fills 45-75 % of the shorter side, anywhere in the frame; its colour is
    near black (it reflects 0-15 % of each channel at the dataset's brightest pixel).
    """
    from scipy.ndimage import gaussian_filter, shift

    unknown = set(without) - set(EFFECTS)
    if unknown:
        raise ValueError(f"unknown effects {sorted(unknown)}; choose from {', '.join(EFFECTS)}")
    on = {e: e not in without for e in EFFECTS}
    rng = np.random.default_rng(seed)
    h, w = (480, 640) if rng.random() < 0.5 else (640, 480)
    side = int(min(h, w) * rng.uniform(0.45, 0.75))
    angle = float(rng.uniform(-6, 6))
    v = _place(_garment_layer(image, side, angle if on["tilt"] else 0.0), (h, w), rng)

    # Surfaces: the background's colour, the garment's (relative to it).
    hue = rng.dirichlet([2.0, 2.0, 2.0])
    tint = 1.0 - rng.uniform(0.0, 0.25) * (1.0 - hue / hue.max())
    background = rng.uniform(0.55, 0.95) * tint
    if not on["tint"]:
        background = np.ones(3)
    garment = 1.0 - rng.uniform(0.85, 1.0, 3)
    reflect = background[None, None, :] * (1.0 - (1.0 - garment)[None, None, :] * v[..., None])

    # Light: a gradient across the frame, a vignette, a soft shadow, the garment's drop shadow.
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * (xx - xx.mean()) + np.sin(theta) * (yy - yy.mean())
    light = np.ones((h, w))
    strength = rng.uniform(0.1, 0.3)
    if on["gradient"]:
        light *= 1.0 + strength * ramp / max(np.ptp(ramp), 1e-9)
    r2 = ((xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2) / ((xx.max() / 2) ** 2 + (yy.max() / 2) ** 2)
    strength = rng.uniform(0.05, 0.15)
    if on["vignette"]:
        light *= 1.0 - strength * r2
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(0.15, 0.4) * h, rng.uniform(0.15, 0.4) * w
    strength = rng.uniform(0.1, 0.3)
    if on["shadow"]:
        blob = (((np.arange(h)[:, None] - cy) / ry) ** 2 + ((np.arange(w)[None, :] - cx) / rx) ** 2 <= 1)
        light *= 1.0 - strength * _soft(blob.astype(np.float64), 0.08 * max(h, w))
    offset, strength = (rng.uniform(3, 10), rng.uniform(-8, 8)), rng.uniform(0.05, 0.15)
    if on["drop_shadow"]:
        drop = shift(gaussian_filter(v, 6.0), offset, order=1)
        light *= 1.0 - strength * np.clip(drop, 0, 1) * (v < 0.05)
    exposure = rng.uniform(0.85, 1.05)
    if on["exposure"]:
        light *= exposure

    rgb = 255.0 * reflect * light[..., None]
    sigma = rng.uniform(0.5, 1.2)
    if on["blur"]:
        rgb = gaussian_filter(rgb, (sigma, sigma, 0))
    noise = rng.normal(0.0, rng.uniform(2, 6), rgb.shape)
    if on["noise"]:
        rgb = rgb + noise
    quality = int(rng.integers(60, 86))
    return _jpeg(rgb, quality if on["jpeg"] else 95)


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """``mask`` blurred by a Gaussian of ``sigma`` pixels, computed at an eighth of the size (it is smooth)."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    h, w = mask.shape
    small = Image.fromarray(mask.astype(np.float32), mode="F").resize((w // 8, h // 8), Image.Resampling.BOX)
    small = np.asarray(small)
    small = gaussian_filter(small.astype(np.float64), sigma / 8)
    return np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR),
                      dtype=np.float64)


def photo(image: np.ndarray, kind: str, seed: int) -> bytes:
    """:func:`catalogue_photo` or :func:`phone_photo` by name (``kind`` one of :data:`KINDS`)."""
    if kind == "catalogue":
        return catalogue_photo(image, seed)
    if kind == "phone":
        return phone_photo(image, seed)
    raise ValueError(f"photo kind must be one of {', '.join(KINDS)}, got {kind!r}")
