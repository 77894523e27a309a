"""Tests for msgen.metrics: SWD, FID-EffLite0 and KID-EffLite0 on known cases, fully offline.

The data is a structured synthetic distribution (random coloured discs and rectangles drawn
with torch), so "a fresh sample from the same distribution" is meaningful: it must score
clearly better than a blurred or a noised sample. Sets are small (64 images at 32px) and
Lite0 features are computed once per set, to keep the file well under a minute on 2 CPUs.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass

os.environ["HF_HUB_OFFLINE"] = "1"  # and the fixture below refuses every socket connection

import pytest
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from msgen import metrics
from msgen.models import MultiScaleOutput

N, RES = 64, 32  # sets for Lite0 features, the slow part
N_SWD = 256  # SWD is cheap; more images steady its coarsest (8x8 low-pass) level


def degraded(n: int) -> dict[str, torch.Tensor]:
    """A real set, a fresh sample of the same distribution, and blurred / noised fresh samples."""
    noise = 0.25 * torch.randn(n, 3, RES, RES, generator=torch.Generator().manual_seed(5))
    return {
        "real": shapes(n, seed=1),
        "fresh": shapes(n, seed=2),
        "blurred": TF.gaussian_blur(shapes(n, seed=3), kernel_size=[7, 7], sigma=[1.5, 1.5]),
        "noisy": (shapes(n, seed=4) + noise).clamp(-1, 1),
    }


def shapes(n: int, seed: int, res: int = RES) -> torch.Tensor:
    """n images in [-1, 1]: a plain background and three random discs/rectangles."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    coords = (torch.arange(res) + 0.5) / res
    yy, xx = coords.view(1, res, 1), coords.view(1, 1, res)
    img = (u(n, 3, 1, 1) * 1.2 - 0.9).expand(n, 3, res, res).clone()
    for _ in range(3):
        cy, cx, size = u(n, 1, 1), u(n, 1, 1), 0.08 + 0.22 * u(n, 1, 1)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < size**2
        rect = ((yy - cy).abs() < size) & ((xx - cx).abs() < size * (0.4 + u(n, 1, 1)))
        mask = torch.where(u(n, 1, 1) < 0.5, disc, rect).unsqueeze(1)
        img = torch.where(mask, u(n, 3, 1, 1) * 2 - 1, img)
    return img


@pytest.fixture(scope="module", autouse=True)
def no_network():
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during metrics tests")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def sets(no_network):
    images = degraded(N)
    feats = {k: metrics.efflite0_features(v, batch_size=64, device="cpu") for k, v in images.items()}
    return images, feats


def test_pyramid_levels_and_identity(sets):
    images, _ = sets
    out = metrics.swd(images["real"], images["real"])
    assert set(out) == {32, 16, 8, "mean"}  # 32px images go down to 8x8
    assert all(v == 0.0 for v in out.values())
    assert set(metrics.swd(torch.zeros(4, 3, 64, 64), torch.zeros(4, 3, 64, 64))) == {64, 32, 16, "mean"}


def test_laplacian_pyramid_reconstructs():
    # Each band is the image minus the upsampled next level, so collapsing it is exact.
    x = shapes(4, seed=0)
    pyr = metrics._laplacian_pyramid(x, 3)
    rec = pyr[-1]
    for band in reversed(pyr[:-1]):
        rec = band + metrics._pyr_up(rec)
    torch.testing.assert_close(rec, x, atol=1e-5, rtol=0)


def test_laplacian_pyramid_matches_progan_numpy():
    # ProGAN builds its pyramid with scipy.ndimage.convolve(mode="mirror") and a 5x5 binomial
    # kernel (x4 after zero-insertion); our torch version must give the same bands.
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32)[None, None] / 256

    def down(a):
        return ndimage.convolve(a, k, mode="mirror")[:, :, ::2, ::2]

    def up(a):
        z = np.zeros((*a.shape[:2], a.shape[2] * 2, a.shape[3] * 2), np.float32)
        z[:, :, ::2, ::2] = a
        return ndimage.convolve(z, 4 * k, mode="mirror")

    x = shapes(3, seed=7)
    ref = [x.numpy().copy()]
    for _ in range(2):
        ref.append(down(ref[-1]))
        ref[-2] = ref[-2] - up(ref[-1])
    for ours, theirs in zip(metrics._laplacian_pyramid(x, 3), ref):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_swd_deterministic_and_symmetric(sets):
    images, _ = sets
    a = metrics.swd(images["real"], images["fresh"], seed=3)
    assert metrics.swd(images["real"], images["fresh"], seed=3) == a
    b = metrics.swd(images["fresh"], images["real"], seed=3)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4)
    assert metrics.swd(images["real"], images["fresh"], seed=4) != a  # the seed does matter


def test_swd_ranks_degradations():
    images = degraded(N_SWD)
    fresh = metrics.swd(images["real"], images["fresh"])
    for bad in ("blurred", "noisy"):
        worse = metrics.swd(images["real"], images[bad])
        # Blur and noise live in the finest band; the 8x8 low-pass level barely sees them.
        assert worse[32] > 2 * fresh[32], (bad, worse, fresh)
        assert worse["mean"] > 1.3 * fresh["mean"], (bad, worse, fresh)


def test_efflite0_features_shape_and_cache(sets):
    _, feats = sets
    assert feats["real"].shape == (N, 1280) and feats["real"].dtype == torch.float32
    assert torch.isfinite(feats["real"]).all() and feats["real"].std(0).mean() > 0
    assert metrics._efflite0("cpu") is metrics._efflite0("cpu")  # loaded once per process
    again = metrics.efflite0_features(sets[0]["real"][:8], batch_size=3, device="cpu")
    torch.testing.assert_close(again, feats["real"][:8], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def scores(sets):
    """FID/KID of the real set against each set: FID's 1280-d eigendecomposition costs seconds."""
    _, feats = sets
    return {k: metrics.fid_kid(feats["real"], f) for k, f in feats.items()}


def test_fid_kid_identical_sets_are_zero(scores):
    same, fresh, blurred = scores["real"], scores["fresh"], scores["blurred"]
    assert same.keys() == {"fid_efflite0", "kid_efflite0", "kid_efflite0_std"}
    # The unbiased KID of a set against itself is slightly negative (subsets share points);
    # "zero" means tiny next to a real difference.
    assert abs(same["kid_efflite0"]) < min(0.01, 0.05 * blurred["kid_efflite0"])
    assert abs(same["fid_efflite0"]) < 1e-3 * fresh["fid_efflite0"]


def test_fid_kid_rank_degradations(scores):
    fresh = scores["fresh"]
    for bad in ("blurred", "noisy"):
        worse = scores[bad]
        assert worse["fid_efflite0"] > 1.3 * fresh["fid_efflite0"], (bad, worse, fresh)
        assert worse["kid_efflite0"] > fresh["kid_efflite0"] + 3 * worse["kid_efflite0_std"], (bad, worse, fresh)


def test_fid_kid_takes_images_or_features(sets):
    images, feats = sets
    # Images on one side, their precomputed features on the other: the same set, so FID ~0.
    out = metrics.fid_kid(images["real"][:16], feats["real"][:16], device="cpu")
    assert abs(out["fid_efflite0"]) < 1e-2 and math.isfinite(out["kid_efflite0"])


@dataclass
class _Out:
    images: dict[int, torch.Tensor]


class StandIn(nn.Module):
    """The generator interface evaluate() relies on, in a few lines."""

    levels = (8, 16, 32)

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"resolution": 32})()
        self.net = nn.Linear(16, 3 * 8 * 8)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed))

    def forward(self, latents, upto=None, truncation=1.0):
        x = torch.tanh(self.net(latents * truncation)).view(-1, 3, 8, 8)
        return _Out({r: nn.functional.interpolate(x, size=r, mode="bilinear") for r in self.levels})


def _assert_figures(out: dict, n: int):
    assert set(out) == {"swd", "fid_efflite0", "kid_efflite0", "kid_efflite0_std", "n_real", "n_fake",
                        "precision", "recall", "density", "coverage", "near_duplicates"}
    assert all(0 <= out[k] <= 1 for k in ("precision", "recall", "coverage", "near_duplicates"))
    assert set(out["swd"]) == {32, 16, 8, "mean"}
    assert all(math.isfinite(v) for v in [*out["swd"].values(), out["fid_efflite0"], out["kid_efflite0"], out["kid_efflite0_std"]])
    assert out["n_real"] == out["n_fake"] == n


def test_evaluate_real_vs_real_and_table(sets, scores):
    images, feats = sets
    model = StandIn().train()
    out = metrics.evaluate(model, images["real"], n=16, seed=0, batch_size=8, device="cpu", real_features=feats["real"])
    _assert_figures(out, 16)
    assert model.training  # evaluate restores the mode it found

    floor = metrics.real_vs_real(torch.cat([images["real"], images["fresh"]]), n=32, seed=0, device="cpu")
    _assert_figures(floor, 32)
    assert floor["fid_efflite0"] < 0.5 * scores["blurred"]["fid_efflite0"]
    assert floor["kid_efflite0"] < 0.2 * scores["blurred"]["kid_efflite0"]
    assert floor["coverage"] > out["coverage"]  # real halves cover each other; the stand-in does not

    table = metrics.format_table({"stand-in": out, "real vs real": floor})
    lines = table.splitlines()
    assert len(lines) == 4 and "FID-EffLite0" in lines[0] and "KID-EffLite0" in lines[0] and "SWD32" in lines[0]
    assert "coverage" in lines[0] and "near-dup." in lines[0] and lines[3].count("|") == lines[0].count("|")
    assert lines[2].startswith("| stand-in |") and lines[3].startswith("| real vs real |")


# --- collapse: prdc coverage and the near-duplicate share ------------------------------------


def test_near_duplicate_share_counts_pictures_with_a_close_twin():
    base = shapes(6, seed=7)
    assert metrics.near_duplicate_share(base[:1].repeat(5, 1, 1, 1)) == 1.0  # one picture five times
    assert metrics.near_duplicate_share(base) == 0.0  # six different pictures
    close, far = (base[:1] + 0.04).clamp(-1, 1), base[:1] + 0.06  # RMS 0.04 and 0.06 from base[0]
    assert metrics.near_duplicate_share(torch.cat([base[:2], close])) == pytest.approx(2 / 3)
    assert metrics.near_duplicate_share(torch.cat([base[:2], far])) == 0.0
    assert metrics.near_duplicate_share(base[:1]) == 0.0


def test_a_copy_machine_repeats_itself_and_less_so_with_mirror_images():
    base = shapes(200, seed=3)
    assert metrics.near_duplicate_share(base) == 0.0
    plain = metrics.copies_near_duplicate_share(base, seed=0)
    mirrored = metrics.copies_near_duplicate_share(base, seed=0, mirrored=True)
    assert 0.5 < plain < 0.75  # about 1 - 1/e: drawing N of N with replacement repeats pictures
    assert 0.25 < mirrored < 0.5 and mirrored < plain  # about 1 - e^-1/2: twice as many to draw from
    assert metrics.copies_near_duplicate_share(base, n=1) == 0.0


def test_prdc_set_against_itself_and_a_collapsed_sample(sets):
    _, feats = sets
    same = metrics.prdc(feats["real"], feats["real"])
    assert same["coverage"] == 1.0 and same["precision"] == 1.0 and same["recall"] == 1.0
    collapsed = metrics.prdc(feats["real"], feats["real"][:1].repeat(N, 1))  # every sample the same picture
    assert collapsed["coverage"] < 0.2 and collapsed["recall"] < 0.2
    fresh = metrics.prdc(feats["real"], feats["fresh"])
    assert fresh["coverage"] > collapsed["coverage"] + 0.3
    with pytest.raises(ValueError, match="more than 6"):
        metrics.prdc(feats["real"][:6], feats["real"][:6])


def test_diversity_figures_and_their_floor():
    real = shapes(24, seed=8)
    collapsed = real[:1].repeat(24, 1, 1, 1)
    figures = metrics.diversity(real, collapsed, device="cpu")
    # One sample covers only the real pictures whose 5 nearest neighbours reach it: about k / N.
    assert figures["near_duplicates"] == 1.0 and figures["coverage"] < 0.4
    assert set(figures) == {"precision", "recall", "density", "coverage", "near_duplicates"}
    floor = metrics.diversity_floor(real, device="cpu")
    assert floor["coverage"] > figures["coverage"] + 0.3 and floor["near_duplicates"] == 0.0  # two halves
    assert metrics.diversity_features(real[:3], device="cpu").shape == (3, metrics.EFFLITE0_DIM)


class _SeedPictures(nn.Module):
    """Stand-in generator: seed ``good`` draws a picture of the data set, every other seed noise."""

    levels = (32,)

    def __init__(self, real: torch.Tensor, good: int):
        super().__init__()
        self.real, self.good, self.w = real, good, nn.Parameter(torch.zeros(1))

    def sample_latents(self, n, seed):
        return torch.full((n, 1), float(seed))

    def forward(self, z, *, upto=None, truncation=1.0, mix=None):
        noise = torch.rand(len(z), 3, RES, RES, generator=torch.Generator().manual_seed(3)) * 2 - 1
        pick = (z[:, 0] == self.good).view(-1, 1, 1, 1)
        return MultiScaleOutput(images={32: torch.where(pick, self.real[:1].expand_as(noise), noise)})


def test_the_opening_seed_is_the_one_whose_picture_is_most_like_the_data(sets):
    images, _ = sets
    real = metrics.diversity_features(images["real"], device="cpu")  # the space the rule works in
    for good in (0, 41):
        assert metrics.opening_seed(_SeedPictures(images["real"], good), real, truncation=1.0) == good
    assert metrics.opening_seed(_SeedPictures(images["real"], 99), real, truncation=1.0) == 0  # a tie: the lowest


# --- Decompose: variants that keep (or lose) the picture --------------------------------------


class _Resampler(nn.Module):
    """Stand-in for an encoding model: variants are copies of the picture, of the next picture, or blanks."""

    levels = (4, 8)

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.w = kind, nn.Parameter(torch.zeros(1))

    def reconstruct(self, x):
        return MultiScaleOutput(images={8: x})

    def resample(self, x, *, keep_below, seed, temperature, count):
        assert keep_below == 8
        src = {"copy": x, "next": x.roll(-1, 0), "blank": torch.zeros_like(x)}[self.kind]
        return MultiScaleOutput(images={8: src.repeat_interleave(count, 0)})


def test_variant_fidelity_tells_kept_pictures_from_lost_ones(sets):
    images, _ = sets
    pics = images["real"][:3]
    kept = metrics.variant_fidelity(_Resampler("copy"), pics, 8, count=4, device="cpu")
    assert len(kept) == 3 and all(r["to_original"] > 0.99 > r["to_other"] for r in kept)
    assert all(r["among_variants"] > 0.99 and abs(r["sharpness"] - 1) < 1e-4 for r in kept)
    swapped = metrics.variant_fidelity(_Resampler("next"), pics, 8, count=4, device="cpu")
    assert all(r["to_original"] < r["to_other"] for r in swapped)  # closer to another picture: the rule fails
    lost = metrics.variant_fidelity(_Resampler("blank"), pics, 8, count=4, device="cpu")
    assert all(r["sharpness"] < 1e-6 for r in lost)
    with pytest.raises(ValueError, match="at least two"):
        metrics.variant_fidelity(_Resampler("copy"), pics[:1], 8, device="cpu")
