"""GAN objectives: small pure callables (EDM ``loss.py`` style) that family recipes combine.

* ``d_loss`` / ``g_loss``: the non-saturating logistic (StyleGAN) and hinge losses, and the
  paired one below, picked by name.
* ``rp_d_loss`` / ``rp_g_loss``: the relativistic pairing GAN loss (RpGAN, Jolicoeur-Martineau
  2019) that R3GAN (Huang et al. 2025, "The GAN is dead; long live the GAN!") pairs with both
  zero-centred gradient penalties, R1 on real and R2 on fake pictures (``gradient_penalty``
  serves both): each real picture is judged against a fake one, so the discriminator cannot
  push every fake to one region of low score independently of the reals, the failure R3GAN
  shows non-paired losses fall into (mode dropping).
* ``correspondence_loss``: the cross-domain distance consistency loss of Ojha et al. 2021,
  "Few-shot Image Generation via Cross-domain Correspondence": for every sample of a batch, the
  softmax over its feature similarities to the batch's other samples, from the fine-tuned
  generator, is pulled towards the same softmax from the frozen base generator on the same
  latents (KL divergence), so pictures that differed before fine-tuning keep differing after it.
* ``mode_seeking_loss``: the mode-seeking regulariser of Mao et al. 2019, "Mode Seeking
  Generative Adversarial Networks for Diverse Image Synthesis": the batch is split into pairs and
  the generator is rewarded for pictures at least as far apart as their latents, 1 / (d_img / d_z),
  which grows without bound as two latents give the same picture. Unlike the correspondence
  loss it needs no base, so it also works from a base that is itself collapsed. Measured on
  full-resolution pixels the generator meets it with high-frequency noise (bench/fewshot.py:
  near-duplicates vanish, coverage collapses), so ``size`` can area-average the pictures first:
  only layout and colour then count as different.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rp_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator: softplus(D(fake) - D(real)), real and fake paired in batch order."""
    return F.softplus(fake_logits - real_logits).mean()


def rp_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Generator: softplus(D(real) - D(fake)); the real logits carry no gradient to the generator."""
    return F.softplus(real_logits.detach() - fake_logits).mean()


def gradient_penalty(logits: torch.Tensor, inputs: dict[int, torch.Tensor]) -> torch.Tensor:
    """Zero-centred gradient penalty: mean over samples of |d logits / d inputs|^2 (R1 on reals, R2 on fakes)."""
    grads = torch.autograd.grad(logits.sum(), list(inputs.values()), create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads).mean()


def _similarity_logits(features: torch.Tensor) -> torch.Tensor:
    """N x (N-1): cosine similarity of each sample to every other sample (the diagonal dropped)."""
    f = F.normalize(features.flatten(1), dim=1)
    sim = f @ f.T
    n = sim.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim[off_diagonal].view(n, n - 1)


def correspondence_loss(target: list[torch.Tensor], source: list[torch.Tensor]) -> torch.Tensor:
    """Sum over feature layers of KL(source softmax || target softmax), averaged over anchors.

    ``target`` and ``source`` hold the same layers' N x ... activations for the same N latents,
    from the generator being trained and from the frozen base (no gradient). Needs N >= 3.
    """
    total = torch.zeros((), device=target[0].device)
    for t, s in zip(target, source):
        log_t = F.log_softmax(_similarity_logits(t), dim=1)
        p_s = F.softmax(_similarity_logits(s.detach()), dim=1)
        total = total + F.kl_div(log_t, p_s, reduction="batchmean")
    return total


def mode_seeking_loss(images: torch.Tensor, latents: torch.Tensor, eps: float = 1e-5,
                      size: int | None = None) -> torch.Tensor:
    """Mean over the pairs (i, i + N/2) of d_z / d_img, each distance a mean absolute difference;
    ``size`` area-averages the pictures to size x size first."""
    half = images.shape[0] // 2
    if half == 0:
        return images.sum() * 0.0
    if size is not None and images.shape[-1] > size:
        images = F.adaptive_avg_pool2d(images, size)
    d_img = (images[:half] - images[half : 2 * half]).abs().flatten(1).mean(1)
    d_z = (latents[:half] - latents[half : 2 * half]).abs().flatten(1).mean(1)
    return (1.0 / (d_img / d_z + eps)).mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The discriminator's loss: ``kind`` "ns" (non-saturating logistic), "hinge" or "rpgan" (paired)."""
    if kind == "rpgan":
        return rp_d_loss(real_logits, fake_logits)
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's unpaired loss: hinge, else non-saturating (``rp_g_loss`` is the paired one)."""
    return -fake_logits.mean() if kind == "hinge" else F.softplus(-fake_logits).mean()
