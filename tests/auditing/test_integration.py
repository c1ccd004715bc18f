"""The audit on a slice of the real Fashion-MNIST with faults planted at random (seeded)."""

import pytest

import fmnist
from fmnist.auditing.planted import NEAR_KINDS, plant_faults, score_audit
from tests.auditing.conftest import as_dataset

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [3])
def test_planted_faults_are_found_on_real_images(real_data, tmp_path, seed):
    # A tenth of the data keeps this to a minute; benchmarks/audit.py planted runs the whole.
    x_train, y_train = real_data.x_train[:6000], real_data.y_train[:6000]
    x_test, y_test = real_data.x_test[:1000], real_data.y_test[:1000]
    planted = plant_faults(x_train, y_train, x_test, y_test, seed=seed, flips=60, test_flips=10, exact_leaks=10,
                           near_leaks=10 * len(NEAR_KINDS), duplicates=10, near_duplicates=2 * len(NEAR_KINDS),
                           outliers=8)
    data = as_dataset(planted.x_train, planted.y_train, planted.x_test, planted.y_test)
    result = fmnist.audit(data, folds=3, progress=False)
    found = score_audit(result, planted)
    assert found["exact_leaks"] == 1.0 and found["duplicates"] == 1.0, found
    assert found["near_leaks"] >= 0.95, found
    # Each single change: at most one of its ten copies missed. A move with noise on top is
    # neither a pixel-space nor an aligned near duplicate when the noise is strong: most, not all.
    assert all(found[f"near_leaks_{kind}"] >= 0.9 for kind in NEAR_KINDS if kind != "shift_noise"), found
    assert found["near_leaks_shift_noise"] >= 0.6, found
    assert found["flips_train"]["recall_first_n"] >= 0.6, found
    # Blank, constant, inverted and noise images (the first 8 planted: no glyphs), in train and test, all flagged.
    assert found["outliers"] == 1.0, found
    # Not everything is flagged: the thresholds leave the bulk of real neighbours alone.
    assert len(result["near_duplicates"]) < 300 and len(result["outliers"]) < 8 + 10, result["summary"]
