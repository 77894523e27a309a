"""Training options: the loop's ``TrainOptions`` with the family's own options dataclass inside,
and their JSON form (``options_to_dict`` / ``options_from_dict``, the older flat form translated).

Kept apart from the loop (``msgen.train``) so the run folder's owner (``msgen.run``) can read and
write options without importing the Trainer. Family names never appear here: each family's
options class comes from the ``msgen.models`` registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .models import families, get_family
from .validate import SEED_MAX


@dataclass(frozen=True)
class TrainOptions:
    """The loop's options; the family's own (e.g. ``GANOptions``, ``HVAEOptions``) are in ``family``."""

    steps: int = 1000  # optimisation steps of this run in total (a resume continues towards it)
    batch_size: int = 16  # small batches suit 20-200 image sets and a 2-core CPU
    lr: float = 2e-4  # Adam, as in StyleGAN2 / FastGAN
    ema_half_life_images: int = 5_000  # EMA of G; ramped up early in a run (StyleGAN2-ADA)
    ema_rampup: float = 0.1
    sample_every: int = 50  # steps between preview grids sent to callbacks
    checkpoint_every: int = 200  # steps between atomic checkpoints (state + exported model)
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA, then MPS, then CPU
    family: Any = None  # the family's options dataclass instance; None: its defaults (set by the Trainer)

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.steps <= 10_000_000, "steps must be between 1 and 10,000,000"),
            (1 <= self.batch_size <= 1024, "batch size must be between 1 and 1024"),
            (0 < self.lr <= 0.1, "learning rate must be in (0, 0.1]"),
            (self.sample_every >= 1 and self.checkpoint_every >= 1, "intervals must be at least 1"),
            (0 <= self.seed <= SEED_MAX, f"seed must be a whole number from 0 to {SEED_MAX}"),
            (self.family is None or dataclasses.is_dataclass(self.family), "family must be a family's options"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def for_family(self, name: str) -> TrainOptions:
        """These options with ``family`` filled in for family ``name`` (its defaults when None);
        options of another family are refused."""
        cls = get_family(name).options_cls
        if self.family is None:
            return dataclasses.replace(self, family=cls())
        if not isinstance(self.family, cls):
            raise ValueError(f"these training options are {type(self.family).__name__}, "
                             f"but a {name} model trains with {cls.__name__}")
        return self


LOOP_FIELDS = tuple(f.name for f in dataclasses.fields(TrainOptions) if f.name != "family")


def family_options(name: str, data: dict[str, Any]) -> Any:
    """Family ``name``'s options from a JSON dict (lists become tuples); unknown keys refused."""
    cls = get_family(name).options_cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k)[:64] for k in set(data) - set(fields))
    if unknown:
        raise ValueError(f"{name} training options have no {', '.join(unknown[:10])}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def options_from_dict(data: dict[str, Any], family: str, config: dict[str, Any] | None = None) -> TrainOptions:
    """``TrainOptions`` for a run of ``family`` from its JSON form (``dataclasses.asdict``), or from
    the flat form older versions wrote: the loop's keys, the GAN's beside them (ignored for a
    family without them: they never applied), and a family's options that were config fields then
    (taken from the run's ``config`` dict, ``Family.legacy_config_keys``)."""
    if not isinstance(data, dict):
        raise ValueError("training options must be a JSON object")
    data = dict(data)
    loop = {k: data.pop(k) for k in LOOP_FIELDS if k in data}
    fam = get_family(family)
    if isinstance(data.get("family"), dict) or (data.get("family") is None and "family" in data):
        stored = data.pop("family")
        # None: the family's defaults, filled in when the run starts (a queued run); a dict was
        # written by a run with every field then known, so a field it lacks takes its ``absent``.
        own = {} if stored is None else _absent(fam.options_cls, stored) | stored
        if data:
            raise ValueError(f"training options have no {', '.join(sorted(str(k)[:64] for k in data)[:10])}")
    else:  # the old flat form
        known = {f.name for f in dataclasses.fields(fam.options_cls)}
        others = {f.name for other in families().values() for f in dataclasses.fields(other.options_cls)}
        unknown = sorted(str(k)[:64] for k in set(data) - others)
        if unknown:
            raise ValueError(f"training options have no {', '.join(unknown[:10])}")
        own = {k: v for k, v in data.items() if k in known}
        legacy = {k: v for k, v in (config or {}).items() if k in fam.legacy_config_keys}
        own = legacy | own
        own = _absent(fam.options_cls, own) | own
    return TrainOptions(**loop, family=family_options(family, own))


def _absent(cls: type, stored: dict[str, Any]) -> dict[str, Any]:
    """The values that ``cls``'s fields missing from ``stored`` mean (``option(absent=...)``): how
    training behaved before the field existed, so an older run resumes as it began."""
    return {f.name: f.metadata["absent"] for f in dataclasses.fields(cls)
            if f.name not in stored and "absent" in f.metadata}


def options_to_dict(options: TrainOptions) -> dict[str, Any]:
    """The JSON form ``options_from_dict`` reads: the loop's fields and ``family``'s as a dict."""
    return dataclasses.asdict(options)
