"""The contract every registered model family keeps, one suite parametrised over the registry
(in the manner of diffusers' ``PipelineTesterMixin``): a new family file under ``msgen/models/``
is tested by these checks with nothing added here.

Each check is a plain function of (family name, tmp_path), collected in ``CONTRACT``, so that a
family made up inside a test (``test_family_throwaway.py``) runs the same checks.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from msgen import checkpoint as ckpt
from msgen.models import build_discriminator, build_generator, families, get_family, make_config

RESOLUTION = 16


def tiny(name: str, seed: int = 0):
    """The family's tiny test config, built, in eval mode; randomised so that latents matter."""
    fam = get_family(name)
    config = make_config(name, resolution=RESOLUTION, **fam.tiny_config)
    torch.manual_seed(seed)
    g = build_generator(config).eval()
    with torch.no_grad():  # several families start their last layers at zero (an identity residual)
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return g


def check_tiny_config_builds(name, tmp_path):
    fam = get_family(name)
    g = tiny(name)
    assert isinstance(g, fam.generator_cls) and isinstance(g.config, fam.config_cls)
    assert g.config.family == name and tuple(g.levels) == tuple(g.config.levels)
    assert g.levels[-1] == RESOLUTION and list(g.levels) == sorted(g.levels)
    d = build_discriminator(g.config)
    assert (d is None) == (fam.discriminator_cls is None)
    assert dataclasses.is_dataclass(g.config) and g.config.__dataclass_params__.frozen


def check_latents_are_seeded(name, tmp_path):
    g = tiny(name)
    a, b = g.sample_latents(3, seed=7), g.sample_latents(3, seed=7)
    assert torch.equal(a, b) and a.device.type == "cpu" and a.shape[0] == 3
    assert not torch.equal(a, g.sample_latents(3, seed=8))
    with pytest.raises(ValueError, match="seed"):
        g.sample_latents(1, -1)


def check_forward_gives_every_level(name, tmp_path):
    g = tiny(name)
    with torch.no_grad():
        out = g(g.sample_latents(2, 0))
    assert list(out.images) == list(g.levels)
    for lvl, img in out.images.items():
        assert img.shape == (2, 3, lvl, lvl) and img.min() >= -1 and img.max() <= 1
    assert out.finest is out.images[g.levels[-1]]


def check_upto_stops_early(name, tmp_path):
    g = tiny(name)
    z = g.sample_latents(1, 0)
    with torch.no_grad():
        assert list(g(z, upto=g.levels[1]).images) == list(g.levels[:2])
    with pytest.raises(ValueError, match="not one of this model's levels"):
        g(z, upto=g.levels[-1] + 1)


def check_truncation_range(name, tmp_path):
    g = tiny(name)
    hints = get_family(name).ui
    lo, hi = hints.truncation_range
    assert lo <= hints.default_truncation <= hi and hints.truncation_label
    z = g.sample_latents(2, 0)
    with torch.no_grad():
        for t in (lo, hi, hints.default_truncation):
            assert g(z, truncation=t).finest.shape == (2, 3, RESOLUTION, RESOLUTION)
    for t in (lo - 0.1, hi + 0.1):
        with pytest.raises(ValueError, match="truncation must be between"):
            g(z, truncation=t)


def check_mix_keeps_the_coarse_levels(name, tmp_path):
    g = tiny(name)
    za, zb = g.sample_latents(2, 1), g.sample_latents(2, 2)
    switch = g.levels[1]
    with torch.no_grad():
        a, b, mixed = g(za).images, g(zb).images, g(za, mix=(zb, switch)).images
    assert list(mixed) == list(g.levels)
    for lvl in g.levels:
        if lvl < switch:  # decided by A's latent alone
            assert torch.allclose(mixed[lvl], a[lvl], atol=1e-6), lvl
    assert not torch.allclose(mixed[g.levels[-1]], a[g.levels[-1]])  # the fine levels are B's
    with torch.no_grad():  # switching at the coarsest level is B's picture
        assert torch.allclose(g(za, mix=(zb, g.levels[0])).finest, b[g.levels[-1]], atol=1e-5)
    with pytest.raises(ValueError, match="mix level"):
        g(za, mix=(zb, 3))


def check_granularity_modules(name, tmp_path):
    g = tiny(name)
    mods = g.granularity_modules()
    assert list(mods) == list(g.levels)
    owned = {id(m) for m in g.modules()}
    assert all(isinstance(m, torch.nn.Module) and id(m) in owned for m in mods.values())


def check_save_load_round_trip(name, tmp_path):
    g = tiny(name, seed=3)
    d = build_discriminator(g.config)
    path = ckpt.save_model(tmp_path / "m", g, discriminator=d, meta={"title": "contract"})
    h = ckpt.load_generator(path)
    assert h.config == g.config
    assert all(torch.equal(v, h.state_dict()[k]) for k, v in g.state_dict().items())
    z = g.sample_latents(2, 4)
    with torch.no_grad():
        assert all(torch.equal(g(z).images[lvl], h(z).images[lvl]) for lvl in g.levels)
    if d is not None:
        saved = ckpt.split_tensors(ckpt.read_model_dir(path)[2], "discriminator.")
        assert all(torch.equal(v, saved[k]) for k, v in d.state_dict().items())


def check_options_dataclass(name, tmp_path):
    from msgen.train import TrainOptions, options_from_dict, options_to_dict

    fam = get_family(name)
    opts = fam.options_cls()
    assert dataclasses.is_dataclass(opts) and opts.__dataclass_params__.frozen
    assert all(f.metadata.get("help") for f in dataclasses.fields(opts))  # the CLI's --help text
    full = TrainOptions(steps=3, family=opts)
    assert options_from_dict(json.loads(json.dumps(options_to_dict(full))), name) == full


def check_two_steps_train_and_resume(name, tmp_path):
    from msgen.train import Trainer, TrainOptions, resume_options

    fam = get_family(name)
    config = make_config(name, resolution=RESOLUTION, **fam.tiny_config)
    images = torch.rand(4, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0)) * 2 - 1
    run = tmp_path / "run"
    opts = TrainOptions(steps=2, batch_size=2, sample_every=1, checkpoint_every=1, device="cpu")
    t = Trainer(images=images, run_dir=run, config=config, options=opts)
    assert isinstance(t.recipe, fam.recipe_cls) and t.options.family == fam.options_cls()
    t.train()
    assert t.step == 2 and ckpt.load_generator(t.model_dir).config == config
    t2 = Trainer(images=images, run_dir=run, config=config, options=resume_options(run, steps=3))
    t2.train()
    assert t2.step == 3 and json.loads((run / "run.json").read_text())["resumed"] is True


def check_encode_round_trip(name, tmp_path):
    fam = get_family(name)
    g = tiny(name)
    if not fam.encodes:
        assert not hasattr(g, "encode")
        return
    x = torch.rand(2, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        enc = g.encode(x)
        again = g(enc.latents)
    assert enc.latents.shape == g.sample_latents(2, 0).shape
    for lvl in g.levels:  # forward(encode(x).latents) is the reconstruction
        assert torch.allclose(again.images[lvl], enc.images[lvl], atol=1e-5), lvl


def check_serving_names_its_own_parts(name, tmp_path):
    # Family.serving names submodules the pages convert (channels_last, low precision): each one must
    # exist, and the model must still run with all of them converted (bfloat16 forced: emulated here).
    from msgen.models import serve_on_cpu, serving_part

    fam, g = get_family(name), tiny(name).eval()
    for part in fam.serving.channels_last + fam.serving.low_precision:
        assert isinstance(serving_part(g, part), torch.nn.Module), part
    with pytest.raises(ValueError, match="no submodule 'no_such_part'"):
        serving_part(g, "no_such_part")
    served = serve_on_cpu(g, fam.serving, bfloat16=True)
    with torch.no_grad():
        out = served(served.sample_latents(1, 0).to(next(served.parameters()).dtype))
    assert set(out.images) == set(g.levels) and all(torch.isfinite(v.float()).all() for v in out.images.values())


CONTRACT = [check_tiny_config_builds, check_latents_are_seeded, check_forward_gives_every_level, check_upto_stops_early,
            check_truncation_range, check_mix_keeps_the_coarse_levels, check_granularity_modules,
            check_save_load_round_trip, check_options_dataclass, check_two_steps_train_and_resume,
            check_encode_round_trip, check_serving_names_its_own_parts]


def run_contract(name: str, tmp_path) -> None:
    """Every check, for one family (a made-up family's test calls this)."""
    for i, check in enumerate(CONTRACT):
        folder = tmp_path / f"{i}-{check.__name__}"
        folder.mkdir()
        check(name, folder)


@pytest.mark.parametrize("family", list(families()))
@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__[len("check_"):])
def test_family_contract(family, check, tmp_path):
    check(family, tmp_path)


def test_the_registry_is_discovered_and_names_the_capable_families():
    from msgen.models import families_that

    assert {"msggan", "hvae"} <= set(families())
    assert "hvae" in families_that("encodes") and "msggan" not in families_that("encodes")
    with pytest.raises(ValueError, match="known families: .*hvae.*msggan"):
        get_family("nope")
