"""Smoke tests for bench/quality.py and its lightweight-gan baseline: card metrics round-trip through a
copy of a shipped model folder, and one CPU step of a tiny lightweight-gan (skipped without requirements-bench.txt)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "bench"))  # appended: bench/app.py must not shadow the root app.py


def _fake_result(levels):
    return {"swd": {lv: 10.0 + lv for lv in levels} | {"mean": 30.0}, "fid_efflite0": 12.5, "kid_efflite0": 0.004,
            "kid_efflite0_std": 0.001, "n_real": 8, "n_fake": 8}


def test_write_card_stores_metrics_and_rerenders_card(tmp_path):
    import msgen
    import quality

    src = ROOT / "weights" / "sprites32"
    if not (src / "model.safetensors").is_file():
        pytest.skip("no shipped sprites32")
    dst = tmp_path / "sprites32"
    shutil.copytree(src, dst)
    before = json.loads((dst / "config.json").read_text())
    result, floor = _fake_result((32, 16, 8)), _fake_result((32, 16, 8))
    metrics = quality.card_metrics(result, floor, None, "python bench/quality.py", "data/sprites", "abc")
    quality.write_card(dst, metrics)
    after = json.loads((dst / "config.json").read_text())
    assert after["msgen"]["metrics"]["swd_x1e3"]["32px"] == 42.0
    assert {k: v for k, v in after["msgen"].items() if k != "metrics"} == {
        k: v for k, v in before["msgen"].items() if k != "metrics"}  # nothing else changed
    assert {k: v for k, v in after.items() if k != "msgen"} == {k: v for k, v in before.items() if k != "msgen"}
    card = (dst / "README.md").read_text()
    assert "## Metrics" in card and "| fid_efflite0 | 12.5 |" in card and "samples.png" in card
    g = msgen.load(dst)  # still a loadable model folder
    assert g.meta["metrics"]["kid_efflite0_x1e3"] == 4.0


@pytest.mark.skipif(importlib.util.find_spec("lightweight_gan") is None,
                    reason="lightweight-gan not installed (a benchmark baseline: pip install -r requirements-bench.txt)")
def test_lightweight_gan_trains_one_cpu_step_and_samples_in_range():
    import lwgan_baseline

    torch.set_num_threads(2)
    is_available = torch.cuda.is_available
    base = lwgan_baseline.LWGANBaseline(32, num_images=10, batch_size=2, fmap_max=32, attn_res_layers=())
    assert torch.cuda.is_available is is_available  # patched for the import only
    losses = base.step(torch.rand(2, 3, 32, 32))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()) and "gp" in losses and "recon" in losses
    model = base.sampler()
    out = model(model.sample_latents(3, seed=0)).images[32]
    assert out.shape == (3, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(model.sample_latents(3, seed=0), model.sample_latents(3, seed=0))
