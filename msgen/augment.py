"""Differentiable augmentation for few-shot GAN training (DiffAugment, Zhao et al. NeurIPS 2020).

Colour, translation and cutout are applied to real and fake batches alike, so the
discriminator cannot memorise a tiny set and the generator still learns the un-augmented
distribution. For a multi-scale discriminator the *same* random parameters are applied to
every level of a sample (translation and cutout in normalised coordinates), so the levels of
one picture stay consistent with each other. Every draw comes from an explicit
``torch.Generator`` so a training run is reproducible and resumable; with several processes a
``Shard`` makes each rank draw the global batch's parameters and keep its own rows
(``msgen.distributed``), so a sample is augmented the same for any process count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import Shard, rows

POLICIES = ("color", "translation", "cutout")


def _uniform(n: int, gen: torch.Generator, device: torch.device, lo: float = 0.0, hi: float = 1.0,
             shard: Shard | None = None) -> torch.Tensor:
    return (rows(lambda k: torch.rand(k, 1, 1, 1, generator=gen), n, shard) * (hi - lo) + lo).to(device)


def _color(images: dict[int, torch.Tensor], gen: torch.Generator, shard: Shard | None = None) -> dict[int, torch.Tensor]:
    x0 = next(iter(images.values()))
    n, dev = x0.shape[0], x0.device
    bright = _uniform(n, gen, dev, -0.5, 0.5, shard)
    sat = _uniform(n, gen, dev, 0.0, 2.0, shard)
    con = _uniform(n, gen, dev, 0.5, 1.5, shard)
    out = {}
    for lvl, x in images.items():
        x = x + bright
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * sat + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out[lvl] = (x - mean) * con + mean
    return out


def _translation(images: dict[int, torch.Tensor], gen: torch.Generator, shard: Shard | None = None,
                 ratio: float = 0.125) -> dict[int, torch.Tensor]:
    x0 = next(iter(images.values()))
    n, dev = x0.shape[0], x0.device
    shift = (rows(lambda k: torch.rand(k, 2, generator=gen), n, shard) * 2 - 1) * ratio * 2  # normalised coords span 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    out = {}
    for lvl, x in images.items():
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        out[lvl] = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out


def _cutout(images: dict[int, torch.Tensor], gen: torch.Generator, shard: Shard | None = None,
            ratio: float = 0.5) -> dict[int, torch.Tensor]:
    x0 = next(iter(images.values()))
    n, dev = x0.shape[0], x0.device
    centre = rows(lambda k: torch.rand(k, 2, 1, 1, generator=gen), n, shard).to(dev)
    out = {}
    for lvl, x in images.items():
        coords = (torch.arange(lvl, device=dev, dtype=x.dtype) + 0.5) / lvl
        inside_y = (coords.view(1, -1, 1) - centre[:, 0]).abs() < ratio / 2
        inside_x = (coords.view(1, 1, -1) - centre[:, 1]).abs() < ratio / 2
        mask = ~(inside_y & inside_x)
        out[lvl] = x * mask.unsqueeze(1).to(x.dtype)
    return out


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(images: dict[int, torch.Tensor], policy: tuple[str, ...], gen: torch.Generator,
                 shard: Shard | None = None) -> dict[int, torch.Tensor]:
    """Augment a level -> batch dict with one set of random parameters per sample (this rank's
    rows of the global batch's draws when ``shard`` is given)."""
    for name in policy:
        if name not in _OPS:
            raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(POLICIES)}")
        images = _OPS[name](images, gen, shard)
    return images
