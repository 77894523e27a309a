"""Multi-scale GAN family ("msggan"): MSG-GAN (Karnewar & Wang, CVPR 2020) with StyleGAN's
mapping network and per-level styles.

Generator: a learned 4x4 constant is refined level by level (4, 8, ... resolution); every level
has an RGB head, and the image at level L is ``tanh(up(acc[L/2]) + rgb_L(features_L))`` (the
StyleGAN2 skip form), so each granularity's *contribution* is the residual it adds on top of the
coarser picture. The mapping network turns z into w; every level reads its own copy of w, which
is what makes style mixing (coarse levels from seed A, fine from seed B) and truncation towards
the running mean ``w_avg`` possible.

Discriminator: reads every level, as MSG-GAN does: starting at the finest image it downsamples
and, at each coarser level, concatenates that level's RGB image to its features, so gradients
reach every generator level directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import Family, MultiScaleOutput, bounded, check_fields, check_generate_args, register, seeded_normal
from .layers import (
    DownBlock,
    GranularityBlock,
    MappingNetwork,
    image_pyramid,
    level_channels,
    lrelu,
    minibatch_stddev,
)


@dataclass(frozen=True)
class MSGGANConfig:
    # Bounds (lo, hi) sit beside each field: a config.json from a stranger is checked against them
    # before anything is built, so a width of 10**9 is a one-line error, not 16 GB asked for.
    family: str = "msggan"
    resolution: int = bounded(64, 8, 256)  # finest level; a power of two from 8 to 256
    latent_dim: int = bounded(128, 1, 2048)  # z: big enough for variety, small enough to interpolate smoothly
    w_dim: int = bounded(128, 1, 2048)  # intermediate latent the styles are read from
    mapping_layers: int = bounded(3, 1, 16)  # StyleGAN uses 8; 3 is plenty for small few-shot sets
    channel_base: int = bounded(1024, 1, 2**16)  # channels at level L = base / L, capped: cost stays flat per level
    channel_max: int = bounded(128, 1, 2048)  # cap for the coarse levels
    d_channel_base: int = bounded(1024, 1, 2**16)  # discriminator widths, same rule
    d_channel_max: int = bounded(128, 1, 2048)
    w_avg_beta: float = bounded(0.995, 0.0, 1.0)  # running mean of w that truncation pulls towards

    def __post_init__(self) -> None:
        check_fields(self)
        r = self.resolution
        if r < 8 or r > 256 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two between 8 and 256, got {r}")

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, self.resolution.bit_length()))


class MSGGANGenerator(nn.Module):
    def __init__(self, config: MSGGANConfig):
        super().__init__()
        self.config = config
        self.levels = config.levels
        chans = level_channels(self.levels, config.channel_base, config.channel_max)
        self.mapping = MappingNetwork(config.latent_dim, config.w_dim, config.mapping_layers)
        self.const = nn.Parameter(torch.randn(1, chans[0], 4, 4))
        blocks, rgbs = [], []
        for i, lvl in enumerate(self.levels):
            in_ch = chans[0] if i == 0 else chans[i - 1]
            blocks.append(GranularityBlock(in_ch, chans[i], config.w_dim, upsample=i > 0))
            rgbs.append(nn.Conv2d(chans[i], 3, 1))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(rgbs)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    # --- the shared interface -------------------------------------------------------------
    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return seeded_normal((n, self.config.latent_dim), seed)

    def granularity_modules(self) -> dict[int, nn.Module]:
        return dict(zip(self.levels, self.blocks))

    def forward(
        self,
        latents: torch.Tensor,
        *,
        upto: int | None = None,
        truncation: float = 1.0,
        mix: tuple[torch.Tensor, int] | None = None,
    ) -> MultiScaleOutput:
        upto = check_generate_args(self, upto, truncation, mix)
        w = self._w(latents, truncation)
        w_b = self._w(mix[0].to(latents), truncation) if mix is not None else None
        x = self.const.expand(latents.shape[0], -1, -1, -1)
        images: dict[int, torch.Tensor] = {}
        acc = None
        for lvl, block, rgb in zip(self.levels, self.blocks, self.to_rgb):
            w_l = w_b if (mix is not None and lvl >= mix[1]) else w
            x = block(x, w_l)
            res = rgb(x)
            acc = res if acc is None else nn.functional.interpolate(acc, scale_factor=2.0, mode="bilinear", align_corners=False) + res
            images[lvl] = torch.tanh(acc)
            if lvl == upto:
                break
        return MultiScaleOutput(images=images)

    def _w(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            # Track the centre of w-space: truncation 0 maps every seed to the "mean image".
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0), 1 - self.config.w_avg_beta)
        if truncation != 1.0:
            w = self.w_avg + truncation * (w - self.w_avg)
        return w


class MSGGANDiscriminator(nn.Module):
    def __init__(self, config: MSGGANConfig):
        super().__init__()
        self.config = config
        self.levels = config.levels
        chans = level_channels(self.levels, config.d_channel_base, config.d_channel_max)
        fine = len(self.levels) - 1
        self.from_rgb = nn.Conv2d(3, chans[fine], 1)
        # Block i takes level i (plus its 3 RGB channels, except at the finest) down to level i-1.
        self.down = nn.ModuleList(
            DownBlock(chans[i] + (3 if i < fine else 0), chans[i - 1]) for i in range(fine, 0, -1)
        )
        self.final_conv = nn.Conv2d(chans[0] + 3 + 1, chans[0], 3, padding=1)
        self.final_fc = nn.Linear(chans[0] * 16, chans[0])
        self.out = nn.Linear(chans[0], 1)

    def forward(self, images: dict[int, torch.Tensor]) -> torch.Tensor:
        levels = self.levels
        x = lrelu(self.from_rgb(images[levels[-1]]))
        for block, lvl in zip(self.down, levels[-2::-1]):
            x = block(x)
            x = torch.cat([x, images[lvl]], dim=1)
        x = lrelu(self.final_conv(minibatch_stddev(x)))
        x = lrelu(self.final_fc(x.flatten(1)))
        return self.out(x).squeeze(1)

    def real_pyramid(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        return image_pyramid(images, self.levels)


register(
    Family(
        name="msggan",
        config_cls=MSGGANConfig,
        generator_cls=MSGGANGenerator,
        discriminator_cls=MSGGANDiscriminator,
        description="multi-scale GAN (MSG-GAN with StyleGAN mapping and per-level styles)",
    )
)
