"""The multi-scale generator interface on tiny configs: shapes, ranges, seeds, truncation, mixing."""

from __future__ import annotations

import pytest
import torch

import msgen
from msgen.models import FAMILIES, build_discriminator, build_generator, get_family, make_config

TINY = dict(channel_base=256, channel_max=32, d_channel_base=256, d_channel_max=32, latent_dim=32, w_dim=32)


def tiny(resolution=32, **kw):
    torch.manual_seed(0)
    g = build_generator(make_config("msggan", resolution=resolution, **(TINY | kw))).eval()
    # Random styles so that latents matter (style layers start at the identity).
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "style"):
                m.style.weight.normal_(0, 0.3)
        g.w_avg.normal_()
    return g


def test_registry_names_known_families():
    with pytest.raises(ValueError, match="known families: .*msggan"):
        get_family("nope")
    assert "msggan" in FAMILIES


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_levels_shapes_and_range(resolution):
    g = tiny(resolution)
    assert g.levels == tuple(2**i for i in range(2, resolution.bit_length()))
    out = g(g.sample_latents(3, seed=7))
    assert list(out.images) == list(g.levels)
    for lvl, img in out.images.items():
        assert img.shape == (3, 3, lvl, lvl)
        assert img.min() >= -1 and img.max() <= 1
        assert img.std() > 0  # not blank


def test_upto_stops_early():
    g = tiny(32)
    out = g(g.sample_latents(1, 0), upto=8)
    assert list(out.images) == [4, 8]
    with pytest.raises(ValueError, match="not one of this model's levels"):
        g(g.sample_latents(1, 0), upto=12)


def test_same_seed_same_tensor_and_different_seeds_differ():
    g = tiny(32)
    a = g(g.sample_latents(2, seed=123)).finest
    b = g(g.sample_latents(2, seed=123)).finest
    c = g(g.sample_latents(2, seed=124)).finest
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(g.sample_latents(1, 5), g.sample_latents(1, 5))


def test_seed_range_checked():
    g = tiny(16)
    g.sample_latents(1, 2**32 - 1)
    with pytest.raises(ValueError, match="seed"):
        g.sample_latents(1, 2**32)
    with pytest.raises(ValueError, match="seed"):
        g.sample_latents(1, -1)


def test_truncation_zero_gives_the_mean_image():
    g = tiny(32)
    a = g(g.sample_latents(1, 1), truncation=0.0).finest
    b = g(g.sample_latents(1, 2), truncation=0.0).finest
    assert torch.allclose(a, b, atol=1e-6)
    full = g(g.sample_latents(1, 1)).finest
    half = g(g.sample_latents(1, 1), truncation=0.5).finest
    assert (half - a).abs().mean() < (full - a).abs().mean()  # halfway towards the mean image
    with pytest.raises(ValueError, match="truncation"):
        g(g.sample_latents(1, 1), truncation=3.0)


def test_mix_keeps_coarse_levels_of_a_and_fine_of_b():
    g = tiny(32)
    za, zb = g.sample_latents(1, 10), g.sample_latents(1, 20)
    a, b = g(za).images, g(zb).images
    mixed = g(za, mix=(zb, 16)).images
    assert torch.equal(mixed[4], a[4]) and torch.equal(mixed[8], a[8])
    assert not torch.allclose(mixed[16], a[16])
    assert not torch.allclose(mixed[32], b[32])  # fine styles of B on the layout of A
    with pytest.raises(ValueError, match="mix level"):
        g(za, mix=(zb, 5))


def test_discriminator_reads_every_level():
    cfg = make_config("msggan", resolution=32, **TINY)
    g, d = build_generator(cfg), build_discriminator(cfg)
    out = g(g.sample_latents(4, 0))
    score = d(out.images)
    assert score.shape == (4,)
    score.sum().backward()
    for lvl_module in g.to_rgb:  # gradients reach every level's RGB head directly
        assert lvl_module.weight.grad is not None and lvl_module.weight.grad.abs().sum() > 0


def test_generate_api_features_one_per_level():
    g = tiny(32)
    res = msgen.generate(g, seed=3, features=True)
    assert set(res.features) == set(g.levels) == set(res.images)
    for lvl, f in res.features.items():
        assert f.shape[-1] == lvl and f.shape[0] == 1
    # Hooks are always removed.
    assert all(not m._forward_hooks for m in g.granularity_modules().values())
    res2 = msgen.generate(g, seed=3, scale=8)
    assert res2.scale == 8 and set(res2.images) == {4, 8}


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        make_config("msggan", resolution=48)


def test_a_fresh_gan_gives_every_seed_its_own_picture():
    # The mapping network keeps the normalised z's unit scale (He init for the leaky ReLU), so at
    # step 0 the styles differ between seeds and the generator cannot learn to ignore them. With
    # torch's default Linear init w varied 0.05 per dimension and pictures by RMS 0.16-0.20: a run
    # from scratch then collapsed to one picture (73% near-duplicates after 500 steps).
    torch.manual_seed(0)
    g = build_generator(make_config("msggan", resolution=32)).eval()
    z = torch.cat([g.sample_latents(1, s) for s in range(16)])
    with torch.no_grad():
        w = g.mapping(z)
        x = g(z).images[32].flatten(1)
    assert w.std(0).mean() > 0.3
    d = torch.cdist(x, x) / x.shape[1] ** 0.5
    assert d[~torch.eye(16, dtype=torch.bool)].min() > 0.4
