"""Training-time augmentation of a whole batch tensor at once: shifts, flips, random erasing.

Every transform is a handful of vectorised torch ops on the (N, 28, 28) float batch already on
the device: no per-image Python, no PIL round trip. Randomness comes from the generator the
trainer passes in, so a seeded run (and a resumed one) sees the same augmented batches.
Augmentation is applied only by ``Trainer.run_epoch``; evaluation never sees it.
"""

from __future__ import annotations

import math

import torch


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx) in ``[-max_shift, max_shift]``, filling with 0.

    ``x``: float (N, H, W); returns a new tensor of the same shape and dtype.
    """
    n, h, w = x.shape
    s = max_shift
    d = (_rand(2 * n, generator, x.device) * (2 * s + 1)).long().clamp_(max=2 * s).sub_(s).view(2, n)
    # A shift is a product with 0/1 shift matrices: out = R @ x @ C, R[r, k] = (k == r - dy).
    # Two small batched matmuls beat gathering pixels by index; 0/1 weights keep values exact
    # and rows that fall off the image become zeros.
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    rows = (r.view(1, 1, h) == (r.view(1, h, 1) - d[0].view(n, 1, 1))).to(x.dtype)
    cols = (c.view(1, w, 1) == (c.view(1, 1, w) - d[1].view(n, 1, 1))).to(x.dtype)
    return torch.bmm(torch.bmm(rows, x), cols)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``. ``x``: float (N, H, W)."""
    flip = _rand(len(x), generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1), x.flip(-1), x)


def random_erase(x: torch.Tensor, p: float, generator: torch.Generator,
                 scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Zero one random rectangle in each image with probability ``p`` (torchvision's defaults).

    The rectangle covers ``scale`` of the area with aspect ratio in ``ratio`` (log-uniform), as
    ``torchvision.transforms.RandomErasing``; ``x``: float (N, H, W).
    """
    n, h, w = x.shape
    u = _rand(5 * n, generator, x.device).view(5, n)
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[0])
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (u[2] * (h - eh + 1)).floor()
    left = (u[3] * (w - ew + 1)).floor()
    r = torch.arange(h, device=x.device).view(1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((r >= top.view(n, 1, 1)) & (r < (top + eh).view(n, 1, 1))
              & (c >= left.view(n, 1, 1)) & (c < (left + ew).view(n, 1, 1)))
    erase = inside & (u[4] < p).view(n, 1, 1)
    return x.masked_fill(erase, 0.0)


class Augment:
    """The training config's augmentation as one callable on a batch (N, 28, 28) float in [0, 1]."""

    def __init__(self, shift: int = 0, flip: bool = False, erase: float = 0.0,
                 generator: torch.Generator | None = None):
        self.shift, self.flip, self.erase = shift, flip, erase
        self.generator = generator or torch.Generator()

    @property
    def active(self) -> bool:
        return bool(self.shift or self.flip or self.erase)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 4  # (N, 1, H, W) from a caller that already added the channel
        if squeeze:
            x = x[:, 0]
        if self.shift:
            x = random_shift(x, self.shift, self.generator)
        if self.flip:
            x = random_flip(x, self.generator)
        if self.erase:
            x = random_erase(x, self.erase, self.generator)
        return x.unsqueeze(1) if squeeze else x
