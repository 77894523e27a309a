"""Model families and the one small interface they all implement.

Every family lives in its own file and registers a frozen ``Config`` dataclass, a
``Generator`` and (when it has one) a ``Discriminator`` here. The registry is a plain dict
(k-diffusion ``models/`` style); an unknown family raises ``ValueError`` naming the known ones.

The interface (see DESIGN.md):

* ``config``: frozen dataclass, saved as ``config.json``.
* ``levels``: the granularities the model produces, e.g. ``(4, 8, 16, 32, 64)``.
* ``sample_latents(n, seed)``: latents drawn on the CPU with a seeded ``torch.Generator``.
* ``forward(latents, *, upto=None, truncation=1.0, mix=None) -> MultiScaleOutput``.
* ``granularity_modules()``: level -> module whose output is that level's feature map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class MultiScaleOutput:
    """What a multi-scale generator returns: one RGB image per level, coarse to fine."""

    images: dict[int, torch.Tensor]  # level -> N x 3 x level x level in [-1, 1]
    extras: dict[str, Any] = field(default_factory=dict)  # family-specific (e.g. VAE KL terms)

    @property
    def finest(self) -> torch.Tensor:
        return self.images[max(self.images)]


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    generator_cls: type
    discriminator_cls: type | None = None
    description: str = ""
    recipe: str | None = None  # "module:Class" of its training recipe; None means msgen.train:GANRecipe
    # What `truncation` means for this family, and the value the Generate page starts a model at.
    truncation_label: str = "Truncation (0: the model's average picture, 1: as trained)"
    default_truncation: float = 1.0


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    _load_builtin()
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def config_from_dict(data: dict) -> Any:
    """Build a family's Config from a config.json dict, refusing unknown keys clearly."""
    data = dict(data)
    family = get_family(str(data.get("family", "")))
    known = {f.name for f in dataclasses.fields(family.config_cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config.json has fields that {family.name} does not know: {', '.join(unknown)}")
    for f in dataclasses.fields(family.config_cls):
        if f.name in data and isinstance(data[f.name], list):
            data[f.name] = tuple(data[f.name])
    return family.config_cls(**data)


def build_generator(config: Any) -> nn.Module:
    return get_family(config.family).generator_cls(config)


def build_discriminator(config: Any) -> nn.Module | None:
    cls = get_family(config.family).discriminator_cls
    return cls(config) if cls is not None else None


def make_config(family: str, **overrides: Any) -> Any:
    """Config for ``family`` with the named fields changed; levels follow the resolution."""
    fam = get_family(family)
    return fam.config_cls(family=family, **overrides)


def check_generate_args(model: nn.Module, upto: int | None, truncation: float, mix: Any) -> int:
    """Shared argument validation for every family's forward; returns the finest level to run."""
    levels = model.levels
    if upto is None:
        upto = levels[-1]
    if upto not in levels:
        raise ValueError(f"scale {upto} is not one of this model's levels {list(levels)}")
    if not (0.0 <= float(truncation) <= 2.0):
        raise ValueError(f"truncation must be between 0 and 2, got {truncation}")
    if mix is not None:
        latents_b, switch = mix
        if switch not in levels:
            raise ValueError(f"mix level {switch} is not one of this model's levels {list(levels)}")
    return upto


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal drawn on the CPU from ``seed``, so a seed means one picture everywhere."""
    if not (0 <= int(seed) < 2**32):
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=gen)


_LOADED = False


def _load_builtin() -> None:
    # Imported lazily so that family files can import this module without a cycle.
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import msggan  # noqa: F401

        try:
            from . import hvae  # noqa: F401
        except ImportError as exc:  # pragma: no cover - only while a family file is missing
            if "hvae" not in str(exc):
                raise


FamilyHook = Callable[[nn.Module], dict[int, nn.Module]]
