"""Per-granularity activations: forward hooks -> feature maps -> pictures and statistics.

``capture`` registers a forward hook on each module that ``granularity_modules()`` names, runs
the generator once, and always removes the hooks (EDM's ``print_module_summary`` pattern), so
``forward`` never needs a "return everything" flag. The helpers turn a C x H x W map into
things a person can look at: a PCA-to-RGB view of all channels, the most active channels, and
summary statistics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from .models import MultiScaleOutput


@dataclass
class LevelStats:
    level: int
    channels: int
    size: int
    mean: float
    std: float
    zero_share: float  # share of activations at (numerically) zero or below: dead/negative units


def capture(generator: torch.nn.Module, latents: torch.Tensor, **kwargs) -> tuple[MultiScaleOutput, dict[int, torch.Tensor]]:
    """Run ``generator`` and return its output plus each level's feature map (N x C x H x W)."""
    feats: dict[int, torch.Tensor] = {}
    handles = []
    caller = threading.get_ident()  # another thread running the same (cached) module is not ours
    try:
        for level, module in generator.granularity_modules().items():
            def hook(_mod, _inp, out, level=level):
                if threading.get_ident() == caller:
                    feats[level] = (out[0] if isinstance(out, tuple) else out).detach()

            handles.append(module.register_forward_hook(hook))
        out = generator(latents, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return out, feats


def level_stats(level: int, fmap: torch.Tensor) -> LevelStats:
    """Statistics of one sample's C x H x W feature map."""
    f = fmap.float()
    return LevelStats(
        level=level,
        channels=int(f.shape[0]),
        size=int(f.shape[-1]),
        mean=float(f.mean()),
        std=float(f.std()) if f.numel() > 1 else 0.0,
        zero_share=float((f <= 1e-6).float().mean()),
    )


def pca_rgb(fmap: torch.Tensor) -> torch.Tensor:
    """C x H x W -> 3 x H x W in [0, 1]: the three main directions of channel space as colours."""
    f = fmap.float()
    c, h, w = f.shape
    x = f.reshape(c, h * w).T  # pixels x channels
    x = x - x.mean(0, keepdim=True)
    if c < 3 or h * w < 2:
        rgb = x[:, :1].repeat(1, 3) if c >= 1 else torch.zeros(h * w, 3)
    else:
        # Low-rank PCA is exact enough for 3 components and cheap at these sizes.
        _u, _s, v = torch.pca_lowrank(x, q=3, center=False)
        rgb = x @ v[:, :3]
    lo, hi = rgb.amin(0, keepdim=True), rgb.amax(0, keepdim=True)
    rgb = (rgb - lo) / (hi - lo).clamp_min(1e-8)
    return rgb.T.reshape(3, h, w)


def top_channels(fmap: torch.Tensor, k: int = 8) -> list[int]:
    """Indices of the ``k`` channels with the largest mean absolute activation."""
    energy = fmap.float().abs().mean(dim=(1, 2))
    return energy.topk(min(k, energy.numel())).indices.tolist()


def channel_image(fmap: torch.Tensor, channel: int, *, normalize: bool = True, global_range: tuple[float, float] | None = None) -> torch.Tensor:
    """One channel as an H x W map in [0, 1]: normalised to its own range, or to the level's."""
    if not 0 <= channel < fmap.shape[0]:
        raise ValueError(f"channel must be between 0 and {fmap.shape[0] - 1}, got {channel}")
    x = fmap[channel].float()
    if normalize:
        lo, hi = x.min(), x.max()
    else:
        lo, hi = global_range if global_range is not None else (fmap.min().float(), fmap.max().float())
        lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    return ((x - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
