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


@dataclass(frozen=True)
class FineTuneDefaults:
    base: str = "fashion32"  # a shipped 32 px GAN: minutes on a CPU, the page's preselected start
    steps: int = 500  # ~8k images seen: a few minutes at 32 px on 2 vCPUs, enough to adapt to 20-200 images
    batch_size: int = 16
    lr: float = 2e-4
    augment: tuple[str, ...] = POLICIES  # all three DiffAugment policies: few-shot sets need them
    sample_every: int = 25  # steps between preview grids
    checkpoint_every: int = 100  # a killed run loses at most this many steps
    seed: int = 0
    threads: int = field(default_factory=training_threads)


FINETUNE = FineTuneDefaults()
