"""Hierarchical VAE family ("hvae"): a small NVAE / VDVAE-style ladder with one latent group per level.

(About 500 lines: a family is one file, model, Decompose's encoder, recipe and options together.)

Follows Vahdat & Kautz, "NVAE" (NeurIPS 2020) and Child, "Very Deep VAEs" (ICLR 2021), kept
small enough to sample a 64px picture on two CPU cores in a few milliseconds:

* a bottom-up **encoder** turns the image into a feature map at every level (r, r/2, ... 4);
* a top-down **decoder** starts from a learned 4x4 state and, at every level 4x4 ... r, draws a
  spatial latent group ``z_l`` from the prior ``p(z_l | z_<l)`` (or, given an image, from the
  posterior ``q(z_l | x, z_<l)``, parameterised relative to the prior as in NVAE), adds it to the
  state, refines the state with residual blocks, and paints it with the level's RGB head in
  the MSG-GAN / StyleGAN2 skip form ``image_L = tanh(up(acc_{L/2}) + rgb_L(h_L))``. A global
  latent vector (``z_global``, a vanilla VAE's N(0, I) latent) opens the 4x4 level, so traits of
  the whole picture do not have to be spelled out by a factorised 4x4 prior.

Because the state at level L depends only on ``z_<=L``, the picture at level L is decided by
the coarse latents alone: keeping them and re-sampling the finer ones changes detail, never
layout (``resample``). Latents are handed around as *epsilons*, one flat standard-normal vector
per picture cut into the groups (``z_l = mu_p + T * sigma_p * eps_l``): a seed is one picture on
every device, ``truncation`` is the sampling temperature T (0 gives the prior's mean picture),
and ``mix`` swaps the epsilons of the levels >= the switch. ``encode(x)`` returns the posterior
means in that same currency, so ``forward(encode(x).latents)`` reconstructs ``x``.

Training (``HVAERecipe``) maximises a beta-weighted ELBO with a Gaussian decoder whose variance
is set to its optimum per batch (sigma-VAE, Rybkin et al. 2021) above a floor, plus the same
likelihood at every coarser level against the area-downsampled image, each weighted as a full
image (a coarse pixel stands for the fine pixels it summarises). The coarser pictures are
detached from the finer levels' residuals, so each level's RGB head is a faithful picture at its
granularity and the coarse latents must carry the layout. Posterior collapse is held off with
linear KL warm-up and per-level free bits (Kingma et al. 2016); updates with an exploding or
non-finite gradient norm are skipped and the rest clipped (VDVAE).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import (Family, MultiScaleOutput, UIHints, bounded, check_fields, check_generate_args, check_options, option,
               seed_at)
from . import Serving, register, seeded_normal
from .layers import ResBlock
from .layers import image_pyramid, level_channels
from ..distributed import rows


@dataclass(frozen=True)
class HVAEConfig:
    # Bounds (lo, hi) sit beside each field: a config.json from a stranger is checked against them
    # before anything is built.
    family: str = "hvae"
    resolution: int = bounded(64, 8, 256)  # finest level; a power of two from 8 to 256
    channel_base: int = bounded(1024, 1, 2**16)  # state channels at level L = base / L, capped: cost stays flat per level
    channel_max: int = bounded(128, 1, 2048)  # cap for the coarse levels
    blocks_per_level: int = bounded(1, 1, 16)  # residual blocks after each latent group (VDVAE uses many; 1 is CPU-fast)
    z_channels: int = bounded(8, 1, 256)  # latent channels at 4x4 and 8x8 ...
    z_channels_min: int = bounded(1, 1, 256)  # ... halved per finer level down to this: fine levels hold detail, not layout
    z_global: int = bounded(0, 0, 4096)  # size of a global latent vector opening the 4x4 level, for whole-picture traits a
    # factorised 4x4 prior cannot correlate; 0 (off) is also what a config.json without the field means
    def __post_init__(self) -> None:
        check_fields(self)
        r = self.resolution
        if r < 8 or r > 256 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two between 8 and 256, got {r}")
        if self.blocks_per_level < 1 or self.z_channels < 1 or not 1 <= self.z_channels_min <= self.z_channels:
            raise ValueError("blocks_per_level and z_channels must be >= 1, and 1 <= z_channels_min <= z_channels")
        if self.z_global < 0:
            raise ValueError(f"z_global must be >= 0 (0 turns the global latent off), got {self.z_global}")

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, self.resolution.bit_length()))

    def latent_channels(self, level: int) -> int:
        return min(self.z_channels, max(self.z_channels_min, self.z_channels * 8 // level))


@dataclass
class Encoding:
    """What ``HVAEGenerator.encode`` returns for a batch of N images."""

    latents: torch.Tensor  # N x D posterior-mean epsilons: forward(latents) reconstructs the images
    images: dict[int, torch.Tensor]  # level -> N x 3 x l x l reconstruction
    mu: dict[int, torch.Tensor]  # level -> N x zc x l x l posterior mean of z_l
    kl: dict[int, torch.Tensor]  # level -> N x l x l KL(q || p) in nats per position
    global_mu: torch.Tensor | None = None  # N x z_global posterior mean of the global group (part of level 4)

    def kl_nats(self) -> dict[int, torch.Tensor]:
        """Level -> N: nats each level spends on each image (what the level 'knows' about it)."""
        return {lvl: m.flatten(1).sum(1) for lvl, m in self.kl.items()}


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    # NVAE's soft clamp: keeps means and log-scales bounded without killing their gradients.
    return bound * torch.tanh(x / bound)


def gaussian_kl(mu_q, logsig_q, mu_p, logsig_p) -> torch.Tensor:
    """Elementwise KL(N(mu_q, sig_q) || N(mu_p, sig_p)) in nats."""
    return logsig_p - logsig_q + 0.5 * (torch.exp(2 * (logsig_q - logsig_p)) + ((mu_q - mu_p) * torch.exp(-logsig_p)) ** 2) - 0.5


class LevelBlocks(nn.Sequential):
    """The residual blocks of one decoder level; its output is that level's feature map."""


class HVAEGenerator(nn.Module):
    """The whole VAE (encoder + top-down decoder): exported as the model's "generator".

    Latents come in *groups*, each belonging to a level: with ``z_global`` > 0 a global vector
    (a vanilla VAE's latent, N(0, I) prior) opens the coarsest level before its spatial group,
    then one spatial group per level. ``group_levels`` says which level each group belongs to."""

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.config = config
        self.levels = config.levels
        chans = level_channels(self.levels, config.channel_base, config.channel_max)
        self.chans = chans
        self.zc = tuple(config.latent_channels(lvl) for lvl in self.levels)
        self.zg = config.z_global
        # Encoder, fine to coarse: enc_blocks[i] works at levels[i]; enc_down[i] maps level i+1 -> i.
        self.enc_in = nn.Conv2d(3, chans[-1], 3, padding=1)
        self.enc_blocks = nn.ModuleList(ResBlock(c) for c in chans)
        self.enc_down = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i], 1) for i in range(len(chans) - 1))
        # Decoder, coarse to fine.
        self.const = nn.Parameter(torch.zeros(1, chans[0], 4, 4))
        if self.zg:
            self.global_post = nn.Linear(chans[0] * 16, 2 * self.zg)
            self.global_proj = nn.Linear(self.zg, chans[0] * 16)
        self.dec_up = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 1) for i in range(len(chans) - 1))
        self.prior = nn.ModuleList(nn.Conv2d(c, 2 * z, 3, padding=1) for c, z in zip(chans, self.zc))
        self.post = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, 2 * z, 1))
            for c, z in zip(chans, self.zc)
        )
        self.z_proj = nn.ModuleList(nn.Conv2d(z, c, 1) for c, z in zip(chans, self.zc))
        self.blocks = nn.ModuleList(
            LevelBlocks(*[ResBlock(c) for _ in range(config.blocks_per_level)]) for c in chans
        )
        self.to_rgb = nn.ModuleList(nn.Conv2d(c, 3, 1) for c in chans)
        # A fresh prior is N(0, 1) and a fresh posterior equals it: KL starts at zero.
        heads = [*self.prior, *(p[-1] for p in self.post)] + ([self.global_post] if self.zg else [])
        for head in heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.group_shapes = ([(self.zg,)] if self.zg else []) + [(z, lvl, lvl) for z, lvl in zip(self.zc, self.levels)]
        self.group_levels = ((self.levels[0],) if self.zg else ()) + self.levels
        self.latent_dim = sum(math.prod(shape) for shape in self.group_shapes)

    # --- the shared interface -------------------------------------------------------------
    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return seeded_normal((n, self.latent_dim), seed)

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
        eps = self.split_latents(latents)
        if mix is not None:
            eps_b = self.split_latents(mix[0])
            eps = [b if lvl >= mix[1] else a for lvl, a, b in zip(self.group_levels, eps, eps_b)]
        return self._top_down(latents.shape[0], upto=upto, eps=eps, temps=[float(truncation)] * len(eps))

    # --- latents ----------------------------------------------------------------------------
    def split_latents(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """N x D flat epsilons -> one tensor per group (N x zg, then N x zc x l x l per level)."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be N x {self.latent_dim} for this model, got {tuple(latents.shape)}")
        parts = torch.split(latents, [math.prod(shape) for shape in self.group_shapes], dim=1)
        return [p.reshape(-1, *shape) for p, shape in zip(parts, self.group_shapes)]

    def join_latents(self, groups: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([g.flatten(1) for g in groups], dim=1)

    # --- the ladder -------------------------------------------------------------------------
    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bottom-up features, one per level (coarse to fine order, like ``levels``)."""
        r = self.config.resolution
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != r or x.shape[-2] != r:
            raise ValueError(f"images must be N x 3 x {r} x {r} for this {r}px model, got {tuple(x.shape)}")
        p = next(self.parameters())
        e = self.enc_in(x.to(p.device, p.dtype))
        feats = []
        for i in range(len(self.levels) - 1, -1, -1):
            e = self.enc_blocks[i](e)
            feats.append(e)
            if i > 0:
                e = self.enc_down[i - 1](F.avg_pool2d(e, 2))
        return feats[::-1]

    def _top_down(
        self,
        n: int,
        *,
        upto: int,
        eps: list[torch.Tensor | None],
        temps: list[float],
        feats: list[torch.Tensor] | None = None,
        post_levels: frozenset[int] = frozenset(),
        post_noise: list[torch.Tensor] | None = None,
    ) -> MultiScaleOutput:
        """Run the decoder; ``eps``, ``temps`` and ``post_noise`` hold one entry per group. A group
        takes its latent from the posterior when its level is in ``post_levels`` (the mean, or
        mean + sigma * post_noise), else from the prior: ``mu_p + T * sigma_p * eps``."""
        p = next(self.parameters())
        cast = lambda t: t.to(p.device, p.dtype)  # noqa: E731
        h = self.const.expand(n, -1, -1, -1)
        images: dict[int, torch.Tensor] = {}
        kl: dict[int, torch.Tensor] = {}
        post_eps: list[torch.Tensor | None] = [None] * len(self.group_shapes)
        mus: dict[int, torch.Tensor] = {}
        kl_global = None
        first = 0
        if self.zg:  # the global group: prior N(0, I), posterior from the encoder's 4x4 features
            if self.levels[0] in post_levels:
                mu, logsig = soft_clamp(self.global_post(feats[0].flatten(1))).chunk(2, dim=1)
                kl_global = gaussian_kl(mu.float(), logsig.float(), torch.zeros(()), torch.zeros(())).sum(1)
                post_eps[0], mus[0] = mu, mu
                z = mu if post_noise is None else mu + torch.exp(logsig) * cast(post_noise[0])
            else:
                z = cast(eps[0]) * temps[0]
            h = h + self.global_proj(z).view(n, -1, 4, 4)
            first = 1
        acc = None
        for i, lvl in enumerate(self.levels):
            g = first + i
            if i > 0:
                h = F.interpolate(self.dec_up[i - 1](h), scale_factor=2.0, mode="nearest")
            mu_p, logsig_p = soft_clamp(self.prior[i](F.silu(h))).chunk(2, dim=1)
            if lvl in post_levels:
                d_mu, d_logsig = soft_clamp(self.post[i](torch.cat([h, feats[i]], dim=1))).chunk(2, dim=1)
                mu_q, logsig_q = mu_p + d_mu, logsig_p + d_logsig
                # In float32 even for a half-precision model: exp(2 * log-ratio) overflows fp16.
                kl[lvl] = gaussian_kl(mu_q.float(), logsig_q.float(), mu_p.float(), logsig_p.float()).sum(1)
                if i == 0 and kl_global is not None:  # spread over the 4x4 map so the map sums to the level's KL
                    kl[lvl] = kl[lvl] + kl_global[:, None, None] / kl[lvl][0].numel()
                post_eps[g] = d_mu * torch.exp(-logsig_p)
                mus[lvl] = mu_q
                z = mu_q if post_noise is None else mu_q + torch.exp(logsig_q) * cast(post_noise[g])
            else:
                z = mu_p if temps[g] == 0 else mu_p + temps[g] * torch.exp(logsig_p) * cast(eps[g])
            h = self.blocks[i](h + self.z_proj[i](z))
            res = self.to_rgb[i](h)
            # Detached: a level's picture is fitted by its own likelihood term only, so the finer
            # levels' losses cannot bend it into a mere base for their residuals.
            acc = res if acc is None else F.interpolate(acc.detach(), scale_factor=2.0, mode="bilinear",
                                                        align_corners=False) + res
            images[lvl] = torch.tanh(acc)
            if lvl == upto:
                break
        return MultiScaleOutput(images=images, extras={"kl": kl, "post_eps": post_eps, "mu": mus})

    def posterior(self, x: torch.Tensor, *, upto: int | None = None, noise: torch.Tensor | None = None) -> MultiScaleOutput:
        """Decode ``x`` through its posterior at every level: means, or reparameterised samples
        when ``noise`` (N x D standard normal) is given. Extras: per-level KL maps, posterior
        means (``mu``; key 0 is the global group) and per-group posterior epsilons."""
        upto = self.levels[-1] if upto is None else upto
        if upto not in self.levels:
            raise ValueError(f"scale {upto} is not one of this model's levels {list(self.levels)}")
        feats = self.encoder_features(x)
        noise_groups = self.split_latents(noise) if noise is not None else None
        groups = len(self.group_shapes)
        return self._top_down(x.shape[0], upto=upto, eps=[None] * groups, temps=[1.0] * groups,
                              feats=feats, post_levels=frozenset(self.levels), post_noise=noise_groups)

    # --- Decompose ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Encoding:
        """Posterior means of ``x`` (N x 3 x r x r in [-1, 1]) at every level, with its reconstruction."""
        out = self.posterior(x)
        mus = out.extras["mu"]
        return Encoding(latents=self.join_latents(out.extras["post_eps"]), images=out.images,
                        mu={lvl: mus[lvl] for lvl in self.levels}, kl=out.extras["kl"], global_mu=mus.get(0))

    def reconstruct(self, x: torch.Tensor, upto: int | None = None) -> MultiScaleOutput:
        """``x`` through its posterior means: the image at every level up to ``upto``."""
        out = self.posterior(x, upto=upto)
        return MultiScaleOutput(images=out.images, extras={"kl": out.extras["kl"]})

    def resample(
        self,
        x: torch.Tensor,
        *,
        keep_below: int | None = None,
        keep_from: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        count: int = 1,
    ) -> MultiScaleOutput:
        """Variants of each image in ``x``: ``count`` per image, from seeds ``seed``, ``seed + 1``, ...

        ``keep_below=L``: the levels < L keep ``x``'s posterior (its layout), the levels >= L are
        drawn from the prior at ``temperature`` (new detail). ``keep_from=L``: the levels >= L keep
        ``x``'s posterior epsilons (its detail, re-read in the new context), the levels < L are
        drawn afresh (new layout). Output images are ordered image-major (x[0]'s variants first).
        """
        if (keep_below is None) == (keep_from is None):
            raise ValueError("give exactly one of keep_below (vary detail) or keep_from (vary layout)")
        split = keep_below if keep_below is not None else keep_from
        if split not in self.levels:
            raise ValueError(f"level {split} is not one of this model's levels {list(self.levels)}")
        check_generate_args(self, None, temperature, None)
        if not 1 <= count <= 256:
            raise ValueError(f"count must be between 1 and 256, got {count}")
        n = x.shape[0]
        noise = torch.cat([self.sample_latents(1, seed_at(seed, j)) for j in range(count)])
        noise = self.split_latents(noise.repeat(n, 1))
        temps = [float(temperature)] * len(noise)
        if keep_below is not None:
            # The encoder runs once per image; its features are shared by that image's variants.
            feats = [f.repeat_interleave(count, dim=0) for f in self.encoder_features(x)]
            kept = frozenset(lvl for lvl in self.levels if lvl < keep_below)
            return self._top_down(n * count, upto=self.levels[-1], eps=noise, temps=temps, feats=feats, post_levels=kept)
        own = [e.repeat_interleave(count, dim=0) for e in self.posterior(x).extras["post_eps"]]
        fine = [lvl >= keep_from for lvl in self.group_levels]
        eps = [o if keep else e for keep, o, e in zip(fine, own, noise)]
        temps = [1.0 if keep else t for keep, t in zip(fine, temps)]
        return self._top_down(n * count, upto=self.levels[-1], eps=eps, temps=temps)


@torch.inference_mode()
def reconstruction_error(model: HVAEGenerator, images: torch.Tensor, *, batch_size: int = 256) -> dict[str, float]:
    """Per-level MSE (in [-1, 1] units) of ``model``'s reconstructions against the area-downsampled
    ``images``, the PSNR of the finest level in dB (on [0, 1] pixels), and the mean KL in nats per
    image at each level: the figures a model card reports beside SWD / KID / FID."""
    p = next(model.parameters())
    se = {lvl: 0.0 for lvl in model.levels}
    kl = {lvl: 0.0 for lvl in model.levels}
    for chunk in images.split(batch_size):
        x = chunk.to(p.device, p.dtype)
        enc = model.encode(x)
        targets = image_pyramid(x.float(), model.levels)
        for lvl in model.levels:
            se[lvl] += float((enc.images[lvl].float() - targets[lvl]).pow(2).mean((1, 2, 3)).sum())
            kl[lvl] += float(enc.kl[lvl].float().flatten(1).sum(1).sum())
    n = images.shape[0]
    out = {f"mse_{lvl}": se[lvl] / n for lvl in model.levels}
    out["psnr_db"] = 10 * math.log10(4.0 / max(out[f"mse_{model.levels[-1]}"], 1e-12))  # [-1,1] range is 2 wide
    out.update({f"kl_nats_{lvl}": kl[lvl] / n for lvl in model.levels})
    return out


# --- training ------------------------------------------------------------------------------------
def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, min_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image NLL (nats) of ``target`` under N(mean, sigma^2) with sigma^2 the batch MSE
    (the calibrated decoder of sigma-VAE), floored at ``min_sigma``; returns (nll per image, sigma)."""
    se = (target - mean).pow(2)
    var = se.detach().mean().clamp_min(min_sigma**2)
    dims = se[0].numel()
    nll = se.flatten(1).sum(1) / (2 * var) + 0.5 * dims * torch.log(2 * math.pi * var)
    return nll, var.sqrt()


def kl_weight(step: int, warmup: int) -> float:
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


def free_bits(kl_per_image: torch.Tensor, nats: float) -> torch.Tensor:
    """Kingma et al.'s free bits on one level: the batch-mean KL, not penalised below ``nats``."""
    return kl_per_image.mean().clamp_min(nats)


@dataclass(frozen=True)
class HVAEOptions:
    """The VAE's own training options (``TrainOptions.family``). They used to be fields of
    ``HVAEConfig``, so older config.json files carry them (``LEGACY_CONFIG_KEYS``)."""

    kl_warmup_steps: int = option(2000, "KL weight ramps 0 -> 1 over this many steps (at most a quarter of a run)",
                                  lo=0, hi=10**7)
    beta: float = option(1.0, "KL weight after warm-up (beta-VAE): above 1 trades detail for a prior that samples "
                         "cleanly", lo=1e-6, hi=1000.0, label="KL weight beta (above 1: cleaner samples, less detail)")
    free_nats: float = option(2.0, "per level and image: KL below this is not penalised (free bits)", lo=0.0, hi=1000.0)
    min_sigma: float = option(0.25, "floor of the decoder's per-pixel std in [-1, 1] units: lower is sharper but "
                              "spends more nats on pixel detail", lo=1e-6, hi=10.0)
    aux_weight: float = option(1.0, "weight of the coarser levels' likelihood terms (each counted as a full image)",
                               lo=0.0, hi=1000.0)
    lr_warmup_steps: int = option(200, "the learning rate ramps up over this many steps", lo=0, hi=10**7)
    grad_clip: float = option(200.0, "clip the gradient norm (loss in nats per image dimension)", lo=0.0, hi=1e9)
    skip_threshold: float = option(2000.0, "skip an update whose gradient norm is above this or not finite",
                                   lo=0.0, hi=1e12)

    def __post_init__(self) -> None:
        check_options(self)


LEGACY_CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(HVAEOptions))


class HVAERecipe:
    """One ELBO step: posterior pass with reparameterised noise from the run's generator, KL
    warm-up and free bits per level, likelihood at every level, clipped or skipped update.

    Of the loop's ``TrainOptions`` it reads ``lr`` (reached after ``lr_warmup_steps``), ``steps`` (the
    KL warm-up is at most a quarter of a run) and the seeds, and its own ``HVAEOptions`` from
    ``options.family``. No augmentation (DiffAugment exists to blind a discriminator), and beta1 = 0
    suits adversarial games, not a likelihood, so Adam runs with (0.9, 0.99)."""

    def __init__(self, generator: HVAEGenerator, discriminator: Any = None, options: Any = None):
        self.G, self.opt = generator, options
        self.hopt = options.for_family("hvae").family if options is not None else HVAEOptions()
        self.modules = {"generator": generator}
        self.lr = options.lr if options is not None else 2e-4
        self.optimizers = {"generator": torch.optim.Adam(generator.parameters(), lr=self.lr, betas=(0.9, 0.99))}

    def losses(self, real: torch.Tensor, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        G, cfg = self.G, self.hopt
        # Several processes: this rank's rows of the global batch's noise (msgen.distributed).
        draw = lambda k: torch.randn(k, G.latent_dim, generator=gen)  # noqa: E731
        noise = rows(draw, real.shape[0], getattr(self, "shard", None)).to(real.device)
        out = G.posterior(real, noise=noise)
        targets = image_pyramid(real, G.levels)
        total_steps = getattr(self.opt, "steps", 0) or 0
        warmup = min(cfg.kl_warmup_steps, max(1, total_steps // 4)) if total_steps else cfg.kl_warmup_steps
        beta = cfg.beta * kl_weight(step, warmup)
        dims = real[0].numel()
        nll_fine, sigma = gaussian_nll(targets[G.levels[-1]], out.images[G.levels[-1]], cfg.min_sigma)
        # A coarse pixel stands for the (r / l)^2 fine pixels it summarises, so every level's picture
        # weighs like a full image: the layout pays for itself in the coarse latents.
        r = G.levels[-1]
        aux = sum((r // l) ** 2 * gaussian_nll(targets[l], out.images[l], cfg.min_sigma)[0].mean() for l in G.levels[:-1])
        kls = {lvl: m.flatten(1).sum(1) for lvl, m in out.extras["kl"].items()}
        kl_pen = sum(free_bits(k, cfg.free_nats) for k in kls.values())
        kl_total = sum(k.mean() for k in kls.values())
        loss = (nll_fine.mean() + cfg.aux_weight * aux + beta * kl_pen) / dims
        stats = {
            "loss": loss.item(),
            "elbo": ((nll_fine.mean() + kl_total) / dims).item(),  # negative ELBO, nats per dimension
            "nll": (nll_fine.mean() / dims).item(),
            "kl": kl_total.item(),  # nats per image, all levels
            "kl_weight": beta,
            "sigma": sigma.item(),
            "mse": F.mse_loss(out.images[G.levels[-1]], targets[G.levels[-1]]).item(),
        }
        stats.update({f"kl_{lvl}": k.mean().item() for lvl, k in kls.items()})
        return loss, stats

    def step(self, real: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        loss, stats = self.losses(real, step, gen)
        opt, cfg = self.optimizers["generator"], self.hopt
        lr = self.lr * kl_weight(step, cfg.lr_warmup_steps)  # the same linear ramp, for the learning rate
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.G.parameters(), cfg.grad_clip).item()
        skipped = not math.isfinite(norm) or norm > cfg.skip_threshold
        if not skipped:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return stats | {"grad_norm": norm, "skipped": float(skipped), "lr": lr}


register(
    Family(
        name="hvae",
        config_cls=HVAEConfig,
        generator_cls=HVAEGenerator,
        discriminator_cls=None,
        recipe_cls=HVAERecipe,
        options_cls=HVAEOptions,
        tiny_config=dict(channel_base=64, channel_max=16, z_channels=4, z_channels_min=1, z_global=8),
        description="hierarchical VAE (NVAE/VDVAE-style ladder, a latent group per level; can decompose an image)",
        encodes=True,
        ui=UIHints(
            truncation_label="Temperature (0: each level's most likely latent, 1: the prior as trained)",
            default_truncation=0.7,  # a small VAE's prior samples look cleaner a little below 1
            # Decompose's variants: 0.8 keeps them closer to their picture than at 1.0 and sharper
            # than at 0.7 (README, "Decompose, measured": the figures were taken at 0.8)
            resample_temperature=0.8,
        ),
        # bench/generate.py --only-cpu-serving, one thread: channels_last 1.2x as fast (emoji64-hvae 8.1 ->
        # 6.7 ms, the same values up to float rounding), with bfloat16 1.3-1.4x (5.8 ms; 0.2% of the 8-bit
        # values move by more than 2 steps, none by more than 8)
        serving=Serving(channels_last=("",), low_precision=("",)),
        legacy_config_keys=LEGACY_CONFIG_KEYS,
    )
)
