"""Generate tab handlers and pictures without a server: outputs per level (pictures inline as
data URIs, no file written), one-response page updates with the channel view and picker,
determinism, the result cache, mixing and truncation, grid and walk, every bad request refused
with a message, the model list, the one-thread CPU runner and the optional ``spaces`` wrapper."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
import types

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import msgen
from msgen.zoo import serving_form
from msgen import render
from msgen.checkpoint import save_model
from msgen.models.layers import StyleConv
from msgen.ui import common
from msgen.ui import generate as G
from msgen.ui import generate_handlers as GH
from tests.conftest import make_tiny_model, pixels


def make_varied_model(out, *, resolution: int, seed: int):
    """A tiny msggan whose styles are random, not the identity they start as: a freshly built
    model paints one picture for every seed, a trained one does not, and neither must this."""
    make_tiny_model(out, resolution=resolution, seed=seed)
    g = msgen.load(out)
    torch.manual_seed(seed)
    with torch.no_grad():
        for mod in g.modules():
            if isinstance(mod, StyleConv):
                mod.style.weight.normal_(0.0, 0.5)
    return save_model(out, g, meta={"title": out.name, "dataset": "random init (tests)", "dataset_short": "test"})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate-weights")
    make_varied_model(root / "tiny16", resolution=16, seed=1)
    make_varied_model(root / "tiny32", resolution=32, seed=2)
    make_tiny_model(root / "tinyvae16", family="hvae", resolution=16, seed=3)
    return root


@pytest.fixture
def ctx(tmp_path, weights):
    return common.AppContext(runs_dir=tmp_path / "runs", weights_dir=weights)


@pytest.fixture
def h(ctx, tmp_path):
    return GH.GenerateHandlers(ctx, files=tmp_path / "files")



def size(picture) -> tuple[int, int]:
    h, w, _ = pixels(picture).shape
    return w, h


def expected(weights, name: str, seed: int, scale: int, **kw) -> np.ndarray:
    """What the Python API gives for this request, on the model in the form the page runs it
    (``msgen.zoo.serving_form``): the reference for every UI picture."""
    out = msgen.generate(serving_form(msgen.load(weights / name)), seed=seed, scale=scale, **kw)
    return render.to_uint8(out.images[scale][0])


def test_generate_outputs_every_level(h):
    image, cards, stats, info = h.generate("tiny32", 32, 3)
    assert image.startswith("data:image/webp;base64,")
    assert size(image) == (32, 32) and pixels(image).std() > 0
    assert [c["caption"] for c in cards] == ["4x4: 32 channels", "8x8: 32 channels", "16x16: 16 channels",
                                             "32x32: 8 channels"]
    assert [(c["level"], c["channels"]) for c in cards] == [(4, 32), (8, 32), (16, 16), (32, 8)]
    for card, lvl in zip(cards, (4, 8, 16, 32)):
        tile = max(lvl, render.MIN_TILE)
        assert size(card["image"]) == (3 * tile + 2, 3 * tile + 2)  # 3 x 3 tiles with one-pixel gaps
        assert pixels(card["image"]).std() > 0
    assert stats["headers"] == GH.STATS_HEADERS
    rows = stats["data"]
    assert [row[0] for row in rows] == [4, 8, 16, 32]
    assert [row[1] for row in rows] == [32, 32, 16, 8] and rows[0][2] == "4x4"
    assert all(0 <= row[5] <= 1 for row in rows)
    assert "32x32 from seed 3" in info
    assert not any(h.files.iterdir())  # nothing written: the pictures travel inside the response


def test_card_tiles_are_the_picture_pca_and_top_channels(h, weights):
    res, _ = h.rendered(h.request("tiny16", 16, 5, 1.0))
    card = pixels(res.levels[2]["image"])  # the 16x16 level: tiles at their own size
    assert np.array_equal(card[:16, :16], expected(weights, "tiny16", 5, 16))
    assert np.array_equal(card[:16, 17:33], render.pca_rgb(res.features[16]))
    assert (card[16, :] == render.GAP_VALUE).all()
    best = res.top_channels[16][0]
    assert np.array_equal(card[:16, 34:50], render.colorize_channels(res.features[16], [best])[0])
    coarse = pixels(res.levels[0]["image"])  # 4x4 tiles enlarged 4 times, nearest neighbour
    assert np.array_equal(coarse[:16:4, :16:4], expected(weights, "tiny16", 5, 4))
    assert np.array_equal(coarse[:16, :16], expected(weights, "tiny16", 5, 4).repeat(4, 0).repeat(4, 1))


def test_same_seed_same_pixels_as_the_python_api(h, weights):
    a = pixels(h.generate("tiny16", 16, 42)[0])
    h._results.clear()
    assert np.array_equal(a, pixels(h.generate("tiny16", 16, 42)[0]))
    assert np.array_equal(a, expected(weights, "tiny16", 42, 16))
    assert not np.array_equal(a, pixels(h.generate("tiny16", 16, 43)[0]))


def test_largest_seed_and_scale_below_finest(h):
    image, cards, stats, _ = h.generate("tiny32", 8, GH.SEED_MAX)
    assert size(image) == (8, 8) and len(cards) == 2 and len(stats["data"]) == 2


def test_result_cache_makes_returning_instant(h, monkeypatch):
    first = h.generate("tiny32", 32, 11, 0.7)
    runs = []
    real = h._generate_on_device
    monkeypatch.setattr(h, "_generate_on_device", lambda *a, **k: runs.append(a) or real(*a, **k))
    again = h.generate("tiny32", 32, 11, 0.7)
    assert again[0] == first[0] and "result cache" in again[3]
    for _ in range(5):
        h.generate("tiny32", 32, 11, 0.7)
    assert runs == []  # a return to a seen position never runs the generator (or renders) again
    h.generate("tiny32", 32, 12, 0.7)
    assert len(runs) == 1


def test_page_update_is_one_response_with_the_channel_view(h):
    image, cards, stats, info, channel = h.page("tiny32", 32, 6, 1.0, 1, 0, 16, 3, True)
    again = h.generate("tiny32", 32, 6)
    assert (image, cards, stats) == again[:3] and info.rsplit(":", 1)[0] == again[3].rsplit(":", 1)[0]
    assert np.array_equal(pixels(channel), pixels(h.channel("tiny32", 32, 6, 1.0, 1, 0, 16, 3, True)))
    # A stale picker (level above the scale, channel out of range) falls back instead of failing.
    *_, stale = h.page("tiny32", 8, 6, 1.0, 1, 0, 32, 99, True)
    res, _ = h.rendered(h.request("tiny32", 8, 6, 1.0))
    assert np.array_equal(pixels(stale), pixels(h.channel("tiny32", 8, 6, 1.0, 1, 0, 8, res.top_channels[8][0])))


def test_page_and_picker_follows_the_scale_and_resets_for_a_new_model(h):
    *page, level, slider = h.page_and_picker("tiny32", 16, 2, 1.0, 1, 0, 32, 5, True)
    res, _ = h.rendered(h.request("tiny32", 16, 2, 1.0))
    assert [v for _, v in level["choices"]] == [4, 8, 16] and level["value"] == 16
    assert slider["value"] == res.top_channels[16][0] and slider["maximum"] == 15
    *_, level, slider = h.page_and_picker("tiny32", 32, 2, 1.0, 1, 0, 8, 5, True)
    assert level["value"] == 8 and slider["value"] == 5  # still valid: kept
    out = G.on_model_page(h, "tinyvae16", 32, 2, 1.0, 1, 32, 32, 5, True)
    scale, mix, truncation, image, cards, stats, info, channel, level, slider = out
    assert scale["value"] == 16 and mix["value"] == 0 and truncation["value"] == 0.7
    assert size(image) == (16, 16) and len(cards) == 3 and "tinyvae16" in info and "truncation 0.7" in info
    res, _ = h.rendered(h.request("tinyvae16", 16, 2, 0.7))
    assert level["value"] == 16 and slider["value"] == res.top_channels[16][0]
    assert size(channel) == (16, 16)


def test_result_cache_is_bounded_in_bytes_and_grid_files_are_swept(h, monkeypatch):
    h.generate("tiny32", 32, 0)
    one = next(iter(h._results.values())).nbytes
    h.max_bytes = int(2.5 * one)
    for seed in range(1, 5):
        h.generate("tiny32", 32, seed)
    assert len(h._results) == 2 and h._results_bytes == sum(r.nbytes for r in h._results.values())
    monkeypatch.setattr(GH, "SWEEP_EVERY", 4)
    monkeypatch.setattr(GH, "FILES_KEEP", 5)
    h.grid("tiny16", 16, 0, 1.0, 3)
    assert len(list(h.files.glob("*.webp"))) == 3
    h.grid("tiny16", 16, 10, 1.0, 3)  # 6 written: a sweep keeps the 5 newest
    assert len(list(h.files.glob("*.webp"))) == 5


def test_result_cache_is_bounded_and_keyed_by_every_input(h):
    h.max_results = 3
    for seed in range(5):
        h.generate("tiny16", 16, seed)
    assert len(h._results) == 3
    a = h.generate("tiny16", 16, 1, 1.0, 9, 8)[0]
    b = h.generate("tiny16", 16, 1, 1.0, 9, 16)[0]
    h.generate("tiny16", 16, 1, 1.0, 5, 0)
    assert not np.array_equal(pixels(a), pixels(b))
    # Mixing off: seed B is ignored, so one cache entry serves every seed B.
    assert "result cache" in h.generate("tiny16", 16, 1, 1.0, 6, 0)[3]


def test_retrained_model_is_not_served_from_the_cache(tmp_path):
    weights = tmp_path / "weights"
    make_tiny_model(weights / "m", resolution=16, seed=1)
    h = GH.GenerateHandlers(common.AppContext(runs_dir=tmp_path / "runs", weights_dir=weights), files=tmp_path / "f")
    before = pixels(h.generate("m", 16, 0)[0])
    time.sleep(0.01)
    make_tiny_model(weights / "m", resolution=16, seed=2)
    os.utime(weights / "m" / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not np.array_equal(before, pixels(h.generate("m", 16, 0)[0]))


def test_mixing_keeps_coarse_levels_of_seed_a(h, weights):
    mixed, _ = h.rendered(h.request("tiny32", 32, 1, 1.0, 2, 16))
    plain, _ = h.rendered(h.request("tiny32", 32, 1, 1.0))
    assert torch.equal(mixed.features[8], plain.features[8])
    assert not torch.equal(mixed.features[16], plain.features[16])
    assert np.array_equal(pixels(mixed.image), expected(weights, "tiny32", 1, 32, mix_seed=2, mix_level=16))


def test_truncation_zero_is_one_image_for_every_seed(h):
    a, b = (pixels(h.generate("tiny16", 16, s, 0.0)[0]) for s in (1, 2))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="nope"), "unknown model 'nope'"),
        (dict(model=None), "no model selected"),
        (dict(seed=-1), "seed must be a whole number from 0 to 4294967295"),
        (dict(seed=2**32), "seed must be a whole number"),
        (dict(seed=1.5), "seed must be a whole number"),
        (dict(seed="abc"), "seed must be a whole number"),
        (dict(seed=None), "seed must be a whole number"),
        (dict(scale=64), "scale must be one of this model's levels [4, 8, 16, 32]"),
        (dict(scale="big"), "scale must be one of"),
        (dict(truncation=2.5), "truncation must be a number from 0 to 2"),
        (dict(truncation=float("nan")), "truncation must be a number"),
        (dict(mix_level=12), "mix level must be one of this model's levels [4, 8, 16, 32] or 0 (off)"),
        (dict(mix_level=8, mix_seed=-3), "mix seed must be a whole number"),
    ],
)
def test_bad_requests_are_refused_clearly(h, kwargs, message):
    args = dict(model="tiny32", scale=32, seed=0, truncation=1.0, mix_seed=1, mix_level=0) | kwargs
    with pytest.raises(gr.Error) as err:
        h.generate(**args)
    assert message in err.value.message and "Traceback" not in err.value.message


def test_channel_view_and_normalisation(h):
    img = h.channel("tiny32", 32, 4, 1.0, 1, 0, 16, 3, True)
    assert img.startswith("data:image/webp;base64,") and size(img) == (16, 16) and pixels(img).std() > 0
    own, level_range = pixels(img), pixels(h.channel("tiny32", 32, 4, 1.0, 1, 0, 16, 3, False))
    assert not np.array_equal(own, level_range)
    with pytest.raises(gr.Error, match="channel must be a whole number from 0 to 15"):
        h.channel("tiny32", 32, 4, 1.0, 1, 0, 16, 16, True)
    with pytest.raises(gr.Error, match="level must be one of"):
        h.channel("tiny32", 16, 4, 1.0, 1, 0, 32, 0, True)  # 32 is not rendered at scale 16


def test_channel_picker_starts_at_the_most_active_channel_and_follows_the_scale(h):
    *_, img, level, slider = h.page_and_picker("tiny32", 32, 4, 1.0, 1, 0, 8, 0, True, reset=True)
    res, _ = h.rendered(h.request("tiny32", 32, 4, 1.0))
    assert level["value"] == 8 and slider["value"] == res.top_channels[8][0] and slider["maximum"] == 31
    *_, img, level, slider = h.page_and_picker("tiny32", 8, 4, 1.0, 1, 0, 32, 5, True)
    assert level["value"] == 8 and [v for _, v in level["choices"]] == [4, 8] and size(img) == (8, 8)


def test_grid_is_consecutive_seeds_matching_single_generation(h):
    tiles = h.grid("tiny16", 16, GH.SEED_MAX - 1, 1.0, 4)
    assert [c for _, c in tiles] == [f"seed {GH.SEED_MAX - 1}", f"seed {GH.SEED_MAX}", "seed 0", "seed 1"]
    single = pixels(h.generate("tiny16", 16, 0)[0]).astype(int)
    assert np.abs(pixels(tiles[2][0]).astype(int) - single).max() <= 1  # batch vs single: float rounding
    with pytest.raises(gr.Error, match="count must be a whole number from 1 to 64"):
        h.grid("tiny16", 16, 0, 1.0, 65)


def test_walk_is_a_looping_gif_from_seed_a_to_seed_b(h, weights):
    path = h.walk("tiny16", 16, 3, 9, 1.0, 5)
    with Image.open(path) as gif:
        assert gif.n_frames == 8 and gif.size == (256, 256)  # 5 there, 3 back; 16 px x 16
        first = pixels(gif.convert("RGB").resize((16, 16), Image.NEAREST))
    assert np.abs(first.astype(int) - expected(weights, "tiny16", 3, 16).astype(int)).max() <= 8  # GIF palette
    assert h.walk("tiny16", 16, 3, 9, 1.0, 5) == path
    with pytest.raises(gr.Error, match="frames must be a whole number from 2 to 60"):
        h.walk("tiny16", 16, 3, 9, 1.0, 1)


def test_slerp_ends_at_both_latents():
    a, b = torch.randn(1, 8), torch.randn(1, 8)
    assert torch.allclose(GH.slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(GH.slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(GH.slerp(a, a, 0.5), a)


def test_random_seed_spans_32_bits():
    seeds = {GH.random_seed() for _ in range(200)}
    assert all(0 <= s <= GH.SEED_MAX for s in seeds) and max(seeds) > 2**31 // 2


def test_model_choices_list_shipped_models_and_this_visitors_runs(ctx):
    assert G.model_choices(ctx, None) == [("tiny16 (msggan, 16px, test)", "tiny16"),
                                          ("tiny32 (msggan, 32px, test)", "tiny32"),
                                          ("tinyvae16 (hvae, 16px, test)", "tinyvae16")]
    make_tiny_model(ctx.runs_dir / "mine" / "model", resolution=16)
    labels = dict((n, l) for l, n in G.model_choices(ctx, None))
    assert labels["mine"].endswith("your run")
    upd = G.model_dropdown_update(ctx, None, current="tiny32")
    assert upd["value"] == "tiny32" and len(upd["choices"]) == 4
    assert G.model_dropdown_update(ctx, None, current="gone", select="mine")["value"] == "mine"
    assert G.model_dropdown_update(ctx, None, current="gone")["value"] == "tiny16"


def test_every_family_hierarchical_vae_included(h, weights):
    image, cards, stats, info = h.generate("tinyvae16", 16, 7, 0.8, 8, 8)
    assert size(image) == (16, 16) and len(cards) == 3 and len(stats["data"]) == 3
    assert np.array_equal(pixels(image), expected(weights, "tinyvae16", 7, 16, truncation=0.8, mix_seed=8, mix_level=8))
    assert not np.array_equal(pixels(image), pixels(h.generate("tinyvae16", 16, 7, 0.8)[0]))


def test_runs_of_other_visitors_stay_private(tmp_path, weights):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=weights, shared=True)
    owner_a, owner_b = "a" * 24, "b" * 24
    make_tiny_model(ctx.owner_dir(owner_a) / "secret" / "model", resolution=16)
    h = GH.GenerateHandlers(ctx, files=tmp_path / "f")
    assert size(h.generate("secret", 16, 0, owner=owner_a)[0]) == (16, 16)
    with pytest.raises(gr.Error, match="unknown model 'secret'"):
        h.generate("secret", 16, 0, owner=owner_b)


def test_a_new_model_starts_at_its_finest_scale_and_keeps_valid_mixing(h):
    scale, mix, truncation = G.on_model(h, "tiny16", 8)
    assert scale["value"] == 16 and [v for _, v in scale["choices"]] == [4, 8, 16]
    assert mix["value"] == 8 and [v for _, v in mix["choices"]] == [0, 8, 16]
    assert truncation["value"] == 1.0 and truncation["label"].startswith("Truncation")
    assert G.on_model(h, "tiny32", 8)[0]["value"] == 32
    assert G.on_model(h, "tiny16", 32)[1]["value"] == 0  # no 32x32 level to switch at


def test_a_vae_starts_at_its_family_temperature_and_the_slider_says_temperature(h):
    *_, truncation = G.on_model(h, "tinyvae16", 0)
    assert truncation["value"] == 0.7 and truncation["label"].startswith("Temperature")
    assert G.truncation_of("no-such-family") == (1.0, G.truncation_of("msggan")[1])


def test_spaces_gpu_wraps_the_device_calls_when_installed(monkeypatch, ctx):
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn: (lambda *a, **k: (calls.append(fn.__name__), fn(*a, **k))[1])
    monkeypatch.setitem(sys.modules, "spaces", fake)
    mod = importlib.reload(GH)
    try:
        mod.GenerateHandlers(ctx, files=ctx.runs_dir / "f").generate("tiny16", 16, 0)
        assert calls == ["_generate_on_device_impl"]
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(GH)
    if importlib.util.find_spec("spaces") is None:
        assert GH.gpu.__module__ == GH.__name__  # back to the no-op: spaces is optional


def test_feature_capture_ignores_other_threads_running_the_same_module():
    """The model cache hands one module to every tab; another thread's forward during a capture
    must not land in this capture's feature maps."""
    import threading

    from msgen import features

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Identity()

        def granularity_modules(self):
            return {4: self.block}

        def forward(self, x):
            y = self.block(x)
            other = threading.Thread(target=lambda: self.block(torch.full_like(x, 7.0)))
            other.start()
            other.join()  # another tab's request, running after ours on the same module
            return y

    _, feats = features.capture(Tiny(), torch.zeros(1, 2, 4, 4))
    assert torch.equal(feats[4], torch.zeros(1, 2, 4, 4))


def test_one_image_on_the_cpu_runs_on_one_torch_thread_and_leaves_the_default(h):
    from msgen.ui.cpu_runner import OneThreadRunner

    before = torch.get_num_threads()
    runner = OneThreadRunner()
    assert runner.run(torch.get_num_threads) == 1
    assert torch.get_num_threads() == before
    seen = []
    real = msgen.generate
    try:
        msgen.generate = lambda *a, **k: (seen.append((threading.current_thread().name, torch.get_num_threads())),
                                          real(*a, **k))[1]
        h.generate("tiny16", 16, 123)
        h.grid("tiny16", 16, 0, 1.0, 2)  # a batch keeps the default, in the caller's thread
    finally:
        msgen.generate = real
    assert seen[0][0].startswith("msgen-generate") and seen[0][1] == 1
    assert not seen[1][0].startswith("msgen-generate") and seen[1][1] == before


def test_the_page_opens_on_the_models_opening_seed_and_odd_ones_are_ignored(tmp_path):
    from msgen import zoo

    root = tmp_path / "weights"
    make_varied_model(root / "tiny16", resolution=16, seed=1)
    g = msgen.load(root / "tiny16")
    save_model(root / "tiny16", g, meta=dict(g.meta) | {"opening_seed": 37})
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=root)
    with gr.Blocks() as demo:
        G.build(ctx)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["msgen-seed-box"].value == 37 and by_id["msgen-seed"].value == 37
    assert "seed 37" in str(by_id["msgen-view"].value)  # the opening picture is that seed's
    for odd in ("37", True, -1, 2**40, 3.5, None):
        save_model(root / "tiny16", g, meta=dict(g.meta) | {"opening_seed": odd})
        assert zoo._entry("tiny16", root / "tiny16", "shipped").opening_seed == 0, odd


def test_the_page_opens_on_the_shipped_model_whose_card_scores_best_with_collapse_counted(tmp_path):
    # msgen.zoo.opening_model: a first visitor meets the shipped model whose pictures most look like,
    # and most span, its data without repeats, whatever the names' order; a collapsed model's high
    # precision and fair coverage do not win; odd figures count as unmeasured.
    from msgen import zoo

    root = tmp_path / "weights"
    for name, seed in (("a16", 1), ("b16", 2), ("c16", 3)):
        make_varied_model(root / name, resolution=16, seed=seed)

    def card(name, precision, coverage, near_duplicates=0.0, opening_seed=0):
        g = msgen.load(root / name)
        metrics = dict(g.meta.get("metrics") or {}, precision=precision, coverage=coverage,
                       near_duplicates=near_duplicates)
        save_model(root / name, g, meta=dict(g.meta) | {"metrics": metrics, "opening_seed": opening_seed})

    card("a16", 0.95, 0.5, 0.9)  # a collapsed model's clean, repeated pictures: 0.0475
    card("b16", 0.7, 0.6, 0.0, opening_seed=11)  # 0.42
    card("c16", 0.5, 0.5)  # 0.25
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=root)
    assert [e.name for e in ctx.models(None)] == ["a16", "b16", "c16"]  # the list keeps its order
    with gr.Blocks() as demo:
        G.build(ctx)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["msgen-model"].value == "b16"
    assert by_id["msgen-seed-box"].value == 11 and "seed 11" in str(by_id["msgen-view"].value)
    assert G.model_dropdown_update(ctx, None, current="gone")["value"] == "b16"  # a vanished pick falls back to it
    for odd in ("0.9", True, 1.5, -0.1, None, [0.9], {"v": 0.9}):  # (NaN: the JSON parser refuses the card)
        card("b16", odd, 0.6)
        entry = zoo._entry("b16", root / "b16", "shipped")
        assert entry.precision is None and zoo.opening_score(entry) is None, odd
        assert G.opening_name(ctx) == "c16", odd
    for name in ("a16", "b16", "c16"):
        card(name, 0.9, None)
    assert G.opening_name(ctx) == "a16"  # nothing measured: the first, as listed
    assert zoo.opening_model([]) is None


def test_listing_reads_an_unchanged_config_once_and_sees_every_rewrite(tmp_path, monkeypatch):
    # Every request checks its model against the listing: an unchanged config.json is not parsed
    # again, and a rewritten one (atomic replace, or edited in place) is.
    from msgen import zoo

    root = tmp_path / "weights"
    make_varied_model(root / "tiny16", resolution=16, seed=1)
    reads = []
    real = zoo.ckpt.read_config
    monkeypatch.setattr(zoo.ckpt, "read_config", lambda p: reads.append(p) or real(p))
    listing = lambda: zoo.list_models(runs_dir=tmp_path / "none", weights_dir=root)  # noqa: E731
    for _ in range(3):
        assert [e.name for e in listing()] == ["tiny16"]
    assert len(reads) == 1
    g = msgen.load(root / "tiny16")
    save_model(root / "tiny16", g, meta=dict(g.meta) | {"opening_seed": 5})
    reads.clear()
    assert [listing()[0].opening_seed for _ in range(2)] == [5, 5] and len(reads) == 1
    with open(root / "tiny16" / "config.json", "r+") as f:  # the same file, broken in place
        f.truncate(1)
    assert listing() == [] and listing() == [] and len(reads) == 2


@pytest.mark.parametrize("family", ["msggan", "hvae", "var"])
@pytest.mark.parametrize("native", [True, False])
def test_cpu_serving_converts_the_familys_parts_and_keeps_the_picture(tmp_path, monkeypatch, family, native):
    # The cache serves each family on a CPU as its Family.serving says: those parts channels_last,
    # and where the CPU multiplies bfloat16 natively (forced here; the conftest turns it off for the
    # rest of the suite) those parts in bfloat16. The picture stays the same picture, pictures and
    # maps come back float32, and a part that picks tokens stays exact: var draws the same tokens.
    from msgen.checkpoint import load_generator
    from msgen.models import build_generator, get_family, make_config
    from msgen.zoo import ModelCache

    fam = get_family(family)
    assert fam.serving.channels_last or fam.serving.low_precision  # every family measured faster so
    torch.manual_seed(0)
    g = build_generator(make_config(family, resolution=16, **fam.tiny_config)).eval()
    save_model(tmp_path / "m", g)
    monkeypatch.setenv("MSGEN_CPU_BF16", "1" if native else "0")
    served = ModelCache(device="cpu").get(tmp_path / "m")
    low = {n for n in fam.serving.low_precision} if native else set()
    last = set(fam.serving.channels_last) | low
    for name, param in served.named_parameters():
        owner = {n for n in last | low if n == "" or name.startswith(n + ".")}
        assert param.dtype == (torch.bfloat16 if owner & low else torch.float32), name
        if param.ndim == 4 and param.shape[2] * param.shape[3] > 1:
            assert param.is_contiguous(memory_format=torch.channels_last) == bool(owner), name
    exact = load_generator(tmp_path / "m").eval()
    a = msgen.generate(exact, seed=3, features=True)
    b = msgen.generate(served, seed=3, features=True)
    assert all(b.images[k].dtype == torch.float32 and b.features[k].dtype == torch.float32 for k in b.images)
    err = (a.images[16] - b.images[16]).abs()
    assert err.mean() < 0.02 and (err.max() > 0 or not low)  # rounded where bfloat16, the same picture
    if family == "var":
        assert all(torch.equal(a.pictures[k]["token map"], b.pictures[k]["token map"]) for k in a.pictures)
    if fam.encodes:  # Decompose runs on the served model too: encode, reconstruct, resample
        x = a.images[16]
        assert (exact.reconstruct(x).finest - served.reconstruct(x).finest.float()).abs().mean() < 0.02
        enc_a, enc_b = exact.encode(x), served.encode(x)
        if family == "var":  # the tokenizer's encoder and quantiser are not served low: the same tokens,
            assert all(torch.equal(enc_a.tokens[k], enc_b.tokens[k]) for k in enc_a.tokens)
            assert all(enc_b.images[k].dtype == torch.float32 for k in enc_b.images)  # the decoder casts back
        kept = exact.levels[len(exact.levels) // 2]
        va = exact.resample(x, seed=1, temperature=0.8, count=2, keep_below=kept).finest
        vb = served.resample(x, seed=1, temperature=0.8, count=2, keep_below=kept).finest.float()
        assert va.shape == vb.shape and (va - vb).abs().mean() < 0.05


def test_the_pages_rendering_is_level_views_encoded_in_level_order(weights):
    # What the page shows of a generation is exactly what the CLI's level_views gives, coarse to fine.
    from msgen.ui.generate_rendered import render_generation

    out = msgen.generate(msgen.load(weights / "tiny16"), seed=11, features=True)
    res = render_generation(out)
    views = render.level_views(out.images, out.features)
    assert [c["level"] for c in res.levels] == [v.level for v in views] == sorted(out.features)
    assert [c["image"] for c in res.levels] == [render.data_uri(v.card) for v in views]
    assert res.image == render.data_uri(render.to_uint8(out.images[out.scale][0]))
    assert [row[0] for row in res.stats] == [v.level for v in views]
    assert [row[4] for row in res.stats] == [round(v.stats.std, 4) for v in views]
