"""The shipped models in weights/: they load, draw non-blank pictures at every level, stay under
the size limit, and their cards say what their configs say; the GANs (but the one still known to
repeat) draw 64 seeds without near-copies; the hierarchical VAEs take apart images of their own
data set (built from the Debian packages) better than a blur does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import msgen
from msgen.data import load_image_set
from msgen.datasets import build_dataset
from tests.conftest import need_dataset

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = sorted(p.name for p in WEIGHTS.iterdir() if (p / "model.safetensors").is_file())
EXPECTED = {"sprites32", "emoji64", "fashion32"}
HVAE_DATA = {"fashion32-hvae": "fashion", "emoji64-hvae": "emoji"}  # shipped hvae model -> its data set
# sprites32 was trained before the mapping network's He init and repeats itself (57% near-duplicates
# at 605 samples, 14 of these 64): the README's "Why the GANs collapsed"; retraining it is open.
STILL_REPEATS = {"sprites32"}


def test_the_three_gan_models_and_both_hvae_models_ship():
    assert EXPECTED | set(HVAE_DATA) <= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(HVAE_DATA))
def test_shipped_hvae_takes_apart_its_own_data_better_than_a_blur(name, tmp_path):
    need_dataset(HVAE_DATA[name])
    g = msgen.load(name)
    build_dataset(HVAE_DATA[name], tmp_path, limit=24, seed=7)
    x = load_image_set(tmp_path, g.levels[-1]).images
    assert len(x) == 24
    with torch.no_grad():
        rec = g.reconstruct(x).finest
        enc = g.encode(x)
        varied = g.resample(x[:1], keep_below=g.levels[-1], seed=3, count=3)
    blur = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    rec_err, blur_err = F.mse_loss(rec, x).item(), F.mse_loss(blur, x).item()
    assert rec_err < 0.7 * blur_err, (rec_err, blur_err)
    assert 10 * torch.log10(torch.tensor(4.0 / rec_err)) > 22  # PSNR in dB on [0, 1] pixels
    kl = enc.kl_nats()
    assert all(kl[lvl].mean() > 0.5 for lvl in g.levels[:2]), kl  # the coarse levels carry the layout
    # Re-sampling the finest level's detail keeps everything coarser, and varies the picture.
    coarse = g.levels[-2]
    torch.testing.assert_close(varied.images[coarse], g.reconstruct(x[:1]).images[coarse].expand(3, -1, -1, -1),
                               atol=1e-5, rtol=0)
    assert (varied.finest - varied.finest[:1]).abs().amax() > 0.01


@pytest.mark.parametrize("name", SHIPPED)
def test_loads_and_generates_non_blank_images_at_every_level(name):
    g = msgen.load(name)
    out = msgen.generate(g, seed=1, n=4)
    assert list(out.images) == list(g.levels)
    for lvl, img in out.images.items():
        assert img.shape == (4, 3, lvl, lvl)
        assert -1 <= img.min() and img.max() <= 1
        assert img.std() > 0.05, f"{name} level {lvl} is blank"
    finest = out.images[g.levels[-1]]
    assert (finest[0] - finest[1]).abs().mean() > 0.01  # different seeds, different pictures
    one = msgen.generate(g, seed=1).images[g.levels[-1]][0]
    assert torch.equal(one, msgen.generate(g, seed=1).images[g.levels[-1]][0])  # same seed, same pixels
    assert torch.allclose(one, finest[0], atol=1e-4)  # batching changes only float rounding


@pytest.mark.parametrize("name", sorted(n for n in SHIPPED if json.loads((WEIGHTS / n / "config.json").read_text())
                                         ["family"] == "msggan" and n not in STILL_REPEATS))
def test_shipped_gan_does_not_repeat_itself(name):
    # 64 seeds, as the page draws them: at most 2 with a near-copy among the others (RMS 0.05 on
    # [-1, 1]). fashion32 before its retrain had 26 of 64 (97% of 1000), sprites32 has 14.
    from msgen.metrics import near_duplicate_share

    g = msgen.load(name)
    pictures = msgen.generate(g, seed=0, n=64).images[g.levels[-1]].float()
    assert near_duplicate_share(pictures) <= 2 / 64


@pytest.mark.parametrize("name", SHIPPED)
def test_card_matches_config_and_size_limit(name):
    folder = WEIGHTS / name
    cfg = json.loads((folder / "config.json").read_text())
    meta = cfg["msgen"]
    card = (folder / "README.md").read_text()
    assert (folder / "model.safetensors").stat().st_size < 16 * 2**20
    assert (folder / "samples.png").is_file() and "samples.png" in card
    assert f"license: {meta['license']}" in card
    assert f'"resolution": {cfg["resolution"]}' in card and f'"family": "{cfg["family"]}"' in card
    assert str(cfg["resolution"]) in name
    assert meta["command"].startswith("python -m msgen train") and f"`{meta['command']}`" in card
    assert f"Steps: {meta['steps']}" in card
    assert re.search(r"Hardware: .+", card)


@pytest.mark.parametrize("name", sorted(HVAE_DATA))
def test_shipped_hvae_detail_variants_keep_their_picture_and_stay_sharp(name):
    # Decompose's "keep coarse, vary detail" on the tab's own example pictures, at the tab's default
    # split and temperature: every example's variants are closer (Lite0 cosine) to it than to any
    # other example, and at least half as sharp as its reconstruction (msgen.metrics.variant_fidelity).
    from msgen.metrics import example_pictures, variant_fidelity
    from msgen.ui.decompose_handlers import default_level, default_temperature

    g = msgen.load(name).eval()
    files = sorted((WEIGHTS / "examples").glob(f"{HVAE_DATA[name]}_*.png"))
    assert len(files) >= 4
    rows = variant_fidelity(g, example_pictures(files, g.levels[-1]), default_level(g.levels), seed=0,
                            temperature=default_temperature("hvae"))
    for f, r in zip(files, rows):
        assert r["to_original"] > r["to_other"], (f.stem, r)
        assert r["sharpness"] >= 0.5, (f.stem, r)
