"""Blocks shared by the model families: mapping MLP, style-modulated conv blocks, RGB heads.

The style block follows StyleGAN's AdaIN (Karras et al. 2019) rather than StyleGAN2's
modulated convolution: on a 2-vCPU machine a per-sample grouped convolution costs several
times more than an instance norm plus an affine, and at 64x64 the droplet artefacts that
motivated demodulation do not show.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def level_channels(levels: tuple[int, ...], base: int, cap: int, floor: int = 8) -> tuple[int, ...]:
    """Channels per level: ``base / level`` capped, so coarse levels are wide and fine ones cheap."""
    return tuple(max(floor, min(cap, base // lvl)) for lvl in levels)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class MappingNetwork(nn.Module):
    """z -> w (StyleGAN): a learned, disentangled latent in which truncation is meaningful."""

    def __init__(self, z_dim: int, w_dim: int, layers: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.net = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        # He init for the leaky ReLU (StyleGAN's equalised layers start the same way): w keeps the
        # unit scale of the normalised z. torch's default Linear init shrinks each layer's output
        # about 2.4x, so three layers left w varying 0.05 per dimension between seeds: the styles
        # barely differed at step 0, the generator learnt to ignore them, and every seed gave the
        # same picture (Fashion-MNIST from scratch: 73% near-duplicates after 500 steps).
        for layer in self.net:
            nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z)
        for layer in self.net:
            x = lrelu(layer(x))
        return x


class StyleConv(nn.Module):
    """3x3 conv, leaky ReLU, instance norm, then a per-channel scale and shift from ``w``."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.style = nn.Linear(w_dim, 2 * out_ch)
        # Styles start small but not zero: with zero weights every seed gives the same picture at
        # step 0 and the generator learns to ignore w (measured: 99% near-duplicates from scratch,
        # 16% with this init). The bias starts at the identity style (scale 1, shift 0).
        nn.init.normal_(self.style.weight, 0.0, w_dim**-0.5)
        nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = lrelu(self.conv(x))
        x = F.instance_norm(x)
        gamma, beta = self.style(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class GranularityBlock(nn.Module):
    """One level of the generator: (upsample) + two style convs. Its output is the level's feature map."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, *, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv1 = StyleConv(in_ch, out_ch, w_dim)
        self.conv2 = StyleConv(out_ch, out_ch, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv2(self.conv1(x, w), w)


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), the last conv zero-initialised: a fresh block is the identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class DownBlock(nn.Module):
    """Discriminator block: two 3x3 convs then 2x average-pool downsampling."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = lrelu(self.conv2(lrelu(self.conv1(x))))
        return F.avg_pool2d(x, 2)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """ProGAN's minibatch standard deviation feature: lets D see a lack of variety."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n/g,)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


def image_pyramid(images: torch.Tensor, levels: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Real images at every level by area averaging, as MSG-GAN feeds its discriminator."""
    out = {}
    for lvl in levels:
        size = images.shape[-1]
        out[lvl] = images if size == lvl else F.adaptive_avg_pool2d(images, lvl)
    return out
