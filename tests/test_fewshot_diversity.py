"""A few-step fine-tune with the page's defaults keeps the fixed-seed samples distinct.

Collapse showed first in the previews: fixed seeds giving one picture. Here the page's default
fine-tune (``python -m msgen train --data DIR --out RUN``, the shared defaults: same base and
recipe, fewer steps) runs on the fixture pictures, and every pair of eight fixed-seed samples must
stay further apart than a near-duplicate (RMS 0.05 on [-1, 1] pixels). The same check on a
generator that ignores its seed (every seed one picture) must fail, so it can. The default base is
a var model (``FINETUNE.base``); the check reads only pictures, so it holds for any family.
"""

from __future__ import annotations

from pathlib import Path

import torch

import msgen
from msgen.__main__ import main as cli
from msgen.defaults import FINETUNE
from msgen.metrics import NEAR_DUPLICATE_RMS

FIXTURES = Path(__file__).parent / "fixtures" / "images"


def closest_pair(g: torch.nn.Module, seeds: range = range(8)) -> float:
    """The smallest RMS pixel distance between the finest pictures of two of ``seeds``."""
    z = torch.cat([g.sample_latents(1, s) for s in seeds])
    with torch.inference_mode():
        x = g(z).finest.float().flatten(1)
    d = torch.cdist(x, x) / x.shape[1] ** 0.5
    d.fill_diagonal_(float("inf"))
    return float(d.min())


def test_fixed_seed_samples_stay_distinct_after_a_default_fine_tune(tmp_path):
    assert closest_pair(msgen.load(FINETUNE.base)) > NEAR_DUPLICATE_RMS
    run = tmp_path / "run"
    assert cli(["train", "--data", str(FIXTURES), "--out", str(run), "--steps", "25", "--batch", "8",
                "--sample-every", "25", "--checkpoint-every", "25", "--threads", "1"]) in (0, None)
    tuned = msgen.load(run)
    assert tuned.meta["steps"] == 25 and tuned.meta["base"]
    assert tuned.config.ar_side == 3  # the var fine-tune's change to its base: 1x1 to 3x3 drawn a token at a time
    assert 0 <= tuned.meta["opening_seed"] < 64  # chosen by msgen.metrics.opening_seed in the quality report
    assert closest_pair(tuned) > NEAR_DUPLICATE_RMS

    class IgnoresTheSeed(torch.nn.Module):  # a collapsed generator: every seed gets seed 0's latents
        def __init__(self, g):
            super().__init__()
            self.g = g

        def sample_latents(self, n, seed):
            return self.g.sample_latents(n, 0)

        def forward(self, z):
            return self.g(z)

    assert closest_pair(IgnoresTheSeed(tuned)) < NEAR_DUPLICATE_RMS
