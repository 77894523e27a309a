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


def test_gan_collapse_bench_compares_the_mapping_inits(tmp_path):
    # bench/gan_collapse.py end to end on a few pictures: one row per variant, and the init figure
    # it exists to show (torch's nn.Linear init leaves w ~0.05 per dimension; He init ~0.7).
    import subprocess

    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for i in range(16):
        pic = (torch.rand(16, 16, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pic).save(tmp_path / f"p{i}.png")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gan_collapse.py"), "--data", str(tmp_path),
                          "--steps", "2", "--n", "12", "--batch", "4", "--resolution", "16",
                          "--variants", "torch-init,he-init", "--out", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ") and "init" in line}
    assert set(rows) == {"torch-init", "he-init"}
    start = {name: float(row[2].split("/")[0]) for name, row in rows.items()}
    assert start["torch-init"] < 0.1 < 0.3 < start["he-init"]
