"""Model families: the ``Family`` record, the registry discovered from this package, shared helpers.

A family is one file in this package (``msggan.py``, ``hvae.py``, ...). At import it calls
``register(Family(...))`` with everything family-specific as classes and values, so shared code
never names a family: its frozen ``Config`` dataclass, ``Generator`` (and ``Discriminator``, when
it has one), the training recipe, its own training-options dataclass, a tiny test config, its
capabilities (``encodes``: it can encode a picture, which Decompose needs) and the hints the UI
reads (what its truncation control is called, its range and starting value). ``discover`` imports
every public module here but ``layers`` (thread-safe, once; ``refresh=True`` re-scans); an unknown
family raises ``ValueError`` naming the known ones (k-diffusion ``models/`` style).

The interface every generator implements (see DESIGN.md):

* ``config``: frozen dataclass, saved as ``config.json``.
* ``levels``: the granularities the model produces, e.g. ``(4, 8, 16, 32, 64)`` (``config.levels``).
* ``sample_latents(n, seed)``: latents drawn on the CPU with a seeded ``torch.Generator``.
* ``forward(latents, *, upto=None, truncation=1.0, mix=None) -> MultiScaleOutput``.
* ``granularity_modules()``: level -> module whose output is that level's feature map.

Optional, found by ``getattr`` (a capability, not a family name):

* ``level_pictures(out) -> {level: {name: N x 3 x h x w in [-1, 1]}}``: pictures of a level that
  only this family has (e.g. a token map and the residual it added). The Generate page and
  ``generate --features`` put them in the level's card after the PCA view, in the order given,
  and the card's caption names them.

Configs come from untrusted ``config.json`` files too (any Hub repo), so every numeric field is
declared with ``bounded(default, lo, hi)`` next to its comment, and each family's ``__post_init__``
starts with ``check_fields(self)``: wrong types (a dict, a bool, a float in an int field) and
values out of bounds are one ``ValueError`` naming the field and its limit, before anything is built.
Training options are declared with ``option(default, help, ...)`` and checked by ``check_options``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

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
class UIHints:
    """What the pages show for a family's ``truncation`` argument."""

    truncation_label: str = "Truncation (0: the model's average picture, 1: as trained)"
    truncation_range: tuple[float, float] = (0.0, 2.0)  # what its forward accepts (check_generate_args)
    default_truncation: float = 1.0  # where the Generate page starts a model of this family
    # Where Decompose's re-sampling starts (None: ``default_truncation``). A posterior's detail
    # re-sampled around kept levels is another use than a prior sample, with its own best value.
    resample_temperature: float | None = None


@dataclass(frozen=True)
class FineTune:
    """Where a fine-tune of one of this family's models starts: the Train tab's form and
    ``python -m msgen train --model M`` take these when the base is of this family."""

    steps: int = 500
    lr: float = 2e-4
    batch_size: int = 16
    # Config changes a fine-tune makes to its base, as (field, value) pairs, each applied only where
    # the base has the field's default (a base that set it keeps its own; one that set it to the
    # default cannot be told apart and takes the change). Parts of the model that a change adds start
    # at their initial values; every tensor of the base is kept. A run begun before a change existed
    # resumes without it (msgen.train: its checkpoint lacks the new tensors).
    config: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Serving:
    """How the pages run a family's generator (``msgen.zoo.serving_form``, ``serve_on_cpu``): its
    submodules by dotted name, ``""`` for the whole generator. Set where ``python bench/generate.py
    --only-cpu-serving`` measured it faster.

    * ``channels_last`` (on a CPU): their 4-D weights in channels_last memory format, so oneDNN's
      convolutions run in their native layout without reordering every activation (the same
      values, summed in another order: float rounding);
    * ``low_precision``: on a CPU that multiplies bfloat16 matrices natively
      (``msgen.device.cpu_bfloat16``) their weights in bfloat16, and channels_last too (oneDNN's
      bfloat16 kernels are NHWC); on a GPU in float16. Only parts whose pictures are a smooth
      function of the weights, so rounding moves a few 8-bit steps: never a part that picks a
      discrete token, where rounding would change what a seed draws. Such a part casts its inputs
      to its own weights' dtype."""

    channels_last: tuple[str, ...] = ()
    low_precision: tuple[str, ...] = ()


def serving_part(gen: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` of ``gen`` that a ``Serving`` names; ValueError if it has none."""
    try:
        return gen.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{type(gen).__name__} has no submodule {name!r} (its family's serving names it)") from None


def serve_on_cpu(gen: nn.Module, serving: Serving, *, bfloat16: bool) -> nn.Module:
    """``gen`` (on the CPU, float32) converted in place as ``serving`` says; ``bfloat16``: whether
    this CPU multiplies it natively."""
    low = serving.low_precision if bfloat16 else ()
    for name in dict.fromkeys(serving.channels_last + low):
        serving_part(gen, name).to(memory_format=torch.channels_last)
    for name in low:
        serving_part(gen, name).to(torch.bfloat16)
    return gen


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type  # frozen dataclass, the generator's one constructor argument
    generator_cls: type
    recipe_cls: type  # recipe_cls(generator, discriminator, options: msgen.train.TrainOptions): one .step();
    # optionally .ema_start(step): the step the EMA of G restarts from (a new stage; msgen.train)
    options_cls: type  # the family's own training options (a frozen dataclass of ``option`` fields)
    discriminator_cls: type | None = None
    tiny_config: dict[str, Any] = field(default_factory=dict)  # config overrides for a fast test model
    description: str = ""
    encodes: bool = False  # the generator has ``encode(images)`` (posterior latents): Decompose can use it
    serving: Serving = Serving()  # how the pages run it (msgen.zoo.serving_form, for ModelCache and the CLI)
    ui: UIHints = UIHints()
    finetune: FineTune = FineTune()  # the defaults of a fine-tune starting from one of its models
    # config.json fields older versions wrote that are training options now: accepted and ignored
    # when a config is read, and read into ``options_cls`` when an old run is resumed.
    legacy_config_keys: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.generator_cls.__module__


FAMILIES: dict[str, Family] = {}

# The seed bound and check live in msgen.validate, with every other bound; re-exported here for families.
from ..validate import SEED_MAX, check_seed, seed_at  # noqa: E402, F401


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


def option(default: Any, help: str, *, lo: int | float | None = None, hi: int | float | None = None,
           choices: tuple[str, ...] | None = None, flags: tuple[str, ...] = (), label: str | None = None,
           absent: Any = dataclasses.MISSING) -> Any:
    """A training-options field: its help (the CLI's --help), bounds or choices (``check_options``),
    extra CLI spellings (``flags``) and, with ``label``, a control in the Train tab. ``absent``: the
    value a run's stored options that lack the field mean (they were written before it existed, when
    training behaved as this value does), where that is not ``default``; ``msgen.options`` reads it."""
    meta = {"help": help, "bounds": None if lo is None else (lo, hi), "choices": choices, "flags": flags, "label": label}
    if absent is not dataclasses.MISSING:
        meta["absent"] = absent
    return field(default=default, metadata=meta)


def check_options(options: Any) -> None:
    """Bounds and choices of every ``option`` field of an options dataclass; ValueError naming it."""
    for f in dataclasses.fields(options):
        value, bounds, choices = getattr(options, f.name), f.metadata.get("bounds"), f.metadata.get("choices")
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if bounds is not None and (isinstance(item, bool) or not isinstance(item, (int, float))
                                       or not math.isfinite(item) or not bounds[0] <= item <= bounds[1]):
                raise ValueError(f"{f.name.replace('_', ' ')} must be between {bounds[0]} and {bounds[1]}, got {item!r}")
            if choices is not None and item not in choices:
                raise ValueError(f"{f.name.replace('_', ' ')} must be among {', '.join(choices)}, got {item!r}")


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    discover()
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def families() -> dict[str, Family]:
    """Every registered family, by name (sorted)."""
    discover()
    return dict(sorted(FAMILIES.items()))


def ui_hints(name: str | None) -> UIHints:
    """Family ``name``'s UI hints, or the generic ones for a family not installed here."""
    fam = families().get(name or "")
    return fam.ui if fam else UIHints()


def families_that(capability: str) -> list[str]:
    """Names of the families with a capability, e.g. ``families_that("encodes")``."""
    return [name for name, fam in families().items() if getattr(fam, capability)]


_LOCK = threading.RLock()  # re-entrant: a family module may ask the registry while it is imported
_DISCOVERED = False
NOT_FAMILIES = ("layers",)  # modules here that hold shared blocks, not a family


def discover(refresh: bool = False) -> dict[str, Family]:
    """Import every family module of this package (once; ``refresh`` re-scans, e.g. after a new
    file appeared or one was removed). Thread-safe: nobody sees the registry half-filled."""
    global _DISCOVERED
    if _DISCOVERED and not refresh:
        return FAMILIES
    with _LOCK:
        if _DISCOVERED and not refresh:
            return FAMILIES
        importlib.invalidate_caches()
        names = {f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)
                 if not m.name.startswith("_") and m.name not in NOT_FAMILIES}
        for gone in [n for n, fam in FAMILIES.items() if fam.module not in names]:
            sys.modules.pop(FAMILIES.pop(gone).module, None)
        for name in sorted(names):
            importlib.import_module(name)
        _DISCOVERED = True
    return FAMILIES


def config_from_dict(data: dict) -> Any:
    """Build a family's Config from a config.json dict, refusing unknown keys clearly."""
    if not isinstance(data, dict):
        raise ValueError(f"a config must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    name = data.get("family", "")
    if not isinstance(name, str) or len(name) > 64:
        raise ValueError("config field family must be the name of a model family (a short string)")
    family = get_family(name)
    for key in family.legacy_config_keys:  # a training option now (``options_from_legacy`` reads it)
        data.pop(key, None)
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
    moved = sorted(set(overrides) & set(fam.legacy_config_keys))
    if moved:
        raise ValueError(f"{', '.join(moved)}: training options of {family} now, not config fields "
                         f"(python -m msgen train --{moved[0].replace('_', '-')} ...)")
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
    lo, hi = get_family(model.config.family).ui.truncation_range
    if not (lo <= float(truncation) <= hi):
        raise ValueError(f"truncation must be between {lo:g} and {hi:g}, got {truncation}")
    if mix is not None:
        latents_b, switch = mix
        if switch not in levels:
            raise ValueError(f"mix level {switch} is not one of this model's levels {list(levels)}")
    return upto


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal drawn on the CPU from ``seed``, so a seed means one picture everywhere."""
    gen = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    return torch.randn(shape, generator=gen)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents (a latent walk's frames): Gaussian latents keep
    their typical norm along the great circle, where a straight line passes near zero."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
