"""The one set of fine-tuning defaults: the Train tab's form and ``python -m msgen train`` read them.

``python -m msgen train --data DIR --out RUN`` with no other flag runs exactly the page's default
fine-tune: the same base model, steps, batch, learning rate, augmentation, preview and
checkpoint intervals, seed and torch thread count (a convolution's summation order follows the
thread count, so it is part of the recipe), and writes the same quality report into the card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .augment import POLICIES


def training_threads() -> int:
    """Torch threads for training: on the page, one core is left to the people generating meanwhile."""
    return max(1, (os.cpu_count() or 2) - 1)


def start_of(family: str | None):
    """``msgen.models.FineTune`` of ``family`` (steps, learning rate, batch of a fine-tune from one of
    its models); a family-less or unknown name gets the record's defaults."""
    from .models import FineTune, families, get_family

    return get_family(family).finetune if family in families() else FineTune()


def shipped_family(name: str) -> str | None:
    """The family of the shipped model ``name``, from its config.json alone (the loader's bounded,
    checked read, weights untouched); None if it is not shipped."""
    from .checkpoint import CheckpointError, read_config
    from .zoo import WEIGHTS_DIR

    try:
        return read_config(WEIGHTS_DIR / name)[0].family
    except (CheckpointError, OSError):
        return None


@dataclass(frozen=True)
class FineTuneDefaults:
    # The page's preselected start and ``train --data D --out R``'s: the shipped model trained on a
    # broad mix of small colour pictures, whose fine-tune keeps variety (bench/fewshot.py: the
    # GANs' fine-tunes collapsed). ``base_family`` is read from its config.json (no tensors).
    base: str = "broad32-var"
    base_family: str | None = None
    # steps, batch size and learning rate are the base family's ``Family.finetune``; a fine-tune of
    # another base (the CLI's --model, the Train tab's "Start from") takes that base's family's.
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    augment: tuple[str, ...] = POLICIES  # the GANs' DiffAugment policies, all three: few-shot sets need them
    sample_every: int = 25  # steps between preview grids
    checkpoint_every: int = 100  # a killed run loses at most this many steps
    seed: int = 0
    threads: int = field(default_factory=training_threads)

    def __post_init__(self) -> None:
        if self.base_family is None:
            object.__setattr__(self, "base_family", shipped_family(self.base))
        start = start_of(self.base_family)
        for name, value in (("steps", start.steps), ("batch_size", start.batch_size), ("lr", start.lr)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)


FINETUNE = FineTuneDefaults()
