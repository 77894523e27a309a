"""The hierarchical VAE family: interface, encoder, re-sampling, training objective, round trips."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import msgen
from msgen import checkpoint as ckpt
from msgen.features import capture
from msgen.models import build_generator, get_family, make_config
from msgen.models.hvae import HVAEGenerator, HVAERecipe, free_bits, gaussian_kl, gaussian_nll, kl_weight
from msgen.train import Trainer, TrainOptions, make_recipe

TINY = dict(channel_base=256, channel_max=32, z_channels=4, z_global=32)


def tiny(resolution: int = 16, seed: int = 0, jitter: float = 0.05, **over) -> HVAEGenerator:
    """A random tiny model; ``jitter`` perturbs the zero-initialised heads so every path is non-trivial."""
    torch.manual_seed(seed)
    g = build_generator(make_config("hvae", resolution=resolution, **(TINY | over))).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(jitter * torch.randn_like(p))
    return g


def images(n: int = 2, r: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def fixture_batch(fixture_images) -> torch.Tensor:
    from msgen.data import load_image_set

    return load_image_set(fixture_images, 16).images[:4]


@pytest.fixture(scope="module")
def fixture_images():
    from conftest import FIXTURES

    return FIXTURES / "images"


@pytest.fixture(scope="module")
def trained(fixture_batch, tmp_path_factory):
    """A tiny 16px model trained for a few hundred steps on four fixture images (a few seconds)."""
    run = tmp_path_factory.mktemp("hvae-run")
    opts = TrainOptions(steps=300, batch_size=4, lr=3e-3, sample_every=10**6, checkpoint_every=10**6,
                        ema_half_life_images=100, seed=0)
    trainer = Trainer(images=fixture_batch, run_dir=run, config=make_config("hvae", resolution=16, **TINY),
                      options=opts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 16px tensors gain nothing from a second thread, and lose a lot under load
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return trainer


# --- the shared interface ------------------------------------------------------------------------
@pytest.mark.parametrize("res", [16, 32])
def test_shapes_per_level(res):
    g = tiny(res)
    assert g.levels == tuple(2**i for i in range(2, res.bit_length()))
    z = g.sample_latents(3, seed=1)
    assert z.shape == (3, g.latent_dim) and g.latent_dim == 32 + sum(c * l * l for c, l in zip(g.zc, g.levels))
    assert [p.shape[1:] for p in g.split_latents(z)] == [(32,)] + [(c, l, l) for c, l in zip(g.zc, g.levels)]
    with torch.no_grad():
        out = g(z)
        assert sorted(out.images) == list(g.levels)
        for lvl, img in out.images.items():
            assert img.shape == (3, 3, lvl, lvl) and img.abs().max() <= 1
        assert sorted(g(z, upto=8).images) == [4, 8]
        enc = g.encode(images(3, res))
    assert enc.latents.shape == z.shape and enc.global_mu.shape == (3, 32)
    for lvl, zc in zip(g.levels, g.zc):
        assert enc.images[lvl].shape == (3, 3, lvl, lvl)
        assert enc.mu[lvl].shape == (3, zc, lvl, lvl)
        assert enc.kl[lvl].shape == (3, lvl, lvl) and (enc.kl[lvl] >= -1e-5).all()
    assert set(g.granularity_modules()) == set(g.levels)
    assert get_family("hvae").discriminator_cls is None


def test_same_seed_same_image_and_coarse_prefix_is_stable():
    g = tiny()
    with torch.no_grad():
        a, b, c = g(g.sample_latents(1, 7)), g(g.sample_latents(1, 7)), g(g.sample_latents(1, 8))
        coarse = g(g.sample_latents(1, 7), upto=8)
    assert all(torch.equal(a.images[k], b.images[k]) for k in g.levels)
    assert not torch.allclose(a.finest, c.finest)
    assert torch.equal(coarse.images[8], a.images[8])  # a level depends only on the coarser latents


def test_temperature_zero_is_deterministic_and_temperature_scales_variety():
    g = tiny()
    with torch.no_grad():
        zero = [g(g.sample_latents(1, s), truncation=0.0).finest for s in (1, 2, 3)]
        spread = {t: torch.stack([g(g.sample_latents(1, s), truncation=t).finest for s in range(6)]).std(0).mean()
                  for t in (0.3, 1.0)}
    assert torch.equal(zero[0], zero[1]) and torch.equal(zero[1], zero[2])
    assert spread[0.3] < spread[1.0]


def test_mix_takes_fine_levels_from_seed_b():
    g = tiny()
    a, b = g.sample_latents(1, 1), g.sample_latents(1, 2)
    with torch.no_grad():
        mixed, pure_a, pure_b = g(a, mix=(b, 8)), g(a), g(b)
    assert torch.equal(mixed.images[4], pure_a.images[4])
    assert not torch.allclose(mixed.images[8], pure_a.images[8])
    assert not torch.allclose(mixed.images[8], pure_b.images[8])  # fine detail of B on A's layout
    with pytest.raises(ValueError, match="not one of"):
        g(a, mix=(b, 5))


def test_generate_and_features_work_for_the_family():
    g = tiny()
    out = msgen.generate(g, seed=3, features=True, mix_seed=4, mix_level=8, truncation=0.7)
    assert sorted(out.features) == list(g.levels)
    assert out.features[16].shape[-1] == 16
    _out, feats = capture(g, g.sample_latents(1, 0))
    assert sorted(feats) == list(g.levels)
    assert not any(m._forward_hooks for m in g.granularity_modules().values())


def test_bad_arguments_are_refused_clearly():
    g = tiny()
    with pytest.raises(ValueError, match="latents must be N x"):
        g(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="truncation"):
        g(g.sample_latents(1, 0), truncation=3.0)
    with pytest.raises(ValueError, match="16 x 16"):
        g.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="exactly one"):
        g.resample(images(1), seed=0)
    with pytest.raises(ValueError, match="exactly one"):
        g.resample(images(1), keep_below=8, keep_from=8)
    with pytest.raises(ValueError, match="not one of"):
        g.resample(images(1), keep_below=6)
    with pytest.raises(ValueError, match="resolution"):
        make_config("hvae", resolution=48)
    with pytest.raises(ValueError):
        make_config("hvae", z_channels=2, z_channels_min=4)


# --- encoder and decomposition -------------------------------------------------------------------
@pytest.mark.parametrize("z_global", [32, 0])
def test_encoded_latents_reconstruct_through_forward(z_global):
    g, x = tiny(z_global=z_global), images(2)
    with torch.no_grad():
        rec = g.reconstruct(x)
        via_latents = g(g.encode(x).latents)
    for lvl in g.levels:
        torch.testing.assert_close(via_latents.images[lvl], rec.images[lvl], atol=1e-5, rtol=0)


def test_resampling_fine_levels_keeps_the_coarse_reconstruction():
    g, x = tiny(), images(2)
    with torch.no_grad():
        rec = g.reconstruct(x)
        a = g.resample(x, keep_below=16, seed=1, count=3)
        b = g.resample(x, keep_below=16, seed=9, count=3)
    for lvl in (4, 8):  # kept: identical whatever the seed, and equal to the reconstruction
        assert torch.equal(a.images[lvl], b.images[lvl])
        torch.testing.assert_close(a.images[lvl], rec.images[lvl].repeat_interleave(3, 0), atol=1e-5, rtol=0)
    assert a.finest.shape == (6, 3, 16, 16)
    assert not torch.allclose(a.finest, b.finest)  # the fine level was re-drawn
    assert not torch.allclose(a.finest[0], a.finest[1])  # and each variant differs


@pytest.mark.parametrize("z_global", [32, 0])
def test_resampling_layout_keeps_fine_epsilons(z_global):
    g, x = tiny(z_global=z_global), images(1)
    with torch.no_grad():
        rec = g.reconstruct(x)
        everything_kept = g.resample(x, keep_from=4, seed=1)
        v1, v2 = g.resample(x, keep_from=16, seed=1, count=2).finest
        again = g.resample(x, keep_from=16, seed=1, count=2).finest
    torch.testing.assert_close(everything_kept.finest, rec.finest, atol=1e-5, rtol=0)
    assert not torch.allclose(v1, v2)
    assert torch.equal(torch.stack([v1, v2]), again)


def test_encode_then_decode_beats_a_blur(trained, fixture_batch):
    x = fixture_batch
    with torch.no_grad():
        rec = trained.G_ema.reconstruct(x).finest
    blur = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    rec_err, blur_err = F.mse_loss(rec, x).item(), F.mse_loss(blur, x).item()
    assert rec_err < 0.7 * blur_err, (rec_err, blur_err)
    kl = trained.G_ema.encode(x).kl_nats()
    assert kl[4].mean() > 1.0  # the coarse level carries information: no posterior collapse


def test_trained_model_resamples_detail_on_its_own_layout(trained, fixture_batch):
    g, x = trained.G_ema, fixture_batch[:1]
    with torch.no_grad():
        rec = g.reconstruct(x)
        out = g.resample(x, keep_below=16, seed=5, count=4, temperature=1.0)
    torch.testing.assert_close(out.images[8], rec.images[8].expand(4, -1, -1, -1), atol=1e-5, rtol=0)
    assert (out.finest - out.finest[:1]).abs().amax() > 0


# --- training -------------------------------------------------------------------------------------
def test_loss_helpers():
    mu, ls = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4) * 0.1
    assert gaussian_kl(mu, ls, mu, ls).abs().max() < 1e-6
    assert (gaussian_kl(mu + 1, ls, mu, ls) > 0).all()
    assert kl_weight(0, 100) == pytest.approx(0.01) and kl_weight(500, 100) == 1.0 and kl_weight(0, 0) == 1.0
    assert free_bits(torch.tensor([0.1, 0.2]), 2.0).item() == 2.0
    assert free_bits(torch.tensor([3.0, 5.0]), 2.0).item() == 4.0
    x = torch.zeros(2, 3, 4, 4)
    nll, sigma = gaussian_nll(x, x, 0.05)
    assert sigma.item() == pytest.approx(0.05)  # the floor
    assert nll.shape == (2,) and torch.allclose(nll, torch.full((2,), 0.5 * 48 * math.log(2 * math.pi * 0.0025)))


def test_recipe_skips_a_non_finite_update():
    g = build_generator(make_config("hvae", resolution=16, **TINY))
    recipe = make_recipe(g, None, TrainOptions(steps=10))
    assert isinstance(recipe, HVAERecipe) and set(recipe.modules) == {"generator"}
    before = [p.detach().clone() for p in g.parameters()]
    bad = images(2)
    bad[0, 0, 0, 0] = float("nan")
    stats = recipe.step(bad, 0, torch.Generator().manual_seed(0))
    assert stats["skipped"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, g.parameters()))
    stats = recipe.step(images(2), 1, torch.Generator().manual_seed(0))
    assert stats["skipped"] == 0.0 and math.isfinite(stats["loss"])
    assert stats["lr"] == pytest.approx(2 * recipe.lr / recipe.hopt.lr_warmup_steps)  # linear learning-rate warm-up
    assert {"loss", "elbo", "nll", "kl", "kl_4", "kl_8", "kl_16", "grad_norm"} <= set(stats)


def test_five_step_trainer_run_exports_and_resumes(tmp_path):
    x = images(4)
    seen = []
    opts = TrainOptions(steps=5, batch_size=2, sample_every=5, checkpoint_every=3)
    t = Trainer(images=x, run_dir=tmp_path / "run", config=make_config("hvae", resolution=16, **TINY), options=opts,
                callbacks=[seen.append])
    model_dir = t.train()
    assert t.step == 5 and seen[-1].done and seen[-1].preview is not None
    assert all(math.isfinite(p.losses["loss"]) for p in seen if p.losses)
    cfg, meta, tensors = ckpt.read_model_dir(model_dir)
    assert cfg.family == "hvae" and not any(k.startswith("discriminator.") for k in tensors)
    assert any(k.startswith("generator.enc_") for k in tensors)  # the encoder travels with the model
    # Resume: a new Trainer on the same run continues from step 5 towards 7.
    t2 = Trainer(images=x, run_dir=tmp_path / "run", config=cfg, options=TrainOptions(steps=7, batch_size=2))
    t2.train()
    assert t2.step == 7
    # Fine-tuning an exported hvae starts from its weights.
    t3 = Trainer(images=x, run_dir=tmp_path / "ft", base=model_dir, options=TrainOptions(steps=1, batch_size=2))
    assert t3.D is None
    t3.train()


def test_save_load_round_trip_is_bit_exact(tmp_path):
    g, x = tiny(), images(2)
    ckpt.save_model(tmp_path / "m", g, meta={"title": "t"})
    h = ckpt.load_generator(tmp_path / "m")
    z = g.sample_latents(2, 3)
    with torch.no_grad():
        assert all(torch.equal(g(z).images[k], h(z).images[k]) for k in g.levels)
        e1, e2 = g.encode(x), h.encode(x)
        assert torch.equal(e1.latents, e2.latents) and torch.equal(e1.images[16], e2.images[16])
        assert torch.equal(g.resample(x, keep_from=8, seed=1).finest, h.resample(x, keep_from=8, seed=1).finest)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["family"] == "hvae"


def test_cli_trains_the_family_with_a_config(tmp_path, fixture_images, capsys):
    from msgen.__main__ import main

    out = tmp_path / "cli"
    rc = main(["train", "--family", "hvae", "--resolution", "16", "--data", str(fixture_images), "--out", str(out),
               "--steps", "3", "--batch", "2", "--lr", "1e-3", "--config", json.dumps(TINY), "--kl-warmup-steps", "10"])
    assert rc == 0, capsys.readouterr().err
    g = msgen.load(out / "model")
    assert g.config.z_channels == 4 and "kl_warmup_steps" not in json.loads((out / "model" / "config.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["family"]["kl_warmup_steps"] == 10  # a training option, kept with the run
    # A flag of another family is refused by name, and so is a training option given as a config field.
    assert main(["train", "--family", "hvae", "--data", str(fixture_images), "--out", str(tmp_path / "x"),
                 "--augment", "none"]) == 2
    assert "--augment is a training option of msggan models" in capsys.readouterr().err
    assert main(["train", "--family", "hvae", "--data", str(fixture_images), "--out", str(tmp_path / "y"),
                 "--config", '{"beta": 2.0}']) == 2
    assert "training options of hvae now" in capsys.readouterr().err


def test_reconstruction_error_report(trained, fixture_batch):
    from msgen.models.hvae import reconstruction_error

    rep = reconstruction_error(trained.G_ema, fixture_batch, batch_size=3)
    assert set(rep) == {"mse_4", "mse_8", "mse_16", "psnr_db", "kl_nats_4", "kl_nats_8", "kl_nats_16"}
    direct = F.mse_loss(trained.G_ema.reconstruct(fixture_batch).finest, fixture_batch).item()
    assert rep["mse_16"] == pytest.approx(direct, rel=1e-4) and rep["psnr_db"] > 15


def test_a_config_json_from_before_the_newer_fields_still_loads(tmp_path):
    """Models exported before z_global / beta / lr_warmup_steps existed load as they were trained, and
    so do those exported while the training options were config fields (the shipped ones)."""
    g = tiny(z_global=0)
    ckpt.save_model(tmp_path / "old", g)
    cfg_path = tmp_path / "old" / "config.json"
    data = json.loads(cfg_path.read_text())
    data.pop("z_global")
    cfg_path.write_text(json.dumps(data))
    h = ckpt.load_generator(tmp_path / "old")
    assert h.config.z_global == 0
    data.update(beta=2.0, kl_warmup_steps=1000, min_sigma=0.25)  # config fields then, training options now
    cfg_path.write_text(json.dumps(data))
    assert ckpt.load_generator(tmp_path / "old").config == h.config
    z = g.sample_latents(1, 0)
    with torch.no_grad():
        assert torch.equal(g(z).finest, h(z).finest)
