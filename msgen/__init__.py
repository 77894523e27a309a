"""msgen: watch a multi-scale generator build a picture coarse-to-fine, and train your own.

Public API::

    import msgen
    g = msgen.load("sprites32")                 # a listed name, a folder, or a Hub repo id
    out = msgen.generate(g, seed=1, features=True)
    out.images[32]                              # 1 x 3 x 32 x 32 in [-1, 1]; also every coarser level
    out.features[8]                             # the 8x8 level's feature map, 1 x C x 8 x 8
    msgen.list_models()                         # shipped weights and your runs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .models import MultiScaleOutput
from .validate import SEED_MAX
from .zoo import ModelEntry, list_models, resolve_model

__all__ = ["load", "list_models", "generate", "Generation", "MultiScaleOutput", "ModelEntry", "CheckpointError",
           "SEED_MAX"]
__version__ = "0.1.0"


def load(name_or_path: str | Path, *, device: str | torch.device = "cpu", runs_dir: str | Path | None = None) -> torch.nn.Module:
    """Load an exported generator: a listed model name, a local folder, or a Hub repo id."""
    from .checkpoint import load_generator

    return load_generator(resolve_model(name_or_path, runs_dir=runs_dir), device=device)


@dataclass
class Generation:
    """One generate call: the image at every level and, if asked, every level's feature map."""

    images: dict[int, torch.Tensor]  # level -> N x 3 x r x r in [-1, 1], on the CPU, float32
    features: dict[int, torch.Tensor] | None  # level -> N x C x r x r, on the CPU, float32
    seed: int
    scale: int
    truncation: float
    mix_seed: int | None = None
    mix_level: int | None = None
    # level -> name -> N x 3 x h x w in [-1, 1]: a family's own pictures of each level (its
    # ``level_pictures``, e.g. token maps), with ``features`` only; empty for families without
    pictures: dict[int, dict[str, torch.Tensor]] | None = None


@torch.inference_mode()
def generate(
    model: torch.nn.Module | str | Path,
    *,
    seed: int = 0,
    scale: int | None = None,
    truncation: float = 1.0,
    mix_seed: int | None = None,
    mix_level: int | None = None,
    n: int = 1,
    features: bool = False,
) -> Generation:
    """Generate ``n`` images from consecutive seeds starting at ``seed`` (seed + i for image i,
    wrapping past SEED_MAX); seeds are whole numbers from 0 to ``SEED_MAX`` (2**32 - 1), ``n`` from 1
    to ``msgen.validate.MAX_SAMPLES``; ``truncation``'s range is the model family's own."""
    from . import features as feat
    from .validate import check_seed, samples, seed_at

    seed = check_seed(seed)
    if mix_seed is not None:
        mix_seed = check_seed(mix_seed, "mix seed")
    n = samples(n)
    gen = load(model) if isinstance(model, (str, Path)) else model
    param = next(gen.parameters())
    z = torch.cat([gen.sample_latents(1, seed_at(seed, i)) for i in range(n)]).to(param.device, param.dtype)
    mix = None
    if mix_seed is not None and mix_level is not None and mix_level != gen.levels[0]:
        zb = torch.cat([gen.sample_latents(1, seed_at(mix_seed, i)) for i in range(n)]).to(param.device, param.dtype)
        mix = (zb, mix_level)
    elif mix_seed is not None and mix_level == gen.levels[0]:
        z = torch.cat([gen.sample_latents(1, seed_at(mix_seed, i)) for i in range(n)]).to(param.device, param.dtype)
    kwargs = dict(upto=scale, truncation=truncation, mix=mix)
    pictures = None
    if features:
        out, fmaps = feat.capture(gen, z, **kwargs)
        fmaps = {k: v.float().cpu() for k, v in fmaps.items() if k in out.images}
        own = getattr(gen, "level_pictures", None)
        pictures = {lvl: {name: t.float().cpu() for name, t in p.items()}
                    for lvl, p in (own(out) if own else {}).items() if lvl in out.images}
    else:
        out, fmaps = gen(z, **kwargs), None
    images = {k: v.float().cpu() for k, v in out.images.items()}
    return Generation(images=images, features=fmaps, seed=seed, scale=max(images), truncation=truncation,
                      mix_seed=mix_seed, mix_level=mix_level, pictures=pictures)
