"""msgen.losses (RpGAN, R1/R2, cross-domain correspondence, mode seeking) on known cases, and the recipe options
that use them: off by default, and a few steps with each give finite losses that they report."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from msgen import losses
from msgen.models.msggan import GANOptions
from msgen.train import Trainer, TrainOptions
from tests.conftest import make_tiny_model


def test_paired_loss_prefers_reals_above_their_fakes():
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 0.0])
    assert losses.rp_d_loss(real, fake) < losses.rp_d_loss(fake, real)
    # Shifting every logit by a constant changes nothing: only the pairs' differences count.
    assert torch.isclose(losses.rp_d_loss(real + 5, fake + 5), losses.rp_d_loss(real, fake))
    fake_g = fake.clone().requires_grad_(True)
    losses.rp_g_loss(fake_g, real.requires_grad_(True)).backward()
    assert (fake_g.grad < 0).all() and real.grad is None  # G raises its fakes; no gradient to the reals


def test_gradient_penalty_is_the_squared_input_gradient():
    x = {8: torch.randn(3, 3, 8, 8, requires_grad=True)}
    w = torch.randn(3 * 8 * 8)
    logits = (x[8].flatten(1) * w).sum(1)  # linear: gradient w for every sample
    assert torch.isclose(losses.gradient_penalty(logits, x), w.pow(2).sum(), rtol=1e-5)


def test_correspondence_loss_is_zero_when_relations_are_kept_and_grows_with_collapse():
    g = torch.Generator().manual_seed(0)
    source = [torch.randn(8, 4, 4, 4, generator=g), torch.randn(8, 16, generator=g)]
    assert losses.correspondence_loss(source, source).item() < 1e-6
    assert losses.correspondence_loss([2 * s for s in source], source).item() < 1e-6  # cosine: scale-free
    near = [s[:1] + 0.05 * torch.randn(s.shape, generator=g) for s in source]  # all samples alike
    shuffled = [s[torch.randperm(8, generator=g)] for s in source]
    assert losses.correspondence_loss(near, source) > 0.01
    assert losses.correspondence_loss(shuffled, source) > 0


def test_mode_seeking_loss_punishes_latents_that_give_one_picture():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(8, 16, generator=g)
    distinct = torch.rand(8, 3, 8, 8, generator=g) * 2 - 1
    same = distinct[:1].repeat(8, 1, 1, 1) + 0.01 * torch.randn(8, 3, 8, 8, generator=g)
    assert losses.mode_seeking_loss(same, z) > 10 * losses.mode_seeking_loss(distinct, z)
    images = same.clone().requires_grad_(True)
    losses.mode_seeking_loss(images, z).backward()
    assert images.grad.abs().sum() > 0  # pushes the pair apart
    # Area-averaged first, pixel noise no longer makes two pictures different.
    noisy = same + 0.5 * torch.randn(8, 3, 8, 8, generator=g)
    assert losses.mode_seeking_loss(noisy, z) < losses.mode_seeking_loss(same, z) / 10
    assert losses.mode_seeking_loss(noisy, z, size=1) > losses.mode_seeking_loss(noisy, z) * 5


def _images(n=8, res=16):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_default_options_take_none_of_these_paths(tmp_path):
    base = make_tiny_model(tmp_path / "base", resolution=16)
    t = Trainer(images=_images(), run_dir=tmp_path / "run", base=base,
                options=TrainOptions(steps=1, batch_size=4, device="cpu"))
    assert t.recipe.source is None
    assert set(t.recipe.step(t.images[:4], 0, t.step_gen)) == {"d", "r1", "g", "d_real", "d_fake"}


def test_r3gan_and_correspondence_options_train_and_report(tmp_path):
    base = make_tiny_model(tmp_path / "base", resolution=16)
    gan = GANOptions(loss="rpgan", r2_gamma=1.0, cdc_weight=10.0, ms_weight=1.0, ms_size=8)
    opts = TrainOptions(steps=4, batch_size=4, device="cpu", sample_every=10, checkpoint_every=10, family=gan)
    t = Trainer(images=_images(), run_dir=tmp_path / "run", base=base, options=opts)
    before = {k: v.clone() for k, v in t.recipe.source.state_dict().items()}
    seen = []
    t.callbacks = (lambda p: seen.append(p.losses),)
    t.train()
    assert {"r1", "r2", "cdc", "ms"} <= set(seen[0]) and all(torch.isfinite(torch.tensor(list(s.values()))).all() for s in seen[:-1])
    assert all(torch.equal(before[k], v) for k, v in t.recipe.source.state_dict().items())  # the base stays frozen
    assert not all(torch.equal(before[k], v) for k, v in t.G.state_dict().items())  # while G moves


def test_mapping_lr_gives_the_mapping_network_its_own_rate_and_resumes(tmp_path):
    # StyleGAN's mapping-network multiplier: off (1.0) the optimiser keeps one group, so runs begun
    # before the option resume; on, the mapping network alone steps at lr * mapping_lr, and a run
    # stopped with it resumes with it.
    base = make_tiny_model(tmp_path / "base", resolution=16)
    plain = Trainer(images=_images(), run_dir=tmp_path / "plain", base=base,
                    options=TrainOptions(steps=1, batch_size=4, device="cpu"))
    assert len(plain.recipe.optimizers["generator"].param_groups) == 1
    opts = TrainOptions(steps=1, batch_size=4, lr=1e-3, device="cpu", sample_every=10, checkpoint_every=1,
                        family=GANOptions(mapping_lr=0.01))
    t = Trainer(images=_images(), run_dir=tmp_path / "run", base=base, options=opts)
    groups = t.recipe.optimizers["generator"].param_groups
    mapping = {id(p) for p in t.G.mapping.parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    assert {id(p) for p in groups[1]["params"]} == mapping and not mapping & {id(p) for p in groups[0]["params"]}
    before = {n: p.detach().clone() for n, p in t.G.named_parameters()}
    t.train()
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in t.G.named_parameters()}
    # Adam's first step moves every weight by about its lr: 100 times less in the mapping network
    assert max(v for n, v in moved.items() if n.startswith("mapping.")) < 2e-5
    assert max(v for n, v in moved.items() if n.startswith("blocks.")) > 5e-4
    again = Trainer(images=_images(), run_dir=tmp_path / "run", base=base, options=dataclasses.replace(opts, steps=2))
    assert again.load_state() and again.step == 1
    assert [g["lr"] for g in again.recipe.optimizers["generator"].param_groups] == [1e-3, 1e-5]
    off = Trainer(images=_images(), run_dir=tmp_path / "run", base=base,
                  options=dataclasses.replace(opts, steps=2, family=GANOptions()))
    with pytest.raises(ValueError, match="mapping-lr"):  # a clear refusal, not torch's "different number of groups"
        off.load_state()
