"""Augmentation: vectorised, seeded, shape/dtype/range-preserving, and only ever in training."""

import numpy as np
import pytest
import torch

from fmnist.evaluation.metrics import images_to_tensor, log_proba_tensors, score
from fmnist.models import create_model
from fmnist.training import TrainConfig, Trainer
from fmnist.training.augment import Augment, random_erase, random_flip, random_shift
from tests.conftest import learnable_images


def batch(n=64, seed=0):
    return torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kwargs", [{"shift": 2}, {"flip": True}, {"erase": 0.5},
                                    {"shift": 3, "flip": True, "erase": 1.0}])
def test_shape_dtype_range_kept_and_seeded(kwargs):
    x = batch()
    out = Augment(**kwargs, generator=gen(1))(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, Augment(**kwargs, generator=gen(1))(x))  # same seed, same batch
    assert not torch.equal(out, x)
    assert Augment(**kwargs, generator=gen(1))(x.unsqueeze(1)).shape == (64, 1, 28, 28)


def test_every_shifted_image_is_its_original_moved_with_zero_fill():
    x = batch(32)
    out = random_shift(x, 2, gen(3))
    moves = set()
    for img, src in zip(out, x):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros(28, 28)
                ref[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
                    src[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
                if torch.equal(img, ref):
                    matches.append((dy, dx))
        assert len(matches) == 1
        moves.add(matches[0])
    assert len(moves) > 5  # each image draws its own shift


def test_flip_mirrors_about_half_of_the_images():
    x = batch(400)
    out = random_flip(x, gen(0))
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x)])
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250


def test_erase_zeros_one_rectangle_per_chosen_image():
    x = batch(200) + 0.5  # no zeros to begin with
    out = random_erase(x, 0.5, gen(0))
    erased = (out == 0)
    hit = erased.flatten(1).any(1)
    assert 60 < int(hit.sum()) < 140
    for mask in erased[hit]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # a filled axis-aligned rectangle within the 2%..33% area range (after rounding)
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert 10 <= int(mask.sum()) <= 0.4 * 784
    assert torch.equal(out[~hit], x[~hit])


class RecordingTrainer(Trainer):
    """Keeps a copy of every batch the loop hands to ``train_step``."""

    def train_step(self, xb, yb):
        self.seen.append((xb.clone(), yb.clone()))
        return super().train_step(xb, yb)


def test_augmentation_reaches_training_batches_but_never_evaluation():
    y = np.arange(64) % 10
    x = learnable_images(y)
    torch.manual_seed(0)
    trainer = RecordingTrainer(create_model("mlp-100"), TrainConfig(epochs=2, batch_size=16, flip=True))
    trainer.seen = []
    history = trainer.fit(x, y, validation_data=(x, y))
    xs = images_to_tensor(x)
    assert len(trainer.seen) == 2 * 4 and all(b.shape == (16, 28, 28) for b, _ in trainer.seen)
    # Every training image is its original (found by content) or its mirror, and about half are mirrored.
    mirrored = 0
    for batch, labels in trainer.seen:
        for img, label in zip(batch, labels):
            same = (xs == img).flatten(1).all(1)
            flipped = (xs.flip(-1) == img).flatten(1).all(1)
            assert bool((same | flipped).any()) and int(y[int((same | flipped).nonzero()[0])]) == int(label)
            mirrored += bool(flipped.any()) and not bool(same.any())
    assert 0.3 * 128 < mirrored < 0.7 * 128
    # Validation is scored on the images as they are, by the one evaluation path.
    assert history[-1]["val_loss"] == score(log_proba_tensors(trainer.model, xs), torch.as_tensor(y))["loss"]
    assert not Trainer(create_model("mlp-100"), TrainConfig()).augment.active


def test_augmented_training_learns_from_altered_images():
    """The plain Trainer (no hook watching): shifted and erased batches change what is learnt."""
    y = np.arange(64) % 10
    x = learnable_images(y)
    weights = []
    for config in ({}, {"shift": 2, "erase": 0.5}):
        torch.manual_seed(0)
        trainer = Trainer(create_model("mlp-100"), TrainConfig(epochs=2, batch_size=16, **config))
        trainer.fit(x, y)
        weights.append(torch.cat([p.detach().view(-1) for p in trainer.model.parameters()]))
    # Without augmentation the two runs differ only by float rounding between the step engines.
    assert not torch.allclose(weights[0], weights[1], rtol=1e-3, atol=1e-4)
