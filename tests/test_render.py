"""msgen.render: the one rounding rule, grids, display sizes, PCA colours, the colour ramp,
level statistics and encoding; and ``python -m msgen generate --features`` writing exactly the
pictures and statistics the Generate page shows for the same model and seed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msgen import render
from msgen.__main__ import main
from msgen.ui import common
from msgen.ui import generate_handlers as GH
from tests.conftest import pixels



def test_one_rounding_rule_nearest_halves_up_clipped():
    assert render.to_bytes(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]
    x = torch.rand(10_000) * 2 - 1
    assert np.abs(render.to_bytes(x).astype(np.float64) - (x.double().numpy() + 1) * 127.5).max() <= 0.5 + 1e-4
    y = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    assert render.to_uint8(y).shape == (2, 2, 2, 3) and render.to_uint8(y)[0, 0, 0].tolist() == [0, 128, 255]
    from msgen.data import to_uint8  # the data path rounds by the same rule, as a tensor of the input's shape

    assert torch.equal(to_uint8(x), torch.from_numpy(render.to_bytes(x)))


def test_grids_gaps_and_borders():
    import torchvision.utils as vutils

    x = torch.rand(5, 3, 4, 6) * 2 - 1
    want = render.to_bytes(vutils.make_grid(x, nrow=3, padding=2, pad_value=1.0)).transpose(1, 2, 0)
    got = render.grid(render.to_uint8(x), cols=3, gap=2, fill=255, border=True)
    assert np.array_equal(got, want)  # torchvision make_grid's layout
    tight = render.grid(render.to_uint8(x), cols=2)
    assert tight.shape == (3 * 4 + 2, 2 * 6 + 1, 3) and (tight[4] == render.GAP_VALUE).all()
    assert (tight[-4:, -6:] == render.GAP_VALUE).all()  # the empty last cell is gap-coloured


def test_display_sizes_are_nearest_neighbour():
    assert render.enlarge(Image.new("RGB", (16, 16)), 256).size == (256, 256)
    assert render.enlarge(Image.new("RGB", (300, 300)), 256).size == (300, 300)
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert render.enlarge(a, 7).shape == (6, 9, 3) and np.array_equal(render.enlarge(a, 7)[::3, ::3], a)
    assert np.array_equal(render.upscale(a, 2), a.repeat(2, 0).repeat(2, 1))
    assert np.array_equal(render.resize(a, 4, 6), render.upscale(a, 2)) and render.resize(a, 3, 5).shape == (3, 5, 3)


def test_pca_colours():
    fmap = torch.randn(12, 8, 8)
    a = render.pca_rgb(fmap)
    assert a.shape == (8, 8, 3) and a.dtype == np.uint8 and np.array_equal(a, render.pca_rgb(fmap.clone()))
    assert {0, 255} <= set(np.unique(a[..., 0]).tolist())  # each component spans the full range
    assert render.pca_rgb(torch.randn(2, 4, 4)).shape == (4, 4, 3)  # fewer than 3 channels
    assert render.pca_rgb(torch.zeros(8, 4, 4)).max() == 0  # a dead level stays black, no NaN


def test_pca_matches_an_exact_svd():
    torch.manual_seed(0)
    for c, r in ((64, 4), (16, 16)):  # both the Gram and the covariance path
        x = (torch.randn(c, 3) * torch.tensor([5.0, 3.0, 1.5]) @ torch.randn(3, r * r) + 0.05 * torch.randn(c, r * r))
        got = render.pca_rgb(x.reshape(c, r, r)).reshape(-1, 3).astype(float)
        vh = torch.linalg.svd((x - x.mean(1, keepdim=True)).double(), full_matrices=False)[2][:3].numpy()
        for k in range(3):
            want = [(v - v.min()) / (v.max() - v.min()) * 255 for v in (vh[k], -vh[k])]
            assert min(np.abs(got[:, k] - w).max() for w in want) <= 1


def test_single_channels_and_heat_maps_share_one_ramp():
    fmap = torch.randn(6, 5, 5)
    tiles = render.colorize_channels(fmap, [4, 1])
    assert np.array_equal(tiles[0], render.channel_view(fmap, 4, normalize=True))  # the card's tile is the large view
    assert {tuple(render.RAMP[0]), tuple(render.RAMP[255])} <= set(map(tuple, tiles[1].reshape(-1, 3)))
    whole = render.channel_view(fmap, 1, normalize=False)  # scaled to the level's range: a narrower span
    assert len(np.unique(whole.reshape(-1, 3), axis=0)) <= len(np.unique(tiles[1].reshape(-1, 3), axis=0))
    kl = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    assert render.heat(kl).tolist() == render.RAMP[[[0, 64], [128, 255]]].tolist()
    assert (render.heat(torch.zeros(3, 3)) == render.RAMP[0]).all()


def test_level_stats_and_top_channels():
    fmap = torch.randn(6, 8, 8).clamp_min(-0.5)
    fmap[2] *= 10
    s = render.level_stats(16, fmap)
    assert (s.level, s.channels, s.size) == (16, 6, 8)
    assert (s.mean, s.std, s.zero_share) == pytest.approx(
        (float(fmap.mean()), float(fmap.std()), float((fmap <= 1e-6).float().mean())), abs=1e-5)
    assert render.top_channels(fmap, 3)[0] == 2 and len(render.top_channels(fmap)) == render.TOP_K - 2
    assert render.level_stats(4, torch.ones(1, 1, 1)).std == 0.0


def test_data_uris_round_trip_and_bad_ones_are_refused():
    picture = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    assert np.array_equal(pixels(render.data_uri(picture)), picture)  # lossless
    assert np.array_equal(pixels(Image.open(io.BytesIO(render.png_bytes(picture)))), picture)
    for bad in ("x", "data:text/plain;base64,aGk=", "data:image/webp;base64,!!!", "data:image/webp;base64,aGk="):
        with pytest.raises(ValueError):
            render.from_data_uri(bad)


def card_tile(card: np.ndarray, level: int, i: int) -> np.ndarray:
    """Tile ``i`` of a level card's first row, at the level's own size (coarse tiles are enlarged)."""
    factor = max(1, -(-render.MIN_TILE // level))
    side = level * factor
    return card[:side:factor, i * (side + render.GAP):][:, :side:factor]


@pytest.mark.parametrize("name, scale, seed, truncation, mix_seed, mix_level", [
    ("tiny32", 32, 11, 1.0, None, None),
    ("tiny32", 16, 5, 0.7, 9, 8),  # below the finest scale, with mixing
    ("tinyvae16", 16, 3, 0.7, None, None),  # a family whose levels carry latents of their own
])
def test_cli_features_are_the_pages_pictures(tiny_weights, tmp_path, name, scale, seed, truncation, mix_seed,
                                            mix_level):
    """``generate --features`` writes what the Generate page shows for that model and seed: the
    image, every level's card, the PCA view and most active channels in them, the statistics."""
    h = GH.GenerateHandlers(common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights),
                            files=tmp_path / "files")
    image, cards, table, _ = h.generate(name, scale, seed, truncation, mix_seed, mix_level)
    res, _ = h.rendered(h.request(name, scale, seed, truncation, mix_seed, mix_level))
    out = tmp_path / "cli"
    args = ["generate", "--model", str(tiny_weights / name), "--seed", str(seed), "--scale", str(scale),
            "--truncation", str(truncation), "--features", str(out), "--out", str(out / "image.png")]
    if mix_seed is not None:
        args += ["--mix-seed", str(mix_seed), "--mix-level", str(mix_level)]
    assert main(args) == 0
    assert np.array_equal(pixels(out / "image.png"), pixels(image))
    assert np.array_equal(pixels(out / f"image_{scale}.png"), pixels(image))
    stats = json.loads((out / "stats.json").read_text())
    assert [s["level"] for s in stats] == [c["level"] for c in cards] == [row[0] for row in table["data"]]
    for card, s, row in zip(cards, stats, table["data"]):
        lvl = card["level"]
        shown = pixels(card["image"])
        assert np.array_equal(pixels(out / f"features_{lvl}_card.png"), shown)
        assert np.array_equal(pixels(out / f"image_{lvl}.png"), card_tile(shown, lvl, 0))
        assert np.array_equal(pixels(out / f"features_{lvl}_pca.png"), card_tile(shown, lvl, 1))
        top = pixels(out / f"features_{lvl}_top.png")
        assert np.array_equal(top[:, :lvl], card_tile(shown, lvl, 2))  # the card's first channel tile: the most active
        assert s["top_channels"] == res.top_channels[lvl]
        large = pixels(h.channel(name, scale, seed, truncation, mix_seed, mix_level, lvl, s["top_channels"][0]))
        assert np.array_equal(top[:, :lvl], large)  # and the page's large channel view of it
        assert [s["level"], s["channels"], f"{s['size']}x{s['size']}"] == row[:3]
        assert [round(s[k], 4) for k in ("mean", "std", "zero_share")] == row[3:]


def test_cli_grid_of_seeds(tiny_weights, tmp_path):
    path = Path(tmp_path / "grid.png")
    assert main(["generate", "--model", str(tiny_weights / "tiny16"), "--seed", "3", "--n", "10", "--out",
                 str(path)]) == 0
    grid = pixels(path)
    assert grid.shape == (2 * 17 + 1, 8 * 17 + 1, 3) and (grid[0] == 255).all()  # 8 a row, white 1 px lines
    import msgen

    want = render.to_uint8(msgen.generate(msgen.load(tiny_weights / "tiny16"), seed=11, n=1).images[16][0])
    assert np.array_equal(grid[18:34, 1:17], want)  # the ninth tile is seed 3 + 8


def test_cli_generate_opens_the_pages_model_on_one_thread_and_gives_the_caller_its_threads_back(tmp_path, monkeypatch):
    import msgen
    from msgen import zoo

    seen = []
    real = msgen.generate

    def spy(model, **kw):
        seen.append((model.meta.get("title"), torch.get_num_threads(), kw["n"]))
        return real(model, **kw)

    monkeypatch.setattr(msgen, "generate", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["generate", "--out", str(tmp_path / "a.png")]) == 0
        assert main(["generate", "--n", "3", "--out", str(tmp_path / "b.png")]) == 0
        assert main(["generate", "--threads", "2", "--out", str(tmp_path / "c.png")]) == 0
        assert torch.get_num_threads() == 2  # the caller's count, after each
    finally:
        torch.set_num_threads(before)
    page = msgen.load(zoo.opening_model(zoo.list_models()).path).meta.get("title")
    assert seen == [(page, 1, 1), (page, 2, 3), (page, 2, 1)]
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--threads", "300", "--out", str(tmp_path / "d.png")])
    assert exit_info.value.code == 2 and not (tmp_path / "d.png").exists()
