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

Configs come from untrusted ``config.json`` files too (any Hub repo), so every numeric field is
declared with ``bounded(default, lo, hi)`` next to its comment, and each family's ``__post_init__``
starts with ``check_fields(self)``: wrong types (a dict, a bool, a float in an int field) and
values out of bounds are one ``ValueError`` naming the field and its limit, before anything is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import operator
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

SEED_MAX = 2**32 - 1  # seeds are 0 .. SEED_MAX everywhere (API, CLI, web): what torch.Generator takes


def bounded(default: int | float, lo: int | float, hi: int | float) -> Any:
    """A config field with inclusive bounds that ``check_fields`` enforces."""
    return field(default=default, metadata={"bounds": (lo, hi)})


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def check_fields(config: Any) -> None:
    """Types and bounds of every field of a config dataclass; ValueError naming the first bad one.

    Exact types: ``True`` is not an int here, and a float is not an int (1e9 would otherwise slip
    through as a width); an int is a fine float."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if kind is None:
            raise TypeError(f"{type(config).__name__}.{f.name}: check_fields knows int, float, str and bool fields only")
        if not (type(value) is kind or (kind is float and type(value) is int)):
            want = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}[kind]
            raise ValueError(f"config field {f.name} must be {want}, got {type(value).__name__}")
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"config field {f.name} must be a finite number, got {value}")
        bounds = f.metadata.get("bounds")
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            # A hostile int can have thousands of digits: say how big, never print (or float()) it.
            shown = value if abs(value) < 10**15 else (
                f"{value:.3g}" if type(value) is float else f"a {value.bit_length()}-bit number")
            raise ValueError(f"config field {f.name} must be between {bounds[0]} and {bounds[1]}, got {shown}")


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
    if not isinstance(data, dict):
        raise ValueError(f"a config must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    name = data.get("family", "")
    if not isinstance(name, str) or len(name) > 64:
        raise ValueError("config field family must be the name of a model family (a short string)")
    family = get_family(name)
    known = {f.name for f in dataclasses.fields(family.config_cls)}
    unknown = sorted(str(k)[:64] for k in set(data) - known)
    if unknown:
        raise ValueError(f"config.json has fields that {family.name} does not know: {', '.join(unknown[:10])}")
    return family.config_cls(**data)  # its __post_init__ checks types and bounds


def build_generator(config: Any) -> nn.Module:
    return get_family(config.family).generator_cls(config)


def build_discriminator(config: Any) -> nn.Module | None:
    cls = get_family(config.family).discriminator_cls
    return cls(config) if cls is not None else None


def make_config(family: str, **overrides: Any) -> Any:
    """Config for ``family`` with the named fields changed; levels follow the resolution."""
    fam = get_family(family)
    known = {f.name for f in dataclasses.fields(fam.config_cls)} - {"family"}
    unknown = sorted(str(k)[:64] for k in set(overrides) - known)
    if unknown:
        raise ValueError(f"{family} configs have no field {', '.join(unknown[:10])}; they have {', '.join(sorted(known))}")
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


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in 0 .. SEED_MAX, or a ValueError naming the range."""
    value = None
    if not isinstance(seed, bool):
        try:
            value = operator.index(seed)  # ints and numpy ints; never a truncated 2.7
        except TypeError:
            value = int(seed) if isinstance(seed, float) and seed.is_integer() else None
    if value is None or not 0 <= value <= SEED_MAX:
        raise ValueError(f"{name} must be a whole number from 0 to {SEED_MAX}, got {seed!r}")
    return value


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal drawn on the CPU from ``seed``, so a seed means one picture everywhere."""
    gen = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    return torch.randn(shape, generator=gen)


_LOADED = False


def _load_builtin() -> None:
    # Imported lazily so that family files can import this module without a cycle.
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import msggan  # noqa: F401

        for name in ("hvae", "var"):
            try:
                importlib.import_module(f".{name}", __name__)
            except ImportError as exc:  # pragma: no cover - only while a family file is missing
                if name not in str(exc):
                    raise


FamilyHook = Callable[[nn.Module], dict[int, nn.Module]]
