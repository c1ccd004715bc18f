"""The photo generator: seeded, and its two kinds look like what they claim to be."""

import io

import numpy as np
import pytest
from PIL import Image

from fmnist.inference.photos import EFFECTS, KINDS, catalogue_photo, phone_photo, photo
from tests.inference.test_preprocess import shirt


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        return np.asarray(im.convert("RGB"), dtype=float)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_photo_other_seed_other_photo(kind):
    assert photo(shirt(), kind, 3) == photo(shirt(), kind, 3)
    assert photo(shirt(), kind, 3) != photo(shirt(), kind, 4)


def test_catalogue_photo_is_the_garment_dark_on_white():
    a = _decode(catalogue_photo(shirt(), 0))
    assert a.shape[0] == 480 and 480 <= a.shape[1] <= 640
    border = np.concatenate([a[:5].reshape(-1, 3), a[-5:].reshape(-1, 3)])
    assert border.min() > 240
    # The shirt's dark body is somewhere: a block of pixels far darker than the background.
    assert (a.mean(axis=2) < 100).mean() > 0.02


def test_phone_photo_is_tinted_unevenly_lit_and_noisy():
    tints, spreads = [], []
    for seed in range(6):
        a = _decode(phone_photo(shirt(), seed))
        assert sorted(a.shape[:2]) == [480, 640]
        ring = np.concatenate([a[:8].reshape(-1, 3), a[-8:].reshape(-1, 3)])
        tints.append(np.median(ring, axis=0))
        luma = a.mean(axis=2)
        spreads.append(abs(np.median(luma[:20, :20]) - np.median(luma[-20:, -20:])))
    tints = np.array(tints)
    assert (tints.max(axis=1) < 250).all()                    # never a white background
    assert np.ptp(tints, axis=0).max() > 20                    # backgrounds differ in colour
    assert max(spreads) > 10                                   # light falls off across the frame


def test_unknown_kind():
    with pytest.raises(ValueError, match="catalogue, phone"):
        photo(shirt(), "studio", 0)


def test_effects_can_be_left_out_one_by_one_with_the_same_draws():
    plain = _decode(phone_photo(shirt(), 5, without=EFFECTS))
    ring = np.concatenate([plain[:8].reshape(-1, 3), plain[-8:].reshape(-1, 3)])
    assert ring.min() > 250                                    # white, evenly lit, no noise
    full = _decode(phone_photo(shirt(), 5))
    untinted = _decode(phone_photo(shirt(), 5, without=("tint",)))
    upright = _decode(phone_photo(shirt(), 5, without=("tilt",)))
    corner = (slice(0, 20), slice(0, 20))
    # Leaving out the tilt changes the garment, not the background's colour and light.
    assert np.abs(np.median(upright[corner], axis=(0, 1)) - np.median(full[corner], axis=(0, 1))).max() < 3
    assert np.abs(np.median(untinted[corner], axis=(0, 1)) - np.median(full[corner], axis=(0, 1))).max() > 10
    with pytest.raises(ValueError, match="unknown effects"):
        phone_photo(shirt(), 5, without=("glare",))
