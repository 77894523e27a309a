"""Per-granularity activations: forward hooks -> feature maps.

``capture`` registers a forward hook on each module that ``granularity_modules()`` names, runs
the generator once, and always removes the hooks (EDM's ``print_module_summary`` pattern), so
``forward`` never needs a "return everything" flag. ``msgen.render`` turns a level's C x H x W
map into things a person can look at (PCA colours, the most active channels, statistics).
"""

from __future__ import annotations

import threading

import torch

from .models import MultiScaleOutput


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
