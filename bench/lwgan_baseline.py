"""The side-by-side baseline for bench/quality.py: PyPI ``lightweight-gan`` (Liu et al. 2021, "Towards
Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", lucidrains' code)
trained on the CPU for a fixed wall time.

``lightweight_gan`` asserts ``torch.cuda.is_available()`` at import, and its ``Trainer`` /
``LightweightGAN`` wrapper move everything to ``cuda:rank`` (``self.cuda(rank)``, ``.cuda(self.rank)``
on every batch), so neither can run on a CPU. Here the module is imported with
``torch.cuda.is_available`` patched to ``True`` for the import only, and its own ``Generator``,
``Discriminator``, ``AugWrapper`` (random h-flip + its DiffAugment) and loss functions are driven
by ``LWGANBaseline.step``, a line-for-line CPU transcription of one ``Trainer.train()`` step with
the package CLI's defaults (``lightweight_gan --image-size R``): latent 256, ``fmap_max`` 512,
attention at 32 px, 1x1 discriminator output, no antialiasing, Adam(2e-4, betas 0.5/0.9), hinge
loss on both discriminator heads, the discriminator's auto-encoding (reconstruction) loss on
real images, the gradient penalty (weight 10) every 4th step, DiffAugment ``cutout,translation``
with the probability its ``set_data_src`` picks from the data set size. Differences, all forced
by the CPU: no gradient accumulation (its CLI accumulates 4 batches of 10 per step on a GPU; here
one batch of ``batch_size``, the same batch as msgen's run), and images come from an in-memory
tensor instead of its folder ``DataLoader`` (same pixels as msgen trains on). Its EMA generator
only starts averaging after 20,000 steps (``steps > 20000``), so a CPU run of minutes is
evaluated, as its ``generate`` would show it, through ``G`` in eval mode.
"""

from __future__ import annotations

import random
import time
from unittest import mock

import torch
from torch import nn
from torch.autograd import grad as torch_grad

from msgen.models import MultiScaleOutput

__all__ = ["import_lightweight_gan", "LWGANBaseline", "LWGANSampler", "cli_aug_prob"]


def import_lightweight_gan():
    """``lightweight_gan.lightweight_gan`` imported on a CPU-only machine (see the module docstring)."""
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        import lightweight_gan.lightweight_gan as lw
    return lw


def cli_aug_prob(num_images: int) -> float:
    """What ``Trainer.set_data_src`` sets when ``aug_prob`` is left unset (the CLI default)."""
    return min(0.5, (1e5 - num_images) * 3e-6) if num_images < 1e5 else 0.0


class LWGANSampler(nn.Module):
    """Wraps a lightweight-gan ``Generator`` in msgen's sampling interface so ``msgen.metrics.evaluate``
    scores it exactly like an msgen model: seeded CPU latents in, images in [-1, 1] out."""

    def __init__(self, generator: nn.Module, latent_dim: int, resolution: int):
        super().__init__()
        self.G = generator
        self.latent_dim = latent_dim
        self.levels = (resolution,)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    def forward(self, latents: torch.Tensor, *, truncation: float = 1.0, **_) -> MultiScaleOutput:
        x = self.G(latents)  # its images live in [0, 1] (ToTensor data, no output activation)
        return MultiScaleOutput(images={self.levels[0]: x.clamp(0, 1) * 2 - 1})


class LWGANBaseline:
    """lightweight-gan's G and D with its CLI defaults at ``resolution``, trained by ``step``."""

    def __init__(self, resolution: int, *, num_images: int, batch_size: int, seed: int = 0,
                 latent_dim: int = 256, fmap_max: int = 512, attn_res_layers=(32,), disc_output_size: int = 1,
                 lr: float = 2e-4, gp_weight: float = 10.0, aug_types=("cutout", "translation")):
        lw = import_lightweight_gan()
        self.lw = lw
        torch.manual_seed(seed)
        random.seed(seed)  # AugWrapper and the 16x16 aux quadrant draw from Python's random
        # What Trainer.init_GAN does before building the GAN: these module globals pick the
        # normalisation and whether Blur is a real blur (only with --antialias).
        saved = lw.norm_class, lw.Blur
        lw.norm_class, lw.Blur = nn.BatchNorm2d, nn.Identity
        try:
            kw = dict(image_size=resolution, fmap_max=fmap_max, attn_res_layers=list(attn_res_layers))
            self.G = lw.Generator(latent_dim=latent_dim, **kw)
            self.D = lw.Discriminator(disc_output_size=disc_output_size, **kw)
        finally:
            lw.norm_class, lw.Blur = saved
        for m in (self.G, self.D):  # LightweightGAN._init_weights
            for layer in m.modules():
                if type(layer) in {nn.Conv2d, nn.Linear}:
                    nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
        self.D_aug = lw.AugWrapper(self.D, resolution)
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.9))
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.9))
        self.latent_dim, self.resolution, self.batch_size = latent_dim, resolution, batch_size
        self.gp_weight = gp_weight
        self.aug_kwargs = {"prob": cli_aug_prob(num_images), "types": list(aug_types)}
        self.steps = 0
        self.data_gen = torch.Generator().manual_seed(seed)

    def num_params(self) -> tuple[int, int]:
        return sum(p.numel() for p in self.G.parameters()), sum(p.numel() for p in self.D.parameters())

    def step(self, images01: torch.Tensor) -> dict[str, float]:
        """One ``Trainer.train()`` step (gradient_accumulate_every=1, no amp, no DDP) on a batch in [0, 1]."""
        lw, G, D_aug, B = self.lw, self.G, self.D_aug, self.batch_size
        self.G.train(), self.D.train()
        apply_gp = self.steps % 4 == 0
        # Discriminator: hinge on both heads + auto-encoding loss on reals (+ GP every 4th step).
        self.D_opt.zero_grad()
        latents = torch.randn(B, self.latent_dim)
        image_batch = images01.clone()
        with torch.no_grad():
            generated = G(latents)
        if apply_gp:
            image_batch.requires_grad_()
        generated, (fake_out, fake_out_32, _) = D_aug(generated, detach=True, input_requires_grad=apply_gp,
                                                     return_discr_input=True, **self.aug_kwargs)
        real_out, real_out_32, aux_loss = D_aug(image_batch, calc_aux_loss=True, **self.aug_kwargs)
        divergence = lw.hinge_loss(real_out, fake_out)
        disc_loss = divergence + lw.hinge_loss(real_out_32, fake_out_32) + aux_loss
        gp_value = None
        if apply_gp:
            real_g = torch_grad(outputs=[real_out, real_out_32], inputs=image_batch,
                                grad_outputs=[torch.ones_like(real_out), torch.ones_like(real_out_32)],
                                create_graph=True, retain_graph=True, only_inputs=True)[0]
            fake_g = torch_grad(outputs=[fake_out, fake_out_32], inputs=generated,
                                grad_outputs=[torch.ones_like(fake_out), torch.ones_like(fake_out_32)],
                                create_graph=True, retain_graph=True, only_inputs=True)[0]
            gp = self.gp_weight * (torch.cat((real_g, fake_g)).reshape(2 * B, -1).norm(2, dim=1) ** 2).mean()
            if not torch.isnan(gp):
                disc_loss = disc_loss + gp
                gp_value = gp.item()
        disc_loss.backward()
        self.D_opt.step()
        # Generator: its hinge generator loss on both heads.
        self.G_opt.zero_grad()
        generated = G(torch.randn(B, self.latent_dim))
        fake_out, fake_out_32, _ = D_aug(generated, **self.aug_kwargs)
        gen_loss = lw.gen_hinge_loss(fake_out, None) + lw.gen_hinge_loss(fake_out_32, None)
        gen_loss.backward()
        self.G_opt.step()
        self.steps += 1
        if torch.isnan(gen_loss) or torch.isnan(divergence):
            raise FloatingPointError(f"lightweight-gan diverged (NaN) at step {self.steps}")
        out = {"d": divergence.item(), "g": gen_loss.item(), "recon": aux_loss.item()}
        if gp_value is not None:
            out["gp"] = gp_value
        return out

    def train_for(self, images: torch.Tensor, seconds: float, log=None, log_every: int = 50) -> tuple[int, float, float]:
        """Train on ``images`` (N x 3 x r x r in [-1, 1]) until ``seconds`` of wall time have passed.

        Returns (steps, wall seconds, process CPU seconds). Batches are drawn uniformly with a seeded
        generator, as msgen's Trainer does, so the two runs see data the same way.
        """
        data01 = (images.float() + 1) / 2
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            idx = torch.randint(0, len(data01), (self.batch_size,), generator=self.data_gen)
            losses = self.step(data01[idx])
            if log is not None and self.steps % log_every == 0:
                log(f"  lightweight-gan step {self.steps} ({time.perf_counter() - t0:.0f}s): "
                    + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        return self.steps, time.perf_counter() - t0, time.process_time() - c0

    def sampler(self) -> LWGANSampler:
        return LWGANSampler(self.G, self.latent_dim, self.resolution)
