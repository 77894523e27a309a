"""The next-scale autoregressive family (var): interface, tokenizer, encode / re-sample, both
training stages through the Trainer with resume, round trips, hostile configs, and the Generate
and Decompose handlers with a var model, and the shipped model. (~380 lines: the family's whole
contract in one file, as tests/test_hvae.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import msgen
from msgen import checkpoint as ckpt
from msgen.features import capture
from msgen.models import build_generator, config_from_dict, get_family, make_config
from msgen.models.var import VARGenerator, VAROptions, VARRecipe, inverse_cdf, midpoint_noise, probability_order, \
    reconstruction_error
from msgen.train import Trainer, TrainOptions, make_recipe
from msgen import render
from tests.conftest import FIXTURES, make_tiny_model, pixels

TINY = get_family("var").tiny_config  # the family record's tiny test config
TINY_CONFIG = dict(resolution=16, **TINY)
IMAGES = sorted((FIXTURES / "images").iterdir())


def tiny(seed: int = 0, **over) -> VARGenerator:
    """A random tiny model, its predictor's head perturbed so that sampling is not uniform noise."""
    torch.manual_seed(seed)
    g = build_generator(make_config("var", **(TINY_CONFIG | over))).eval()
    with torch.no_grad():
        g.predictor.head.weight.normal_(0.0, 1.0)
    return g


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors gain nothing from a second thread, and lose a lot under load
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixture_batch() -> torch.Tensor:
    from msgen.data import load_image_set

    return load_image_set(FIXTURES / "images", 16).images[:8]


def train(images, run, *, steps: int, stop=None, share: float = 0.5, seed: int = 0, **family) -> Trainer:
    family = {"hflip": 0.0} | family  # unmirrored unless asked: the fixed batch is the whole lesson
    opts = TrainOptions(steps=steps, batch_size=8, lr=3e-3, sample_every=10**6, checkpoint_every=10**6,
                        ema_half_life_images=50, seed=seed,
                        family=VAROptions(tokenizer_share=share, lr_warmup_steps=10, **family))
    trainer = Trainer(images=images, run_dir=run, config=make_config("var", **TINY_CONFIG), options=opts, stop=stop)
    assert trainer.recipe.vopt == opts.family and trainer.recipe.split == round(share * steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the autouse one: one thread here too
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return trainer


@pytest.fixture(scope="module")
def trained(fixture_batch) -> VARGenerator:
    """Tokenizer (220 updates) then predictor (60) on the eight fixture images as one fixed batch:
    full-batch steps make the short run steady. Half a minute under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the autouse one
    try:
        torch.manual_seed(0)
        g = build_generator(make_config("var", **TINY_CONFIG))
        recipe = VARRecipe(g, None, TrainOptions(steps=280, lr=3e-3,
                                                 family=VAROptions(tokenizer_share=220 / 280, lr_warmup_steps=10,
                                                                   hflip=0.0)))
        gen = torch.Generator().manual_seed(0)
        for step in range(280):
            recipe.step(fixture_batch, step, gen)
    finally:
        torch.set_num_threads(threads)
    return g.eval()


# --- the shared interface ------------------------------------------------------------------------
def test_levels_and_latents_come_from_the_config():
    g = tiny()
    assert g.levels == (4, 8, 16) and g.latent_dim == 1 + 4 + 16
    cfg = make_config("var", resolution=32, scales="1,2,3,5,8", **{k: v for k, v in TINY.items() if k != "scales"})
    assert cfg.levels == (4, 8, 12, 20, 32) and build_generator(cfg).latent_dim == 1 + 4 + 9 + 25 + 64
    assert make_config("var").levels == (4, 8, 12, 16, 24, 32)  # the default: scales 1,2,3,4,6,8 on an 8x8 grid
    z = g.sample_latents(3, seed=1)
    assert z.shape == (3, g.latent_dim) and 0 <= z.min() and z.max() < 1
    with torch.no_grad():
        out = g(z)
    assert sorted(out.images) == [4, 8, 16]
    for lvl, img in out.images.items():
        assert img.shape == (3, 3, lvl, lvl) and img.abs().max() <= 1
    sides = dict(zip(g.levels, g.config.sides))
    assert {lvl: tuple(t.shape) for lvl, t in out.extras["tokens"].items()} == {l: (3, s, s) for l, s in sides.items()}
    assert all(r.shape == (3, 8, 4, 4) for r in out.extras["residuals"].values())  # code_dim x grid x grid
    assert all(t.max() < 16 and t.min() >= 0 for t in out.extras["tokens"].values())


def test_a_seed_is_one_picture_and_upto_stops_early():
    g = tiny()
    z = g.sample_latents(2, seed=5)
    assert torch.equal(z, g.sample_latents(2, seed=5)) and not torch.equal(z, g.sample_latents(2, seed=6))
    with torch.no_grad():
        a, b = g(z), g(z)
        assert all(torch.equal(a.images[l], b.images[l]) for l in g.levels)
        c = g(g.sample_latents(2, seed=6))
        assert any(not torch.equal(a.extras["tokens"][l], c.extras["tokens"][l]) for l in g.levels)
        short = g(z, upto=8)
    assert sorted(short.images) == [4, 8]
    assert all(torch.equal(short.extras["tokens"][l], a.extras["tokens"][l]) for l in (4, 8))
    with pytest.raises(ValueError, match="not one of"):
        g(z, upto=12)
    with pytest.raises(ValueError, match="latents must be"):
        g(torch.rand(2, 7))


def test_truncation_is_the_sampling_temperature():
    g = tiny()
    za, zb = g.sample_latents(2, seed=1), g.sample_latents(2, seed=2)
    with torch.no_grad():
        greedy_a, greedy_b = g(za, truncation=0.0), g(zb, truncation=0.0)
        warm = g(za, truncation=1.5)
    # T = 0: every position takes its most likely code, whatever the noise.
    assert all(torch.equal(greedy_a.extras["tokens"][l], greedy_b.extras["tokens"][l]) for l in g.levels)
    assert any(not torch.equal(warm.extras["tokens"][l], greedy_a.extras["tokens"][l]) for l in g.levels)
    with pytest.raises(ValueError, match="truncation"):
        g(za, truncation=2.5)
    # The sampler itself: u near 0 is the mode, and the codes are drawn in proportion to p.
    logits = torch.tensor([[0.0, 2.0, 1.0]]).log_softmax(-1)
    assert inverse_cdf(logits, torch.tensor([0.0]), 1.0).item() == 1
    draws = inverse_cdf(logits.expand(20000, 3), torch.rand(20000, generator=torch.Generator().manual_seed(0)), 1.0)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, logits.exp()[0], atol=0.02, rtol=0)
    u, nll = midpoint_noise(logits.expand(3, 3), torch.tensor([0, 1, 2]))
    assert torch.equal(inverse_cdf(logits.expand(3, 3), u, 1.0), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(nll, -logits[0])


def test_probability_order_is_a_stable_descending_sort_ties_and_zeros_included():
    # The CPU's numpy order of the draws must be torch's stable sort exactly, or a seed would name
    # another picture on another device: ties go by index, exact zeros (underflow) last by index.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 64, generator=gen) * 4
    logits[:, :, :20] = logits[:, :, :1]  # twenty equal probabilities
    logits[:, 1] = 0.0  # a flat row
    logits[:, 2] = -1e4
    logits[:, 2, 7] = 0.0  # every code but one underflows to exactly zero
    probs = torch.softmax(logits, -1)
    assert (probs[:, 2] == 0).sum() > 0
    expected = probs.sort(dim=-1, descending=True, stable=True).indices
    assert torch.equal(probability_order(probs), expected)
    u = torch.rand(3, 40, generator=gen)
    for t in (0.5, 1.0, 2.0):  # the draws themselves, against the sort they were defined by
        p = torch.softmax(logits / t, -1)
        sp, order = p.sort(dim=-1, descending=True, stable=True)
        rank = torch.searchsorted(sp.cumsum(-1), u.unsqueeze(-1).contiguous(), right=True)
        want = order.gather(-1, rank.clamp_max(63)).squeeze(-1)
        assert torch.equal(inverse_cdf(logits, u, t), want)


def test_mix_keeps_the_coarse_token_maps_of_a():
    g = tiny()
    za, zb = g.sample_latents(2, seed=3), g.sample_latents(2, seed=4)
    with torch.no_grad():
        a, b, mixed = g(za), g(zb), g(za, mix=(zb, 8))
        all_b = g(za, mix=(zb, 4))
    assert torch.equal(mixed.extras["tokens"][4], a.extras["tokens"][4])
    torch.testing.assert_close(mixed.images[4], a.images[4])
    assert not torch.equal(mixed.extras["tokens"][16], a.extras["tokens"][16])
    assert all(torch.equal(all_b.extras["tokens"][l], b.extras["tokens"][l]) for l in g.levels)
    with pytest.raises(ValueError, match="mix level"):
        g(za, mix=(zb, 5))


def test_token_at_a_time_scales_draw_each_token_given_the_earlier_ones(fixture_batch):
    """ar_side: a token of the 2x2 scale is drawn after, and given, the ones before it; teacher
    forcing (encode) and sampling agree on that order; a forced scale is caught up the same way."""
    draws = {}
    for ar in (0, 2):
        g = tiny(ar_side=ar)
        with torch.no_grad():
            g.predictor.head.weight.mul_(0.3)  # a spread-out head: the draws depend on the noise
            if ar:
                g.predictor.prev_embed.weight.normal_(0.0, 1.0)
            u = torch.rand(256, g.latent_dim, generator=torch.Generator().manual_seed(1))
            u2 = u.clone()
            u2[:, 1] = torch.rand(256, generator=torch.Generator().manual_seed(2))  # the 2x2 scale's first token
            a, b = g(u).extras["tokens"][8].flatten(1), g(u2).extras["tokens"][8].flatten(1)
            enc = g.encode(fixture_batch)
            again = g(enc.latents)
            kept = g.resample(fixture_batch[:2], keep_below=16, seed=3, count=2)
        draws[ar] = (a != b).float().mean(0)
        assert all(torch.equal(again.extras["tokens"][l], enc.tokens[l]) for l in g.levels), ar
        assert all(torch.equal(kept.extras["tokens"][l], enc.tokens[l][:2].repeat_interleave(2, 0)) for l in (4, 8))
    assert draws[0][0] > 0.3 and draws[2][0] > 0.3  # the token whose noise changed
    assert draws[0][1:].max() == 0  # drawn at once: the others are independent of it
    assert draws[2][1:].min() > 0.2  # token at a time: the later ones follow it
    assert tiny(ar_side=8).predictor.ar == [False, True, True]  # every scale but the 1x1 (one token)
    with pytest.raises(ValueError, match="between 0 and 8"):
        tiny(ar_side=9)  # a stranger's config cannot ask for hundreds of passes a picture


def _ar_model(ar: int) -> VARGenerator:
    g = tiny(ar_side=ar)
    with torch.no_grad():
        g.predictor.head.weight.mul_(0.3)
        if ar:
            g.predictor.prev_embed.weight.normal_(0.0, 1.0)
    return g


@pytest.mark.parametrize("ar", [0, 2, 4])
def test_sampling_positions_see_exactly_what_teacher_forcing_shows_them(fixture_batch, ar):
    """The key/value-cache path (a catch-up chunk over forced scales that ends one position into a
    token-at-a-time scale, then one position or one scale per pass) gives the teacher-forced states."""
    from msgen.models.var import next_inputs, previous_codes

    g = _ar_model(ar)
    pred, quant = g.predictor, g.tokenizer.quant
    with torch.no_grad():
        q = g.tokenizer.tokenize(fixture_batch[:2])
        inputs, prev = next_inputs(quant, q.f_hats), previous_codes(quant, q.tokens, pred.ar, pred.length)
        full = pred.states(2, inputs, prev)
        cache = [[] for _ in pred.blocks]
        first = pred.bounds[2][0] + 1 if pred.ar[2] else pred.bounds[1][1]
        rows = [pred.extend(2, inputs, cache, 0, first, prev)]
        for k in range(1, len(pred.bounds)):
            a, b = max(pred.bounds[k][0], first), pred.bounds[k][1]
            if a >= b:
                continue
            if pred.ar[k]:
                rows += [pred.extend(2, inputs, cache, pos, pos + 1, prev) for pos in range(a, b)]
            else:
                rows.append(pred.extend(2, inputs, cache, a, b, prev))
    assert pred.ar == [False, ar >= 2, ar >= 4]
    torch.testing.assert_close(torch.cat(rows, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ar", [0, 4])
def test_vary_detail_is_sampling_with_the_pictures_own_coarse_noise(fixture_batch, ar):
    """Decompose's keep_below (forced coarse scales, caught up later) draws what forward draws from the
    picture's own noise below the level and the variant's seed from it on."""
    from msgen.validate import seed_at

    g = _ar_model(ar)
    x = fixture_batch[:2]
    states = []  # the 4x4 scale's final states, each time it is drawn
    hook = g.predictor.maps[2].register_forward_hook(lambda mod, args, out: states.append(out))
    try:
        with torch.no_grad():
            enc = g.encode(x)
            states.clear()
            out = g.resample(x, keep_below=16, seed=3, count=2)
            noise = torch.cat([g.sample_latents(1, seed_at(3, j)) for j in range(2)])
            coarse = g._position_levels(torch.device("cpu")) < 16
            for i in range(2):
                for j in range(2):
                    ref = g(torch.where(coarse, enc.latents[i], noise[j])[None])
                    assert torch.equal(out.extras["tokens"][16][2 * i + j], ref.extras["tokens"][16][0]), (ar, i, j)
                    torch.testing.assert_close(states[0][2 * i + j], states[-1][0], atol=1e-5, rtol=0)
    finally:
        hook.remove()


def test_feature_maps_are_captured_per_scale():
    g = tiny()
    with torch.no_grad():
        out, feats = capture(g, g.sample_latents(2, seed=0))
    assert sorted(feats) == list(g.levels)
    assert {l: tuple(f.shape) for l, f in feats.items()} == {4: (2, 32, 1, 1), 8: (2, 32, 2, 2), 16: (2, 32, 4, 4)}
    assert all(not m._forward_hooks for m in g.granularity_modules().values())  # hooks removed
    gen = msgen.generate(g, seed=2, features=True)
    assert sorted(gen.features) == list(g.levels)


@pytest.mark.parametrize("bad, message", [
    ({"scales": "1,2,99"}, "end at the latent grid"),
    ({"scales": "2,1,4"}, "strictly increasing"),
    ({"scales": "1;2;4"}, "comma-separated"),
    ({"scales": ",".join(["1"] * 40)}, "comma-separated"),
    ({"scales": 4}, "must be a string"),
    ({"resolution": 24}, "powers of two"),
    ({"downsample": 3}, "powers of two"),
    ({"downsample": 16}, "powers of two"),
    ({"vocab_size": 10**9}, "between"),
    ({"vocab_size": True}, "whole number"),
    ({"width": 30, "heads": 4}, "divide"),
    ({"phi_ratio": float("nan")}, "finite"),
    ({"depth": 1.5}, "whole number"),
])
def test_hostile_configs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"family": "var", **TINY_CONFIG, **bad})
    with pytest.raises(ValueError, match="between"):
        VAROptions(tokenizer_share=2.0)


def test_hostile_config_json_is_refused_before_anything_is_built(tmp_path):
    out = make_tiny_model(tmp_path / "m", family="var", **TINY)
    data = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(data | {"resolution": 256, "downsample": 4, "scales": "1,2,64"}))
    with pytest.raises(ckpt.CheckpointError, match="scales"):
        msgen.load(out)
    (out / "config.json").write_text(json.dumps(data | {"width": 4096, "depth": 64, "mlp_ratio": 16}))
    with pytest.raises(ckpt.CheckpointError, match="parameters"):
        msgen.load(out)


# --- tokenizer, encode and re-sampling (on a briefly trained model) -------------------------------
def test_reconstruction_error_falls_with_every_scale(trained, fixture_batch):
    g = trained
    err = reconstruction_error(g, fixture_batch)
    full = [err[f"mse_full_{l}"] for l in g.levels]
    assert all(a > b for a, b in zip(full, full[1:])), err
    # ... and the finest scale is a real reconstruction: far better than the images' mean picture.
    baseline = (fixture_batch - fixture_batch.mean(0, keepdim=True)).pow(2).mean().item()
    assert full[-1] < 0.5 * baseline, (full, baseline)


def test_encode_gives_noise_that_reproduces_the_token_maps(trained, fixture_batch):
    g = trained
    with torch.no_grad():
        enc = g.encode(fixture_batch)
        again = g(enc.latents)
        rec = g.reconstruct(fixture_batch)
    assert all(torch.equal(again.extras["tokens"][l], enc.tokens[l]) for l in g.levels)
    torch.testing.assert_close(again.finest, rec.finest, atol=1e-5, rtol=0)
    assert all(enc.kl[l].shape == (8, s, s) and enc.kl[l].min() >= 0 for l, s in zip(g.levels, g.config.sides))
    assert enc.mu[8].shape == (8, 8, 2, 2) and set(enc.kl_nats()) == set(g.levels)
    assert sorted(g.reconstruct(fixture_batch, upto=8).images) == [4, 8]


def test_resampling_the_finer_scales_keeps_the_coarse_token_maps(trained, fixture_batch):
    g = trained
    x = fixture_batch[:2]
    with torch.no_grad():
        enc = g.encode(x)
        detail = g.resample(x, keep_below=16, seed=3, temperature=1.0, count=3)
        layout = g.resample(x, keep_from=8, seed=3, temperature=1.0, count=3)
        again = g.resample(x, keep_below=16, seed=3, temperature=1.0, count=3)
    assert detail.finest.shape == (6, 3, 16, 16)
    for lvl in (4, 8):  # image-major: x[0]'s three variants, then x[1]'s
        assert torch.equal(detail.extras["tokens"][lvl], enc.tokens[lvl].repeat_interleave(3, 0))
        torch.testing.assert_close(detail.images[lvl], enc.images[lvl].repeat_interleave(3, 0), atol=1e-5, rtol=0)
    assert torch.equal(detail.finest, again.finest)  # a seed is one variant
    assert (detail.finest[:3] - detail.finest[:1]).abs().amax() > 0.01  # seeds vary the detail
    assert layout.finest.shape == (6, 3, 16, 16)
    with pytest.raises(ValueError, match="exactly one"):
        g.resample(x, keep_below=8, keep_from=8)


# --- training --------------------------------------------------------------------------------------
def test_recipe_trains_the_tokenizer_then_the_predictor(fixture_batch, tmp_path):
    seen = []
    trainer = Trainer(images=fixture_batch, run_dir=tmp_path / "r", config=make_config("var", **TINY_CONFIG),
                      options=TrainOptions(steps=6, batch_size=4, sample_every=3, checkpoint_every=10**6),
                      callbacks=(lambda p: seen.append(p),))
    assert isinstance(trainer.recipe, VARRecipe) and trainer.recipe.split == 2  # 35% of 6 steps
    trainer.train()
    stages = [p.losses["stage"] for p in seen if not p.done]
    assert stages == [0, 0, 1, 1, 1, 1]
    assert "mse" in seen[0].losses and "ce" in seen[-2].losses
    assert any(p.preview is not None for p in seen)
    assert (trainer.model_dir / "samples.png").is_file()


def test_predictor_stage_leaves_the_tokenizer_alone_and_stays_on_when_extended(fixture_batch, tmp_path):
    g = build_generator(make_config("var", **TINY_CONFIG))
    recipe = make_recipe(g, None, TrainOptions(steps=6, batch_size=4))
    gen = torch.Generator().manual_seed(0)
    for step in range(2):
        assert recipe.step(fixture_batch[:4], step, gen)["stage"] == 0
    frozen = {k: v.clone() for k, v in g.tokenizer.state_dict().items()}
    assert recipe.step(fixture_batch[:4], 2, gen)["stage"] == 1
    assert all(torch.equal(v, g.tokenizer.state_dict()[k]) for k, v in frozen.items())
    recipe.split = 100  # a run resumed towards more steps: the predictor has begun, it stays the stage
    assert recipe.stage(3) == "transformer"


def _one_step(images, stage_share: float, seed: int = 0, **family) -> tuple[dict, VARGenerator]:
    family = {"hflip": 0.0} | family
    torch.manual_seed(seed)
    g = build_generator(make_config("var", **TINY_CONFIG))
    recipe = make_recipe(g, None, TrainOptions(steps=10, batch_size=len(images),
                                               family=VAROptions(tokenizer_share=stage_share, **family)))
    stats = recipe.step(images, 0, torch.Generator().manual_seed(seed))
    return stats, g


def test_mirrored_pictures_train_as_if_the_batch_were_mirrored(fixture_batch):
    # hflip 1: every picture mirrored, so one step equals a step on the mirrored batch, the random
    # stream advanced by the flip's draw (drawn only when the option is on).
    batch = fixture_batch[:4]
    for share in (1.0, 0.0):  # the tokenizer's stage, the predictor's
        flipped, g1 = _one_step(batch, share, hflip=1.0)
        torch.manual_seed(0)
        g2 = build_generator(make_config("var", **TINY_CONFIG))
        recipe = make_recipe(g2, None, TrainOptions(steps=10, batch_size=4, family=VAROptions(tokenizer_share=share, hflip=0.0)))
        gen = torch.Generator().manual_seed(0)
        torch.rand(4, generator=gen)
        by_hand = recipe.step(batch.flip(3), 0, gen)
        plain, _ = _one_step(batch, share)
        key = "mse" if share else "ce"
        assert flipped[key] == pytest.approx(by_hand[key], rel=1e-6) and flipped[key] != pytest.approx(plain[key])
        assert all(torch.equal(a, b) for a, b in zip(g1.state_dict().values(), g2.state_dict().values()))


def test_dropout_acts_in_the_predictors_training_only_and_adds_no_weights(fixture_batch):
    batch = fixture_batch[:4]
    plain, g0 = _one_step(batch, 0.0)
    dropped, g1 = _one_step(batch, 0.0, dropout=0.5)
    assert dropped["ce"] != pytest.approx(plain["ce"])  # the training loss sees the dropout
    assert g1.state_dict().keys() == g0.state_dict().keys()
    assert all(b.dropout == 0.5 for b in g1.predictor.blocks)
    g1.eval()
    with torch.no_grad():  # sampling never drops: the same noise is the same picture, twice
        z = g1.sample_latents(2, seed=3)
        a, b = g1(z), g1(z)
    assert all(torch.equal(a.images[k], b.images[k]) for k in a.images)
    with pytest.raises(ValueError, match="dropout"):
        VAROptions(dropout=1.0)
    with pytest.raises(ValueError, match="hflip"):
        VAROptions(hflip=-0.1)


def test_exported_tokenizer_is_the_one_the_predictor_learned(fixture_batch, tmp_path):
    # The EMA restarts where the predictor's stage begins: the exported (EMA) tokenizer is the
    # frozen raw one, so its codes are the ones the predictor was trained to predict.
    trainer = train(fixture_batch, tmp_path / "r", steps=8)  # tokenizer 4 steps, predictor 4
    assert trainer.recipe.ema_start(7) == 4  # the predictor's stage began at step 4
    raw, ema = trainer.G.tokenizer.state_dict(), trainer.G_ema.tokenizer.state_dict()
    assert all(torch.equal(raw[k], ema[k]) for k in raw)
    pr, pe = trainer.G.predictor.state_dict(), trainer.G_ema.predictor.state_dict()
    assert not all(torch.equal(pr[k], pe[k]) for k in pr)  # the predictor's EMA still averages its last steps
    # Extended to 16 steps (the split becomes 8): the stage still began at 4, and nothing restarts at 8.
    longer = train(fixture_batch, tmp_path / "r", steps=16)
    assert longer.step == 16 and longer.recipe.split == 8 and longer.recipe.ema_start(15) == 4
    pr, pe = longer.G.predictor.state_dict(), longer.G_ema.predictor.state_dict()
    assert not all(torch.equal(pr[k], pe[k]) for k in pr)


def test_a_fine_tune_applies_its_familys_config_changes_and_keeps_every_base_tensor(fixture_batch, tmp_path,
                                                                                     monkeypatch):
    import dataclasses

    from msgen import models

    fam = get_family("var")
    base = make_tiny_model(tmp_path / "base", family="var", **TINY)
    base_state = msgen.load(base).state_dict()
    opts = TrainOptions(steps=2, batch_size=8, sample_every=10**6, checkpoint_every=10**6,
                        family=VAROptions(tokenizer_share=0.0))
    monkeypatch.setitem(models.FAMILIES, "var", dataclasses.replace(fam, finetune=models.FineTune()))
    Trainer(images=fixture_batch, run_dir=tmp_path / "old", base=base, options=opts).train()  # begun without the change
    monkeypatch.setitem(models.FAMILIES, "var", dataclasses.replace(fam, finetune=models.FineTune(config=(("ar_side", 2),))))
    longer = dataclasses.replace(opts, steps=4)
    old = Trainer(images=fixture_batch, run_dir=tmp_path / "old", base=base, options=longer)
    assert old.G.config.ar_side == 0  # ... resumes as it began
    old.train()
    assert old.step == 4
    trainer = Trainer(images=fixture_batch, run_dir=tmp_path / "r", base=base, options=opts)
    g = trainer.G
    assert g.config.ar_side == 2 and g.predictor.ar == [False, True, False]
    assert all(torch.equal(g.state_dict()[k], v) for k, v in base_state.items())  # the base, whole
    assert g.predictor.prev_embed.weight.abs().max() == 0  # the new part starts at zero
    trainer.train()
    assert trainer.G.predictor.prev_embed.weight.abs().max() > 0  # ... and learns
    assert msgen.load(trainer.model_dir).config.ar_side == 2
    again = Trainer(images=fixture_batch, run_dir=tmp_path / "r", base=base, options=longer)  # resumes with it
    assert again.G.config.ar_side == 2
    again.train()
    assert again.step == 4
    # A base that set the field itself keeps its own value.
    own = make_tiny_model(tmp_path / "own", family="var", **(TINY | {"ar_side": 4}))
    assert Trainer(images=fixture_batch, run_dir=tmp_path / "r2", base=own, options=opts).G.config.ar_side == 4


def test_level_pictures_of_a_model_loaded_under_inference_mode(trained, tmp_path):
    from msgen.checkpoint import load_generator, save_model

    folder = save_model(tmp_path / "m", trained, meta={"steps": 1})
    with torch.inference_mode():
        g = load_generator(folder)  # inference tensors: no version counter
        out = msgen.generate(g, seed=3, features=True)
    assert out.pictures and all("token map" in p for p in out.pictures.values())


@pytest.mark.parametrize("family", [{}, {"hflip": 0.5, "dropout": 0.3}], ids=["plain", "mirrored-dropout"])
def test_a_resumed_run_matches_an_unbroken_one(fixture_batch, tmp_path, family):
    # Mirroring and dropout draw from the checkpointed step generator: a resumed run draws the same.
    whole = train(fixture_batch, tmp_path / "whole", steps=8, **family)
    calls = {"n": 0}

    def stop_after_five():
        calls["n"] += 1
        return calls["n"] > 5  # checked before each step: 5 done, 4 of the tokenizer and 1 of the predictor

    first = train(fixture_batch, tmp_path / "broken", steps=8, stop=stop_after_five, **family)
    assert first.step == 5
    torch.rand(100)  # the global generator moved on meanwhile (another request on the page): no draw reads it
    resumed = train(fixture_batch, tmp_path / "broken", steps=8, **family)
    assert resumed.step == 8
    a, b = whole.G.state_dict(), resumed.G.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = whole.G_ema.state_dict(), resumed.G_ema.state_dict()
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def test_a_run_stored_before_mirroring_existed_resumes_without_it():
    from msgen.options import options_from_dict, options_to_dict

    stored = options_to_dict(TrainOptions(family=VAROptions(hflip=0.0)))
    del stored["family"]["hflip"], stored["family"]["dropout"]  # what a run began before these options wrote
    assert options_from_dict(stored, "var").family == VAROptions(hflip=0.0, dropout=0.0)
    now = options_to_dict(TrainOptions(family=VAROptions()))
    assert options_from_dict(now, "var").family.hflip == 0.5  # a run of today keeps its own
    queued = options_to_dict(TrainOptions())  # family None (a queued run that never trained): today's defaults
    assert options_from_dict(queued, "var").family == VAROptions()


def test_save_load_round_trip(trained, tmp_path):
    out = ckpt.save_model(tmp_path / "m", trained, meta={"title": "t"})
    g = msgen.load(out)
    assert isinstance(g, VARGenerator) and g.config == trained.config
    z = g.sample_latents(3, seed=9)
    with torch.no_grad():
        a, b = g(z), trained(z)
    assert all(torch.equal(a.images[l], b.images[l]) for l in g.levels)
    assert "var" in (out / "README.md").read_text()


def test_level_pictures_are_each_scales_token_map_and_residual(trained):
    out = msgen.generate(trained, seed=4, n=2, features=True)
    pics = out.pictures
    assert sorted(pics) == list(trained.levels) and all(list(p) == ["token map", "residual"] for p in pics.values())
    raw = trained(trained.sample_latents(1, 4))
    grid = trained.config.grid
    for side, lvl in zip(trained.config.sides, trained.levels):
        tokens, colours = raw.extras["tokens"][lvl][0], pics[lvl]["token map"][0]
        assert colours.shape == (3, side, side) and pics[lvl]["residual"].shape == (2, 3, grid, grid)
        assert colours.min() >= -1 and colours.max() <= 1
        flat, rgb = tokens.flatten(), colours.flatten(1).T
        for t in flat.unique():  # one palette: a code has one colour, wherever and at whatever scale it is drawn
            assert torch.allclose(rgb[flat == t], rgb[flat == t][0].expand_as(rgb[flat == t]))
        assert torch.allclose(pics[lvl]["residual"].abs().amax(dim=(1, 2, 3)), torch.ones(2))  # its own range
    first = {lvl: p["token map"][0] for lvl, p in pics.items()}
    again = msgen.generate(trained, seed=4, features=True).pictures
    assert all(torch.equal(first[lvl], again[lvl]["token map"][0]) for lvl in first)
    assert msgen.generate(trained, seed=4).pictures is None  # only with the feature maps


# --- the tabs' handlers ----------------------------------------------------------------------------
@pytest.fixture
def ctx(tmp_path, trained):
    from msgen.ui import common

    weights = tmp_path / "weights"
    ckpt.save_model(weights / "tinyvar16", trained,
                    meta={"title": "tinyvar16", "dataset": "fixtures (tests)", "dataset_short": "test"})
    return common.AppContext(runs_dir=tmp_path / "runs", weights_dir=weights)


def test_generate_tab_handlers_take_a_var_model(ctx, tmp_path):
    from msgen.ui import generate as G
    from msgen.ui import generate_handlers as GH

    h = GH.GenerateHandlers(ctx, files=tmp_path / "files")
    image, cards, stats, info = h.generate("tinyvar16", 16, 3, 0.8)
    assert image.startswith("data:image/") and [c["level"] for c in cards] == [4, 8, 16]
    assert all("tiles: picture, PCA, token map, residual, top 5 channels" in c["caption"] for c in cards)
    out = msgen.generate(msgen.load(ctx.weights_dir / "tinyvar16"), seed=3, truncation=0.8, features=True)
    card = pixels(cards[-1]["image"])  # 3 x 3 tiles of 16 px, 1 px gaps: the token map is the third
    token_map = render.upscale(render.to_uint8(out.pictures[16]["token map"][0]), 16 // 4)
    assert card.shape == (50, 50, 3) and np.array_equal(card[:16, 34:50], token_map)
    assert [row[0] for row in stats["data"]] == [4, 8, 16]
    assert h.generate("tinyvar16", 16, 3, 0.8)[0] == image  # a seed is one picture
    mixed = h.generate("tinyvar16", 16, 3, 1.0, 7, 8)
    assert mixed[0].startswith("data:image/") and mixed[0] != image
    assert G.truncation_of("var")[1] == get_family("var").ui.truncation_label
    assert h.grid("tinyvar16", 16, 1, 1.0, 4)


def test_decompose_handlers_take_a_var_model(ctx):
    from msgen.ui import decompose

    assert [name for _label, name in decompose.model_choices(ctx, None)] == ["tinyvar16"]
    recon, latents, rows = decompose.decompose(ctx, "tinyvar16", str(IMAGES[0]))
    assert [c for _img, c in recon] == ["input (16x16)", "4x4", "8x8", "16x16"]
    assert [c.split(":")[0] for _img, c in latents] == ["4x4", "8x8", "16x16"] and all("nats" in c for _i, c in latents)
    assert [r[0] for r in rows] == ["4x4", "8x8", "16x16"] and all(r[2] >= 0 for r in rows)
    for mode in decompose.MODES:
        out = decompose.resample(ctx, "tinyvar16", str(IMAGES[1]), "crop", mode, 8, 5, 0.8, 3)
        assert [c for _img, c in out][1:] == ["seed 5", "seed 6", "seed 7"] and out[0][1].startswith("reconstruction")
        same = decompose.resample(ctx, "tinyvar16", str(IMAGES[1]), "crop", mode, 8, 5, 0.8, 3)
        assert [a.tobytes() for a, _ in out] == [b.tobytes() for b, _ in same]


# --- the shipped model -----------------------------------------------------------------------------
def test_shipped_var_tokenizes_its_own_data_scale_by_scale(tmp_path):
    from pathlib import Path

    from msgen.data import load_image_set
    from msgen.datasets import build_dataset
    from tests.conftest import need_dataset

    folder = Path(__file__).resolve().parent.parent / "weights" / "fashion32-var"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("fashion32-var is not shipped")
    need_dataset("fashion")
    g = msgen.load(folder)
    build_dataset("fashion", tmp_path, limit=24, seed=7)
    x = load_image_set(tmp_path, 32).images
    err = reconstruction_error(g, x)
    full = [err[f"mse_full_{l}"] for l in g.levels]
    assert all(a > b for a, b in zip(full, full[1:])), err  # every scale removes error
    assert err["psnr_db"] > 18, err
    with torch.no_grad():
        enc = g.encode(x[:2])
        varied = g.resample(x[:2], keep_below=16, seed=3, count=2)
    assert all(torch.equal(varied.extras["tokens"][l], enc.tokens[l].repeat_interleave(2, 0)) for l in (4, 8, 12))
    assert all(enc.kl_nats()[l].mean() > 0.5 for l in g.levels[:2])  # the coarse scales carry the layout
