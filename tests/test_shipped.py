"""The shipped models in weights/: they load, draw non-blank pictures at every level, stay under
the size limit, and their cards say what their configs say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import msgen

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = sorted(p.name for p in WEIGHTS.iterdir() if (p / "model.safetensors").is_file())
EXPECTED = {"sprites32", "emoji64", "fashion32"}


def test_the_three_gan_models_ship():
    assert EXPECTED <= set(SHIPPED)


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
