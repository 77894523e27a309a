"""Multi-scale GAN family ("msggan"): MSG-GAN (Karnewar & Wang, CVPR 2020) with StyleGAN's
mapping network and per-level styles.

(About 300 lines: a family is one file, generator, discriminator, recipe and options together.)

Generator: a learned 4x4 constant is refined level by level (4, 8, ... resolution); every level
has an RGB head, and the image at level L is ``tanh(up(acc[L/2]) + rgb_L(features_L))`` (the
StyleGAN2 skip form), so each granularity's *contribution* is the residual it adds on top of the
coarser picture. The mapping network turns z into w; every level reads its own copy of w, which
is what makes style mixing (coarse levels from seed A, fine from seed B) and truncation towards
the running mean ``w_avg`` possible.

Discriminator: reads every level, as MSG-GAN does: starting at the finest image it downsamples
and, at each coarser level, concatenates that level's RGB image to its features, so gradients
reach every generator level directly.

Training (``GANRecipe``, options ``GANOptions``): D on real vs fake pyramids with DiffAugment
(Zhao et al. 2020) and lazy R1, then G with style-mixing regularisation; off by default, R2 and
the paired loss of R3GAN, Ojha et al.'s cross-domain correspondence and Mao et al.'s mode seeking
(the losses in ``msgen.losses``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import losses as objectives
from ..augment import POLICIES, diff_augment
from ..distributed import rows
from . import Family, MultiScaleOutput, bounded, check_fields, check_generate_args, check_options, option, register
from . import Serving, seeded_normal
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


@dataclass(frozen=True)
class GANOptions:
    """The GAN's own training options (``TrainOptions.family``); the loop's are in msgen.train."""

    betas: tuple[float, float] = option((0.0, 0.99), "Adam betas; beta1 = 0 stabilises GAN training", lo=0.0, hi=0.9999)
    augment: tuple[str, ...] = option(POLICIES, "DiffAugment policies (comma list, or 'none'); few-shot sets need "
                                      "all three", choices=POLICIES, label="Augmentation (DiffAugment; keep all "
                                      "three for small sets)")
    loss: str = option("ns", "ns: non-saturating; hinge; rpgan: R3GAN's relativistic pairing (use with --r2)",
                       choices=("ns", "hinge", "rpgan"))
    r1_gamma: float = option(1.0, "R1 penalty weight on real pictures (lazy, every r1_every steps)", lo=0.0, hi=1e6,
                             flags=("--r1",))
    r1_every: int = option(4, "steps between R1 (and R2) penalties", lo=1, hi=10**6)
    r2_gamma: float = option(0.0, "R2 penalty weight on generated pictures, on R1's schedule (R3GAN: equal to --r1)",
                             lo=0.0, hi=1e6, flags=("--r2",))
    cdc_weight: float = option(0.0, "fine-tuning only: Ojha et al.'s cross-domain correspondence to the base",
                               lo=0.0, hi=1e6)
    ms_weight: float = option(0.0, "Mao et al.'s mode-seeking regulariser on the finest pictures", lo=0.0, hi=1e6)
    ms_size: int = option(0, "mode seeking compares pictures area-averaged to this side (0: full resolution)",
                          lo=0, hi=4096)
    mixing_prob: float = option(0.5, "style-mixing probability, so that per-level mixing is meaningful", lo=0.0, hi=1.0)
    # StyleGAN's 0.01 acts on equalised layers (weights scaled at run time); on plain nn.Linear
    # layers the same number is a different rate relative to the weights' size.
    mapping_lr: float = option(1.0, "learning-rate multiplier of the mapping network z -> w", lo=0.0, hi=1.0)

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError("betas must be two numbers, e.g. 0.0,0.99")
        check_options(self)


class GANRecipe:
    """One step of multi-scale GAN training: D on real vs fake pyramids, then G; R1 and mixing.

    Options that default to off add R2 on fakes, the paired (R3GAN) loss and, when fine-tuning,
    the cross-domain correspondence to a frozen copy of the base taken here, before any step.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, options: Any):
        # ``options``: msgen.train.TrainOptions; the loop's lr, and this family's GANOptions in .family.
        self.G, self.D = generator, discriminator
        self.opt = options.for_family("msggan").family  # GANOptions (its defaults when unset)
        opt = self.opt
        self.source = copy.deepcopy(generator).eval().requires_grad_(False) if opt.cdc_weight > 0 else None
        self.modules = {"generator": generator, "discriminator": discriminator}
        groups: Any = generator.parameters()
        if opt.mapping_lr != 1.0:  # its own group only then: a run begun without one resumes with its layout
            mapping = list(generator.mapping.parameters())
            ids = {id(q) for q in mapping}
            groups = [{"params": [q for q in generator.parameters() if id(q) not in ids]},
                      {"params": mapping, "lr": options.lr * opt.mapping_lr}]
        self.optimizers = {
            "generator": torch.optim.Adam(groups, lr=options.lr, betas=opt.betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=options.lr, betas=opt.betas),
        }
        self.shard = None  # set by msgen.distributed: this rank's rows of the global batch

    def _latents(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, Any]:
        latents = lambda k: torch.randn(k, self.G.config.latent_dim, generator=gen)  # noqa: E731
        z = rows(latents, n, self.shard).to(device)
        mix = None
        if torch.rand((), generator=gen).item() < self.opt.mixing_prob:
            levels = self.G.levels
            switch = levels[int(torch.randint(1, len(levels), (), generator=gen))]
            mix = (rows(latents, n, self.shard).to(device), switch)
        return z, mix

    def step(self, real: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        G, D, opt = self.G, self.D, self.opt
        n, dev = real.shape[0], real.device
        aug = lambda images: diff_augment(images, opt.augment, gen, self.shard) if opt.augment else images  # noqa: E731
        # Discriminator.
        z, mix = self._latents(n, gen, dev)
        with torch.no_grad():
            fake = G(z, mix=mix).images
        real_pyr = D.real_pyramid(real)
        real_logits = D(aug(real_pyr))
        fake_logits = D(aug(fake))
        loss_d = objectives.d_loss(real_logits, fake_logits, opt.loss)
        total_d = loss_d
        losses = {"d": loss_d.item()}
        if opt.r1_gamma > 0 and step % opt.r1_every == 0:
            # R1 on the un-augmented pyramid, in its own pass: grid_sample (translation) has no
            # double backward on CUDA, and the penalty's job, smoothing D around the data, is the same.
            clean = {k: v.detach().requires_grad_(True) for k, v in real_pyr.items()}
            r1 = objectives.gradient_penalty(D(clean), clean)
            total_d = total_d + 0.5 * opt.r1_gamma * opt.r1_every * r1
            losses["r1"] = r1.item()
        if opt.r2_gamma > 0 and step % opt.r1_every == 0:
            clean = {k: v.detach().requires_grad_(True) for k, v in fake.items()}
            r2 = objectives.gradient_penalty(D(clean), clean)
            total_d = total_d + 0.5 * opt.r2_gamma * opt.r1_every * r2
            losses["r2"] = r2.item()
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        total_d.backward()
        self.optimizers["discriminator"].step()
        # Generator.
        z, mix = self._latents(n, gen, dev)
        D.requires_grad_(False)
        if self.source is None:
            fake_g = G(z, mix=mix).images
        else:
            fake_g, feats = _with_features(G, z, mix)
            with torch.no_grad():
                _, feats_src = _with_features(self.source, z, mix)
        fake_logits_g = D(aug(fake_g))
        if opt.loss == "rpgan":
            with torch.no_grad():
                real_logits_g = D(aug(real_pyr))
            loss_g = objectives.rp_g_loss(fake_logits_g, real_logits_g)
        else:
            loss_g = objectives.g_loss(fake_logits_g, opt.loss)
        if self.source is not None:
            cdc = objectives.correspondence_loss(list(feats.values()), list(feats_src.values()))
            losses_cdc = cdc.item()
            loss_g = loss_g + opt.cdc_weight * cdc
        if opt.ms_weight > 0:
            ms = objectives.mode_seeking_loss(fake_g[max(fake_g)], z, size=opt.ms_size or None)
            losses_ms = ms.item()
            loss_g = loss_g + opt.ms_weight * ms
        D.requires_grad_(True)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["generator"].step()
        losses["g"] = loss_g.item()
        if self.source is not None:
            losses["cdc"] = losses_cdc
        if opt.ms_weight > 0:
            losses["ms"] = losses_ms
        losses["d_real"] = real_logits.mean().item()
        losses["d_fake"] = fake_logits.mean().item()
        return losses


def _with_features(G: nn.Module, z: torch.Tensor, mix) -> tuple[dict, dict[int, torch.Tensor]]:
    """G's pictures and every level's feature map, with gradients (hooks removed afterwards)."""
    feats: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, lvl=lvl: feats.__setitem__(lvl, out))
               for lvl, m in G.granularity_modules().items()]
    try:
        return G(z, mix=mix).images, feats
    finally:
        for h in handles:
            h.remove()


register(
    Family(
        name="msggan",
        config_cls=MSGGANConfig,
        generator_cls=MSGGANGenerator,
        discriminator_cls=MSGGANDiscriminator,
        recipe_cls=GANRecipe,
        options_cls=GANOptions,
        tiny_config=dict(channel_base=256, channel_max=32, d_channel_base=256, d_channel_max=32, latent_dim=32, w_dim=32),
        description="multi-scale GAN (MSG-GAN with StyleGAN mapping and per-level styles)",
        # bench/generate.py --only-cpu-serving, one thread: bfloat16 (channels_last with it) 1.34-1.41x
        # as fast (emoji64 12.4 -> 8.8 ms; in bfloat16, channels_last alone 10.6 -> 9.9); 1.6% of
        # emoji64's 8-bit values move by more than 8 steps. channels_last in float32 was slower at
        # 32 px (fashion32 9.1 -> 9.5 ms), so float32 keeps the default layout.
        serving=Serving(low_precision=("",)),
    )
)
